"""Hartree energy and potential of a periodic density by FFT (PySCF's FFTDF conventions).

With rho(r) on the uniform mesh (n_grid points, each of weight dV = volume / n_grid),
rho(G) = dV * FFT[rho], and the Hartree potential is

    v_H(r) = (1 / volume) sum_{G != 0} 4 pi / |G|^2 rho(G) exp(i G.r) = IFFT[coulG * FFT[rho]](r),
    E_H    = 1/2 dV sum_r rho(r) v_H(r)      (Hartree per cell),

with ``coulG`` = 4 pi / |G|^2 and coulG(G = 0) = 0 (PySCF's ``tools.get_coulG``): the G = 0 term
cancels against the neutralizing background that the Ewald energy and the G = 0 part of the
pseudopotential carry. Real FFTs halve the work; coulG(-G) = coulG(G) keeps v_H real.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def hartree_potential(rho: Array, coulG: Array, mesh: tuple[int, int, int]) -> Array:
    """[n_grid] v_H(r) (Hartree) of a real density rho [n_grid] (Bohr^-3) on the C-ordered mesh.

    coulG: [n_grid] Coulomb kernel in FFT order of the same mesh.
    """
    rho_g = jnp.fft.rfftn(rho.reshape(mesh))  # [n1, n2, n3 // 2 + 1]
    kernel = coulG.reshape(mesh)[..., : mesh[2] // 2 + 1]
    return jnp.fft.irfftn(kernel * rho_g, s=mesh).reshape(-1)


def hartree_energy(rho: Array, v_hartree: Array, grid_weight: Array) -> Array:
    """[] E_H = 1/2 dV sum_r rho(r) v_H(r) (Hartree per cell)."""
    return 0.5 * grid_weight * jnp.dot(rho, v_hartree)

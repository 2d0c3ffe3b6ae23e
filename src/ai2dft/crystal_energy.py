"""Kohn-Sham energy and Fock matrices of a crystal, differentiable in JAX: the crystal kind.

For k-point density matrices D(k) [nk, nao, nao] (spin-summed, not k-weighted; see
``ai2dft.crystal`` for the conventions) and k-weights w_k:

    rho(r)  = sum_k w_k sum_ij D_ij(k) phi^k_i(r) conj(phi^k_j(r))       on the uniform mesh
    E_KS[D] = sum_k w_k Re tr(D(k) hcore(k)) + E_H[rho] + E_xc[rho] + E_nuc     (Hartree per cell)
    F(k)    = hcore(k) + <phi^k_i| v_H + v_xc |phi^k_j>   (GGA: + the grad-rho terms)

E_KS is defined on all complex D through their Hermitian part, so dE = sum_k w_k Re tr(dD(k) F(k))
for every perturbation dD. ``energy`` carries a custom VJP whose cotangent is the Fock matrix:
reverse mode never stores per-chunk intermediates, only the potentials on the grid. The grid is
walked chunk by chunk (``lax.map`` / ``lax.scan``), so memory beyond the stored AO values is one
chunk's ``[nk, n_deriv, chunk, nao]`` plus a few grid-sized vectors.

These numbers equal PySCF's KRKS (FFTDF, uniform grid) on the same mesh: see tests/test_crystal.py.
This module is the crystal kind: it implements ``ai2dft.kind`` for ``CrystalSystem``, so the Mermin
free energy, the SCF and the variational solver of ``ai2dft.api`` take crystals.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import coulomb_fft, kind, xc
from ai2dft.crystal import CrystalSystem
from ai2dft.density import density_and_entropy
from ai2dft.hermitian import dagger, hermitian_part
from ai2dft.units import PAD_LEVEL_HARTREE

Array = jax.Array


def grid_density(system: CrystalSystem, D: Array) -> Array:
    """[n_deriv, n_pad] density (row 0, Bohr^-3) and for GGAs its x, y, z gradient (rows 1-3).

    n_pad = n_chunks * chunk >= n_grid; padded points carry zeros. D: [nk, nao, nao].
    """
    Dh = hermitian_part(D)
    scale = jnp.array([1.0, 2.0, 2.0, 2.0])[: system.ao.shape[2]]

    def chunk(ao):  # ao [nk, n_deriv, nc, nao]
        c0 = jnp.einsum("kpi,kij->kpj", ao[:, 0], Dh)  # [nk, nc, nao]
        prod = jnp.einsum("kpj,kdpj->kdp", c0, jnp.conj(ao))  # [nk, n_deriv, nc]
        return jnp.real(jnp.einsum("k,kdp->dp", system.kweights.astype(prod.dtype), prod)) * scale[:, None]

    rho = jax.lax.map(chunk, system.ao)  # [n_chunks, n_deriv, nc]
    return jnp.moveaxis(rho, 0, 1).reshape(rho.shape[1], -1)


def _potentials(system: CrystalSystem, rho: Array) -> tuple[Array, Array, Array]:
    """(E_H + E_xc, v [n_pad], v_grad [n_deriv - 1, n_pad]) with dE = dV sum_r (v drho + v_grad . dgrad rho)."""
    n_grid, n_pad = system.n_grid, rho.shape[1]
    v_h = coulomb_fft.hartree_potential(rho[0, :n_grid], system.coulG, system.mesh)
    e_h = coulomb_fft.hartree_energy(rho[0, :n_grid], v_h, system.grid_weight)
    sigma = jnp.sum(rho[1:] ** 2, axis=0) if system.is_gga else None
    e_xc, v_rho, v_sigma = xc.potentials(system.xc, rho[0], sigma)
    v = v_rho + jnp.pad(v_h, (0, n_pad - n_grid))
    v_grad = 2.0 * v_sigma * rho[1:]  # d e_xc / d grad rho; [0, n_pad] for LDAs
    return e_h + system.grid_weight * jnp.sum(e_xc), v, v_grad


def potential_matrix(system: CrystalSystem, v: Array, v_grad: Array) -> Array:
    """[nk, nao, nao] V(k)_ij = dV sum_r [v phi_i* phi_j + v_grad . (grad phi_i* phi_j + phi_i* grad phi_j)].

    v: [n_pad] potential (Hartree); v_grad: [n_deriv - 1, n_pad] potential of grad rho.
    """
    n_chunks, nk, n_deriv, nc, nao = system.ao.shape
    weights = jnp.concatenate([0.5 * v[None], v_grad], axis=0) * system.grid_weight  # [n_deriv, n_pad]
    weights = jnp.moveaxis(weights.reshape(n_deriv, n_chunks, nc), 1, 0)  # [n_chunks, n_deriv, nc]

    def step(acc, inputs):
        ao, w = inputs
        x = jnp.einsum("dp,kdpi->kpi", w.astype(ao.dtype), ao)  # [nk, nc, nao]
        return acc + jnp.einsum("kpj,kpi->kji", jnp.conj(ao[:, 0]), x), None

    a, _ = jax.lax.scan(step, jnp.zeros((nk, nao, nao), system.ao.dtype), (system.ao, weights))
    return a + dagger(a)


def one_electron_energy(system: CrystalSystem, D: Array) -> Array:
    """[] sum_k w_k Re tr(D(k) hcore(k)) (Hartree per cell)."""
    return jnp.sum(system.kweights * jnp.real(jnp.einsum("kij,kji->k", D, system.hcore)))


def energy_terms(system: CrystalSystem, D: Array) -> dict[str, Array]:
    """Kohn-Sham energy pieces (Hartree per cell): one_electron, hartree, xc, nuclear."""
    rho = grid_density(system, D)
    n_grid = system.n_grid
    v_h = coulomb_fft.hartree_potential(rho[0, :n_grid], system.coulG, system.mesh)
    sigma = jnp.sum(rho[1:] ** 2, axis=0) if system.is_gga else None
    return dict(
        one_electron=one_electron_energy(system, D),
        hartree=coulomb_fft.hartree_energy(rho[0, :n_grid], v_h, system.grid_weight),
        xc=system.grid_weight * jnp.sum(xc.energy_density(system.xc, rho[0], sigma)),
        nuclear=system.e_nuc,
    )


@jax.custom_vjp
def energy(system: CrystalSystem, D: Array) -> Array:
    """[] Kohn-Sham total energy E_KS[D] per cell (Hartree). D: [nk, nao, nao] complex.

    Reverse-mode derivative with respect to D(k): w_k conj(F(k)) (JAX's convention for a real
    function of a complex argument), F = ``fock(system, D)``; none with respect to ``system``.
    """
    e2, _, _ = _potentials(system, grid_density(system, D))
    return one_electron_energy(system, D) + e2 + system.e_nuc


def _energy_fwd(system, D):
    e2, v, v_grad = _potentials(system, grid_density(system, D))
    return one_electron_energy(system, D) + e2 + system.e_nuc, (system, v, v_grad)


def _energy_bwd(residuals, g):
    system, v, v_grad = residuals
    F = system.hcore + potential_matrix(system, v, v_grad)
    return None, (g * system.kweights)[:, None, None] * jnp.conj(F)


energy.defvjp(_energy_fwd, _energy_bwd)
kind.energy.register(CrystalSystem, energy)


@kind.fock.register
def fock(system: CrystalSystem, D: Array) -> Array:
    """[nk, nao, nao] Kohn-Sham matrices F(k) = hcore(k) + V_H(k) + V_xc(k) (Hartree), Hermitian."""
    _, v, v_grad = _potentials(system, grid_density(system, D))
    return system.hcore + potential_matrix(system, v, v_grad)


@kind.effective_hamiltonian.register
def effective_hamiltonian(system: CrystalSystem, H: Array) -> Array:
    """[nk, nao, nao] P H P + L (1 - P): H restricted to the basis PySCF keeps (``basis_projector``).

    With the orthogonalizer X = P S^-1/2 P + (1 - P), the removed near-null directions of S(k)
    become levels at L = ``PAD_LEVEL_HARTREE``, never occupied, as in PySCF's canonical
    orthogonalization; without linear dependencies P = 1 and this is H.
    """
    return kept_part(system, H) + PAD_LEVEL_HARTREE * (jnp.eye(H.shape[-1], dtype=H.dtype) - system.basis_projector)


@kind.kept_part.register
def kept_part(system: CrystalSystem, A: Array) -> Array:
    """[nk, nao, nao] P A P, A restricted to the basis PySCF keeps."""
    P = system.basis_projector
    return P @ A @ P


@kind.density_and_entropy_of.register
def density_and_entropy_of(system: CrystalSystem, H: Array, X: Array | None = None) -> tuple[Array, Array]:
    """(D [nk, nao, nao], entropy) of H(k) [nk, nao, nao] at the system's electron count and smearing,
    in the basis left after PySCF's linear-dependency removal (``effective_hamiltonian``)."""
    return density_and_entropy(effective_hamiltonian(system, H), system.overlap, system.n_electrons, system.sigma,
                               system.smearing_kind, kweights=system.kweights, ao_mask=system.ao_mask,
                               s_inv_sqrt=system.s_inv_sqrt if X is None else X)


@kind.orthogonalizer.register
def _(system: CrystalSystem) -> Array:
    return system.s_inv_sqrt


@kind.metric.register
def _(system: CrystalSystem) -> Array:
    return system.kweights[:, None, None]

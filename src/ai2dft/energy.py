"""Molecular Kohn-Sham energy E_KS[D] and Fock matrix F[D] = dE/dD.

For a total (spin-summed) density matrix D [nao, nao] of a closed shell (D = 2 C f C^T):

    E_KS[D] = tr(D hcore) + E_H[D] + E_xc[rho_D] - alpha/4 tr(D K[D]) + E_nuc    (Hartree)
    rho(r) = sum_ij D_ij phi_i(r) phi_j(r),  grad rho = 2 sum_ij D_ij grad phi_i phi_j
    E_xc = sum_g w_g e_xc(rho_g, |grad rho_g|^2)
    F[D] = hcore + J[D] + V_xc[D] - alpha/2 K[D],
    V_xc,ij = sum_g w_g [vrho phi_i phi_j + 2 vsigma grad rho . (grad phi_i phi_j + phi_i grad phi_j)]

alpha is the exact-exchange fraction of a global hybrid (``xc.exact_exchange_fraction(system.xc)``,
0 for LDAs and GGAs) and K the density-fitted exchange matrix (``ai2dft.exchange``).
D is symmetrized on entry, so ``jax.grad(energy, argnums=1)`` equals ``fock`` for any D. All
functions take the ``System`` as an argument: ``jax.jit(energy)`` compiles once per shape and is
shared by every system (padded to) the same shapes. The Mermin free energy Omega(H) of any kind of
system is ``ai2dft.free_energy``; ``ai2dft.molecule`` registers these functions for ``System``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import coulomb, exchange, grid_density, xc
from ai2dft.hermitian import hermitian_part
from ai2dft.system import System

Array = jax.Array


def density_on_grid(system: System, D: Array) -> tuple[Array, Array | None]:
    """rho [ngrid] and, for GGAs, grad rho [3, ngrid] of a symmetric D (``grid_density``, custom VJP)."""
    rows = grid_density.density(xc.is_gga(system.xc), system.ao, system.ao_grad, D)
    return rows[0], (rows[1:] if xc.is_gga(system.xc) else None)


def _sigma(grad_rho: Array | None) -> Array | None:
    return None if grad_rho is None else jnp.sum(grad_rho**2, axis=0)


def xc_energy(system: System, D: Array) -> Array:
    """[] exchange-correlation energy (Hartree)."""
    rho, grad_rho = density_on_grid(system, hermitian_part(D))
    return jnp.dot(system.weights, xc.energy_density(system.xc, rho, _sigma(grad_rho)))


def xc_matrix(system: System, D: Array) -> Array:
    """[nao, nao] exchange-correlation potential matrix V_xc = dE_xc/dD (Hartree)."""
    rho, grad_rho = density_on_grid(system, hermitian_part(D))
    _, vrho, vsigma = xc.potentials(system.xc, rho, _sigma(grad_rho))
    v = (system.weights * vrho)[None]  # [1 (+ 3), ngrid] d E_xc / d (rho, grad rho)
    if grad_rho is not None:
        v = jnp.concatenate([v, 2.0 * system.weights * vsigma * grad_rho])
    return hermitian_part(grid_density.potential_matrix(grad_rho is not None, system.ao, system.ao_grad, v))


def energy_terms(system: System, D: Array) -> dict[str, Array]:
    """Components of E_KS[D] in Hartree: "one_electron" (tr D hcore), "hartree", "xc" (semi-local),
    "nuclear", and for hybrids "exact_exchange" (-alpha/4 tr D K)."""
    D = hermitian_part(D)
    terms = {
        "one_electron": jnp.sum(D * system.hcore),
        "hartree": coulomb.hartree_energy(system.cderi, D),
        "xc": xc_energy(system, D),
        "nuclear": system.e_nuc,
    }
    alpha = xc.exact_exchange_fraction(system.xc)
    if alpha:
        terms["exact_exchange"] = alpha * exchange.exchange_energy(system.cderi, D)
    return terms


def energy(system: System, D: Array) -> Array:
    """[] Kohn-Sham total energy E_KS[D] (Hartree) of a total density matrix D [nao, nao]."""
    return sum(energy_terms(system, D).values())


def fock(system: System, D: Array) -> Array:
    """[nao, nao] Kohn-Sham Fock matrix F[D] = hcore + J[D] + V_xc[D] - alpha/2 K[D] = dE_KS/dD (Hartree)."""
    D = hermitian_part(D)
    F = system.hcore + coulomb.coulomb_matrix(system.cderi, D) + xc_matrix(system, D)
    alpha = xc.exact_exchange_fraction(system.xc)
    return F - 0.5 * alpha * exchange.exchange_matrix(system.cderi, D) if alpha else F


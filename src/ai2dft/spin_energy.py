"""Kohn-Sham energy E_KS[D] and Fock matrices F[D] = dE_KS/dD of a collinear spin-polarized molecule.

For D [2, nao, nao] = (D_alpha, D_beta) and the total D_t = D_alpha + D_beta:

    E_KS[D] = tr(D_t hcore) + E_H[D_t] + E_xc[rho_alpha, rho_beta] - alpha/2 sum_s tr(D_s K[D_s]) + E_nuc
    F_s[D]  = hcore + J[D_t] + V_xc,s - alpha K[D_s],    V_xc,s = dE_xc/dD_s     (Hartree)

with rho_s, grad rho_s from D_s on the grid of ``system.base`` (as the closed-shell layer builds rho),
E_xc from ``ai2dft.xc_spin``, J and the density-fitted exact exchange K (fraction alpha of a global hybrid)
from ``ai2dft.coulomb`` and ``ai2dft.exchange``. V_xc,s is the reverse-mode derivative of E_xc (one grid
pass forward, one back). D is symmetrized on entry, so ``jax.grad(energy, argnums=1)`` equals ``fock``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import coulomb, exchange, xc, xc_spin
from ai2dft.energy import density_on_grid
from ai2dft.hermitian import hermitian_part
from ai2dft.spin_system import SpinSystem

Array = jax.Array


def spin_densities(system: SpinSystem, D: Array) -> tuple[Array, Array | None]:
    """rho [2, ngrid] and, for GGAs, sigma [3, ngrid] = (aa, ab, bb) products of the spin-density gradients,
    of a symmetric D [2, nao, nao]."""
    (rho_a, grad_a), (rho_b, grad_b) = (density_on_grid(system.base, D[s]) for s in (0, 1))
    rho = jnp.stack([rho_a, rho_b])
    if grad_a is None:
        return rho, None
    return rho, jnp.stack([jnp.sum(grad_a * grad_a, 0), jnp.sum(grad_a * grad_b, 0), jnp.sum(grad_b * grad_b, 0)])


def xc_energy(system: SpinSystem, D: Array) -> Array:
    """[] semi-local exchange-correlation energy (Hartree) of D [2, nao, nao]."""
    rho, sigma = spin_densities(system, hermitian_part(D))
    return jnp.dot(system.base.weights, xc_spin.energy_density(system.base.xc, rho, sigma))


def energy_terms(system: SpinSystem, D: Array) -> dict[str, Array]:
    """Components of E_KS[D] in Hartree: "one_electron", "hartree", "xc", "nuclear" and, for hybrids,
    "exact_exchange" (-alpha/2 sum_s tr(D_s K[D_s]))."""
    D = hermitian_part(D)
    base, total = system.base, D[0] + D[1]
    terms = {
        "one_electron": jnp.sum(total * base.hcore),
        "hartree": coulomb.hartree_energy(base.cderi, total),
        "xc": xc_energy(system, D),
        "nuclear": base.e_nuc,
    }
    alpha = xc.exact_exchange_fraction(base.xc)
    if alpha:  # exchange_energy(L, D_s) = -1/4 tr(D_s K[D_s])
        terms["exact_exchange"] = 2.0 * alpha * (exchange.exchange_energy(base.cderi, D[0])
                                                 + exchange.exchange_energy(base.cderi, D[1]))
    return terms


def energy(system: SpinSystem, D: Array) -> Array:
    """[] Kohn-Sham total energy E_KS[D] (Hartree) of D [2, nao, nao] (alpha, beta)."""
    return sum(energy_terms(system, D).values())


def fock(system: SpinSystem, D: Array) -> Array:
    """[2, nao, nao] Fock matrices F_s = hcore + J[D_t] + V_xc,s - alpha K[D_s] = dE_KS/dD_s (Hartree)."""
    D = hermitian_part(D)
    base = system.base
    F = (base.hcore + coulomb.coulomb_matrix(base.cderi, D[0] + D[1])
         + jax.grad(xc_energy, argnums=1)(system, D))
    alpha = xc.exact_exchange_fraction(base.xc)
    if alpha:
        F = F - alpha * jnp.stack([exchange.exchange_matrix(base.cderi, D[s]) for s in (0, 1)])
    return F

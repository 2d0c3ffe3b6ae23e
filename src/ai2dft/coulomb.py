"""Hartree energy and Coulomb (J) matrix of a molecule by density fitting.

With the Cholesky-decomposed density-fitting tensor L [naux, nao, nao] (``System.cderi``),
(ij|kl) ~ sum_P L_Pij L_Pkl, so for a total density matrix D:
    c_P  = sum_kl L_Pkl D_kl,   J_ij = sum_P L_Pij c_P,   E_H = 1/2 sum_P c_P^2 = 1/2 tr(D J).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def fitted_density(cderi: Array, D: Array) -> Array:
    """[naux] density-fitting coefficients c_P = sum_kl L_Pkl D_kl."""
    return jnp.einsum("pkl,kl->p", cderi, D)


def hartree_energy(cderi: Array, D: Array) -> Array:
    """[] Hartree energy 1/2 sum_P c_P^2 (Hartree)."""
    c = fitted_density(cderi, D)
    return 0.5 * jnp.dot(c, c)


def coulomb_matrix(cderi: Array, D: Array) -> Array:
    """[nao, nao] Coulomb matrix J = dE_H/dD (Hartree)."""
    return jnp.einsum("pij,p->ij", cderi, fitted_density(cderi, D))

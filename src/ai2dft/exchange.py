"""Exact (Hartree-Fock) exchange of a molecule by density fitting, for global hybrid functionals.

With the Cholesky density-fitting tensor L [naux, nao, nao] (``System.cderi``, the same tensor as
the Coulomb term, so it equals PySCF's density-fitted K when the auxiliary basis is a JK fit),
(ik|jl) ~ sum_P L_Pik L_Pjl, and for a total (spin-summed) symmetric density matrix D:

    K_ij = sum_P sum_kl L_Pik D_kl L_Pjl,    E_x^HF = -1/4 tr(D K),    dE_x^HF/dD = -1/2 K.

A hybrid with exact-exchange fraction alpha adds alpha E_x^HF to the energy and -alpha/2 K to the
Fock matrix. Memory: one [naux, nao, nao] intermediate besides L itself; cost naux nao^3.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def exchange_matrix(cderi: Array, D: Array) -> Array:
    """[nao, nao] exchange matrix K_ij = sum_P sum_kl L_Pik D_kl L_Pjl (Hartree) of a symmetric D."""
    LD = jnp.einsum("pik,kl->pil", cderi, D)  # [naux, nao, nao]
    return jnp.einsum("pil,pjl->ij", LD, cderi)


def exchange_energy(cderi: Array, D: Array) -> Array:
    """[] full exact-exchange energy -1/4 tr(D K[D]) (Hartree) of a symmetric total D; its D-gradient is -K/2."""
    return -0.25 * jnp.sum(D * exchange_matrix(cderi, D))

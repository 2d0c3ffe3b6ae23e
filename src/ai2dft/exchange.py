"""Exact (Hartree-Fock) exchange of a molecule by density fitting, for global hybrid functionals.

With the Cholesky density-fitting tensor L [naux, nao, nao] (``System.cderi``, the same tensor as
the Coulomb term, so it equals PySCF's density-fitted K when the auxiliary basis is a JK fit),
(ik|jl) ~ sum_P L_Pik L_Pjl, and for a total (spin-summed) density matrix D:

    K_ij = sum_P sum_kl L_Pik D_kl L_Pjl,    E_x^HF = -1/4 tr(D K),    dE_x^HF/dD = -1/2 K.

A hybrid with exact-exchange fraction alpha adds alpha E_x^HF to the energy and -alpha/2 K to the
Fock matrix. K is accumulated over blocks of ``AUX_CHUNK`` auxiliary functions (two GEMMs per
block, naux nao^3 multiply-adds each in all), so the only temporaries are [AUX_CHUNK, nao, nao]; the
energy carries a custom VJP whose D-cotangent is the K of the forward pass (the gradient costs no
second K build).

Memory: L itself, naux nao^2 float64 (def2-SVP with def2-svp-jkfit: naux ~ 4.6 nao), plus [AUX_CHUNK, nao, nao]
and K. What else lives at the peak of value + gradient of Omega(H) (XLA's compiled memory analysis,
benchmarks/exchange_memory.py, B3LYP/def2-SVP, level-3 grid): the AO values and gradients on the grid
[4, ngrid, nao] and one [ngrid, nao] temporary. C8H18 (202 AOs, 924 aux, 289,488 points): 2.5 GiB in all,
L 0.28 GiB, AO grid values 1.74 GiB. Extrapolated linearly per CH2 for the shapes (compiled sizes, not
fits of memory): C23H48 (562 AOs) needs 22.9 GiB (L 6.1, AO grid values 13.3, temporaries 3.4) and is
the largest alkane in 24 GiB. The dense AO values on the grid, not L, set that limit; L overtakes them
beyond ~50 heavy atoms.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

AUX_CHUNK = 16  # aux functions per block: fastest of 8-64 on one CPU core (benzene, def2-SVP), 2x the unblocked


def exchange_matrix(cderi: Array, D: Array) -> Array:
    """[nao, nao] exchange matrix K_ij = sum_P sum_kl L_Pik D_kl L_Pjl (Hartree) of D [nao, nao];
    L_P = cderi[P] must be symmetric (a density-fitting tensor is)."""
    naux, nao, _ = cderi.shape
    size = min(AUX_CHUNK, naux)
    Dt = D.T

    def block(b, K):
        start = jnp.minimum(b * size, naux - size)  # the last block overlaps its predecessor and
        new = (start + jnp.arange(size) >= b * size)[:, None, None]  # skips the rows already counted
        L = jax.lax.dynamic_slice_in_dim(cderi, start, size)  # [size, nao, nao]
        M = jnp.swapaxes(L @ Dt, 1, 2) * new  # M_Pkj = sum_l D_kl L_Pjl
        return K + jnp.tensordot(L, M, axes=([0, 1], [0, 1]))  # sum_Pk L_Pki M_Pkj

    return jax.lax.fori_loop(0, -(-naux // size), block, jnp.zeros((nao, nao), D.dtype))


@jax.custom_vjp
def exchange_energy(cderi: Array, D: Array) -> Array:
    """[] full exact-exchange energy -1/4 tr(D K[D]) (Hartree); its D-gradient is -K/2 for any D."""
    return -0.25 * jnp.sum(D * exchange_matrix(cderi, D))


def _energy_fwd(cderi, D):
    K = exchange_matrix(cderi, D)
    return -0.25 * jnp.sum(D * K), (cderi, D, K)


def _energy_bwd(residuals, g):
    cderi, D, K = residuals
    Lt = jnp.swapaxes(cderi, 1, 2)  # derivative of the blocked sum as written (L_P^T = L_P for real DF)
    cderi_bar = -0.25 * g * (D @ Lt @ D.T + D.T @ Lt @ D)  # [naux, nao, nao]; dropped under jit unless used
    return cderi_bar, -0.5 * g * K


exchange_energy.defvjp(_energy_fwd, _energy_bwd)

"""Density and density gradient of a molecule on its integration grid, with a hand-written VJP.

For AO values phi [ngrid, nao], their gradients d_x phi [3, ngrid, nao] and a density matrix D [nao, nao]:

    C = phi D                                  [ngrid, nao], one GEMM
    rho_g      = sum_l C_gl phi_gl             (Bohr^-3)
    d_x rho_g  = 2 sum_l C_gl d_x phi_gl       (Bohr^-4; the density gradient when D is symmetric)

The map is linear in D; its VJP for cotangents (rho_bar, grad_bar) [1 + 3, ngrid] is one more GEMM,

    W = rho_bar phi + 2 sum_x grad_bar_x d_x phi     [ngrid, nao]
    D_bar = phi^T W,   phi_bar = rho_bar C + W D^T,   d_x phi_bar = 2 grad_bar_x C,

exact for any D (a symmetric D gets a non-symmetric D_bar; ``hermitian_part`` upstream symmetrizes).
The same ``potential_matrix`` phi^T W is the semi-local part of the Fock matrix (``energy.xc_matrix``).
Why by hand: autodiff of the plain expression on XLA-CPU fuses C = phi D into each of its four
consumers (computing the GEMM up to four times) and reduces over the leading axis of size 3, which is
~10x slower than the three terms written out (benchmarks/RESULTS.md, energy layer). Optimization
barriers on C and W keep each GEMM computed once. Reverse mode only (``jax.custom_vjp``); works under
``jax.vmap`` and for padded systems (zero AO values and weights give zero rows).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _rows(gga: bool, ao: Array, ao_grad: Array, C: Array) -> Array:
    """[1 + 3 gga, ngrid] rho and (GGA) the three components of grad rho from C = ao D."""
    rho = jnp.sum(C * ao, axis=-1)[None]
    if not gga:
        return rho
    # all of ao_grad at once: slicing ao_grad[x] made XLA-CPU copy each [ngrid, nao] slice (1.6x slower, 4x the memory)
    return jnp.concatenate([rho, 2.0 * jnp.sum(ao_grad * C, axis=-1)])


def _weighted_ao(gga: bool, ao: Array, ao_grad: Array, v: Array) -> Array:
    """[ngrid, nao] W = v_0 phi + 2 sum_x v_(1+x) d_x phi for v [1 + 3 gga, ngrid]."""
    W = v[0][:, None] * ao
    if gga:
        W = W + sum(2.0 * v[1 + x][:, None] * ao_grad[x] for x in range(3))
    return jax.lax.optimization_barrier(W)


def potential_matrix(gga: bool, ao: Array, ao_grad: Array, v: Array) -> Array:
    """[nao, nao] phi^T W = sum_g phi_gi (v_0g phi_gj + 2 sum_x v_(1+x)g d_x phi_gj), not symmetrized.

    v: [1 + 3 gga, ngrid] cotangent of (rho, grad rho), e.g. (w vrho, 2 w vsigma grad rho) (Hartree).
    This is the D-derivative of sum_g v_g . (rho_g, grad rho_g) along the map of ``density``.
    """
    return ao.T @ _weighted_ao(gga, ao, ao_grad, v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def density(gga: bool, ao: Array, ao_grad: Array, D: Array) -> Array:
    """[1 + 3 gga, ngrid] rho (row 0) and, if ``gga``, grad rho (rows 1-3) of D [nao, nao].

    ao: [ngrid, nao]; ao_grad: [3, ngrid, nao] (used only if ``gga``). ``gga`` is static.
    """
    return _rows(gga, ao, ao_grad, ao @ D)


def _density_fwd(gga, ao, ao_grad, D):
    C = jax.lax.optimization_barrier(ao @ D)  # [ngrid, nao], computed once for all rows
    return _rows(gga, ao, ao_grad, C), (ao, ao_grad, D, C)


def _density_bwd(gga, residuals, v):
    ao, ao_grad, D, C = residuals
    W = _weighted_ao(gga, ao, ao_grad, v)
    ao_bar = v[0][:, None] * C + W @ D.T
    ao_grad_bar = 2.0 * v[1:, :, None] * C[None] if gga else jnp.zeros_like(ao_grad)
    return ao_bar, ao_grad_bar, ao.T @ W


density.defvjp(_density_fwd, _density_bwd)

"""Variational DFT: minimize the Mermin free energy Omega(H) directly over Hermitian H, for every kind
of system (written against ``ai2dft.kind`` only; crystals minimize over H(k), or over real-space blocks
H(R) with ``ai2dft.crystal_real_space``).

dOmega/dH = chi (F[D(H)] - H) vanishes at self-consistency, so the minimum over H is the SCF
solution (H up to a constant shift c*S; at sigma = 0, Omega depends only on the
occupied-virtual block of H, and the other blocks follow F because of the preconditioner).

Optimizer: L-BFGS (two-loop recursion, 10 pairs) preconditioned by the divided differences. In
the eigenbasis C of the current H (C^T S C = 1) the gradient is 2 Phi o C^T (F - H) C and the
Hessian about -2 Phi (Phi_ij = (f_i - f_j)/(eps_i - eps_j) <= 0; crystals: -2 w_k Phi(k)), so the
preconditioned gradient is the Roothaan residual F[D(H)] - H in the kept basis. It is formed from the
Fock matrix directly: dividing the gradient by Phi ~ exp(-gap/sigma) would amplify its round-off
(tried: steps of 1e96). The
two-loop recursion uses the raw gradients for the curvature pairs and the residuals as the
initial inverse Hessian's action (P g = -(F - H), P y_i = differences of residuals); an Armijo
backtracking line search on Omega keeps every step downhill. H2O (PBE) from the core Hamiltonian
reaches max |dOmega/dH| < 1e-10 in 13 steps. Plain L-BFGS (``optax.lbfgs``) converges too at sigma = 0
(~60 steps), but with smearing it stalls on a plateau: directions that move levels far from the
Fermi energy have gradients ~ exp(-gap/sigma), below round-off, so it stops at the sigma -> 0
solution (1.3e-4 Ha above the minimum for H2O at sigma = 0.02 Ha).
``experiments/variational_h2o.py`` shows both.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from ai2dft import kind, lbfgs
from ai2dft.hermitian import hermitian_part
from ai2dft.lbfgs import VariationalResult
from ai2dft.scf import checked_start

Array = jax.Array


def minimize_free_energy(system, H0: Array | None = None, max_iter: int = 100, gtol: float = 1e-8,
                         memory: int = 10) -> VariationalResult:
    """Minimize Omega(H) over Hermitian H (H-shaped) from H0 (default: the core Hamiltonian) by
    preconditioned L-BFGS.

    Stops when max |dOmega/dH| < gtol, after max_iter steps, or when no downhill step is found
    within round-off (then ``converged`` reflects gtol only). Jitted; max_iter and memory are static.
    """
    H0 = checked_start(system, H0, "minimize_free_energy", memory=memory)
    return _minimize(system, H0, gtol, max_iter, memory)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _minimize(system, H0, gtol, max_iter, memory):
    def to_h(x):
        return hermitian_part(from_real(x, H0.dtype))

    return minimize_parametrized(system, to_h, to_real, to_real(hermitian_part(H0)), gtol, max_iter, memory, to_h)


def to_real(H: Array) -> Array:
    """Real parameters of H: H itself if real, else [2, *H.shape] (real and imaginary parts)."""
    return jnp.stack([jnp.real(H), jnp.imag(H)]) if jnp.iscomplexobj(H) else H


def from_real(x: Array, dtype) -> Array:
    """Inverse of ``to_real`` for a Hamiltonian of ``dtype``."""
    return x[0] + 1j * x[1] if jnp.issubdtype(dtype, jnp.complexfloating) else x


def evaluator(system, to_h: Callable, from_h: Callable) -> Callable:
    """x -> (Omega, dOmega/dx, pg) over real parameters x with H = to_h(x) (linear); pg = from_h(F[D(H)] - H)
    restricted to the kept basis is the preconditioned descent direction (from_h: the inverse of to_h).

    F - H = -P dOmega/dH (up to c*S), with P the divided-difference preconditioner: dOmega/dH is
    2 Phi o (F - H) in the eigenbasis of H, Phi <= 0. It is taken from the Fock matrix directly (the
    energy's gradient, ``kind.fock_of_gradient``), since dividing the gradient by Phi ~ exp(-gap/sigma)
    would amplify its round-off. One D(H), one energy-and-Fock evaluation, one VJP.
    """
    X = kind.orthogonalizer(system)

    def evaluate(x):
        H, to_h_vjp = jax.vjp(to_h, x)
        (D, entropy), density_vjp = jax.vjp(lambda h: kind.density_and_entropy_of(system, h, X), H)
        e_ks, dE = jax.value_and_grad(kind.energy, argnums=1)(system, D)
        (g,) = to_h_vjp(density_vjp((dE, -system.sigma * jnp.ones_like(entropy)))[0])
        residual = kind.kept_part(system, kind.fock_of_gradient(system, dE) - H)
        return e_ks - system.sigma * entropy, g, from_h(residual)

    return evaluate


def minimize_parametrized(system, to_h: Callable, from_h: Callable, x0, gtol, max_iter: int, memory: int,
                          view: Callable) -> VariationalResult:
    """``ai2dft.lbfgs.minimize`` of Omega over real parameters x (H = to_h(x), from_h its inverse) from x0;
    traced (call inside ``jax.jit``). The result's H and H_path hold view(x) (e.g. to_h, or complex blocks)."""
    result = lbfgs.minimize(evaluator(system, to_h, from_h), x0, gtol, max_iter, memory)
    return VariationalResult(H=view(result.H), free_energy=result.free_energy, converged=result.converged,
                             n_iter=result.n_iter, H_path=jax.vmap(view)(result.H_path),
                             free_energy_path=result.free_energy_path, grad_path=result.grad_path)

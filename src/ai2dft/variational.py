"""Variational DFT: minimize the Mermin free energy Omega(H) directly over symmetric H.

dOmega/dH = chi (F[D(H)] - H) vanishes at self-consistency, so the minimum over H is the SCF
solution (H up to a constant shift c*S; at sigma = 0, Omega depends only on the
occupied-virtual block of H, and the other blocks follow F because of the preconditioner).

Optimizer: L-BFGS (two-loop recursion, 10 pairs) preconditioned by the divided differences. In
the eigenbasis C of the current H (C^T S C = 1) the gradient is 2 Phi o C^T (F - H) C and the
Hessian about -2 Phi (Phi_ij = (f_i - f_j)/(eps_i - eps_j) <= 0), so the preconditioned gradient
is the Roothaan residual F[D(H)] - H. It is formed from the Fock matrix directly: dividing the
gradient by Phi ~ exp(-gap/sigma) would amplify its round-off (tried: steps of 1e96). The
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

import jax
import jax.numpy as jnp

from ai2dft import lbfgs
from ai2dft.density import density_and_entropy, inverse_sqrt_overlap, mask_padding
from ai2dft.energy import energy
from ai2dft.lbfgs import VariationalResult
from ai2dft.system import System

Array = jax.Array


def minimize_free_energy(system: System, H0: Array | None = None, max_iter: int = 100, gtol: float = 1e-8,
                         memory: int = 10) -> VariationalResult:
    """Minimize Omega(H) from H0 (default: the core Hamiltonian) by preconditioned L-BFGS.

    Stops when max |dOmega/dH| < gtol, after max_iter steps, or when no downhill step is found
    within round-off (then ``converged`` reflects gtol only). Jitted; max_iter and memory are static.
    """
    if memory < 1:
        raise ValueError(f"memory must be >= 1, got {memory}")
    H0 = system.hcore if H0 is None else jnp.asarray(H0)
    if H0.shape != system.hcore.shape:
        raise ValueError(f"H0 has shape {H0.shape}, expected {system.hcore.shape}")
    return _minimize(system, 0.5 * (H0 + H0.T), gtol, max_iter, memory)


def evaluate(system: System, H: Array, X: Array | None = None) -> tuple[Array, Array, Array]:
    """(Omega(H), dOmega/dH, F[D(H)] - H), each Hamiltonian-shaped array [nao, nao] masked like H.

    F - H = -P dOmega/dH (up to c*S), with P the divided-difference preconditioner: dOmega/dH is
    2 Phi o (F - H) in the eigenbasis of H, Phi <= 0. It is taken from the Fock matrix directly,
    since dividing the gradient by Phi ~ exp(-gap/sigma) would amplify its round-off.
    One D(H), one energy-and-Fock evaluation and one VJP. X: precomputed S^-1/2 (optional).
    """
    def density(H):
        return density_and_entropy(H, system.overlap, system.n_electrons, system.sigma, system.smearing_kind,
                                   ao_mask=system.ao_mask, s_inv_sqrt=X)

    (D, entropy), vjp = jax.vjp(density, H)
    e_ks, F = jax.value_and_grad(energy, argnums=1)(system, D)
    (grad,) = vjp((F, -system.sigma * jnp.ones_like(entropy)))
    keep = (system.ao_mask[:, None] * system.ao_mask[None, :]) > 0
    return e_ks - system.sigma * entropy, grad, jnp.where(keep, F - H, 0.0)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _minimize(system, H0, gtol, max_iter, memory):
    X = inverse_sqrt_overlap(mask_padding(H0, system.overlap, system.ao_mask)[1])
    return lbfgs.minimize(functools.partial(evaluate, system, X=X), H0, gtol, max_iter, memory)

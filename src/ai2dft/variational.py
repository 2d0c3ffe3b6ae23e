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

import dataclasses
import functools

import jax
import jax.numpy as jnp

from ai2dft.density import density_and_entropy, inverse_sqrt_overlap, mask_padding
from ai2dft.energy import energy
from ai2dft.system import System

Array = jax.Array
_ARMIJO = 1e-4
_MAX_BACKTRACKS = 30


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VariationalResult:
    """Outcome of ``minimize_free_energy``; trajectories have max_iter + 1 rows (row t: after t
    steps; rows past n_iter repeat the final values).

    H:            [nao, nao] final Hamiltonian (Hartree).
    free_energy:  [] Omega(H), Hartree.
    converged:    [] bool, max |dOmega/dH| < gtol.
    n_iter:       [] int, accepted steps.
    H_path:       [max_iter + 1, nao, nao] H after each step.
    free_energy_path: [max_iter + 1] Omega after each step.
    grad_path:    [max_iter + 1] max |dOmega/dH| after each step.
    """

    H: Array
    free_energy: Array
    converged: Array
    n_iter: Array
    H_path: Array
    free_energy_path: Array
    grad_path: Array


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


def _two_loop(g, pg, s_hist, y_hist, z_hist, rho, n_valid, newest):
    """L-BFGS direction -H_k g whose initial inverse Hessian P acts on the gradients as
    P g = -pg, P y_i = z_i (circular buffers [m, ...], newest slot given)."""
    m = s_hist.shape[0]
    order = [(newest - i) % m for i in range(m)]  # newest first
    q, r, alphas = g, -pg, []
    for i, k in enumerate(order):
        a = jnp.where(i < n_valid, rho[k] * jnp.vdot(s_hist[k], q), 0.0)
        q, r = q - a * y_hist[k], r - a * z_hist[k]
        alphas.append(a)
    for i, k in reversed(list(enumerate(order))):
        b = jnp.where(i < n_valid, rho[k] * jnp.vdot(y_hist[k], r), 0.0)
        r = r + (alphas[i] - b) * s_hist[k]
    return -r


@functools.partial(jax.jit, static_argnums=(3, 4))
def _minimize(system, H0, gtol, max_iter, memory):
    X = inverse_sqrt_overlap(mask_padding(H0, system.overlap, system.ao_mask)[1])
    evaluate_at = functools.partial(evaluate, system, X=X)
    omega0, g0, pg0 = evaluate_at(H0)
    n = H0.shape[-1]
    hist = jnp.zeros((memory, n, n), H0.dtype)
    paths = (jnp.broadcast_to(H0, (max_iter + 1, n, n)), jnp.full(max_iter + 1, omega0),
             jnp.full(max_iter + 1, jnp.max(jnp.abs(g0))))

    def line_search(H, point, d):
        omega, g, pg = point
        slope = jnp.vdot(g, d)
        slack = 16 * jnp.finfo(H.dtype).eps * jnp.abs(omega)  # round-off of Omega itself

        def accepted(alpha, om):
            return om <= omega + _ARMIJO * alpha * slope + slack

        def body(c):
            k, alpha, _ = c
            alpha = jnp.where(k == 0, 1.0, 0.5 * alpha)
            return k + 1, alpha, evaluate_at(H + alpha * d)

        k, alpha, new = jax.lax.while_loop(lambda c: (c[0] < _MAX_BACKTRACKS) & ~accepted(c[1], c[2][0]), body,
                                           (0, 1.0, (jnp.inf, g, pg)))
        return alpha, new, accepted(alpha, new[0])

    def cond(state):
        it, _, point, *_, stalled, _ = state
        return (it < max_iter) & (jnp.max(jnp.abs(point[1])) >= gtol) & ~stalled

    def body(state):
        it, H, point, hist_s, hist_y, hist_z, rho, n_stored, n_valid, _, paths = state
        _, g, pg = point
        d = _two_loop(g, pg, hist_s, hist_y, hist_z, rho, n_valid, (n_stored - 1) % memory)
        downhill = jnp.vdot(g, d) < 0
        d = jnp.where(downhill, d, pg)  # restart from the preconditioned gradient
        n_valid = jnp.where(downhill, n_valid, 0)
        alpha, new, ok = line_search(H, point, d)
        s, y, z = alpha * d, new[1] - g, pg - new[2]  # z = P y with P g = -pg
        sy = jnp.vdot(s, y)
        keep = ok & (sy > 1e-12 * jnp.sqrt(jnp.vdot(s, s) * jnp.vdot(y, y)))
        slot = n_stored % memory
        hist_s, hist_y, hist_z = (jnp.where(keep, h.at[slot].set(v), h) for h, v in ((hist_s, s), (hist_y, y), (hist_z, z)))
        rho = jnp.where(keep, rho.at[slot].set(1.0 / jnp.where(keep, sy, 1.0)), rho)
        n_valid = jnp.where(keep, jnp.minimum(n_valid + 1, memory), n_valid)
        n_stored = n_stored + keep.astype(n_stored.dtype)
        H = jnp.where(ok, H + s, H)
        point = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, point)
        it = it + ok.astype(it.dtype)
        rows = jnp.arange(max_iter + 1) >= it  # fill the tail so unused rows hold the final values
        paths = (jnp.where(rows[:, None, None], H, paths[0]), jnp.where(rows, point[0], paths[1]),
                 jnp.where(rows, jnp.max(jnp.abs(point[1])), paths[2]))
        return it, H, point, hist_s, hist_y, hist_z, rho, n_stored, n_valid, ~ok, paths

    state = (jnp.asarray(0), H0, (omega0, g0, pg0), hist, hist, hist, jnp.zeros(memory, H0.dtype), jnp.asarray(0),
             jnp.asarray(0), jnp.asarray(False), paths)
    it, H, (omega, g, _), *_, paths = jax.lax.while_loop(cond, body, state)
    return VariationalResult(H=H, free_energy=omega, converged=jnp.max(jnp.abs(g)) < gtol, n_iter=it,
                             H_path=paths[0], free_energy_path=paths[1], grad_path=paths[2])

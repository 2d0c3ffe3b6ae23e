"""L-BFGS preconditioned by the Roothaan residual, shared by the molecular and crystal variational solvers.

``minimize(evaluate, x0, ...)`` minimises Omega over a real parameter array x, where
``evaluate(x) -> (Omega, g, pg)`` gives the free energy, its gradient and the preconditioned gradient
(the residual F[D(H)] - H mapped to parameters). The initial inverse Hessian P acts as P g = -pg and
P y_i = z_i = pg_i - pg_(i+1); the two-loop recursion uses the raw gradients for the curvature pairs;
an Armijo backtracking line search on Omega keeps every step downhill (see ``ai2dft.variational``).
Traced code: call it inside ``jax.jit``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


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


def two_loop(g, pg, s_hist, y_hist, z_hist, rho, n_valid, newest):
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


def minimize(evaluate: Callable, x0, gtol, max_iter: int, memory: int) -> VariationalResult:
    """Run the loop from x0 until max|g| < gtol, max_iter accepted steps, or a failed line search.
    ``H`` and ``H_path`` of the result are parameter arrays x."""
    omega0, g0, pg0 = evaluate(x0)
    hist = jnp.zeros((memory,) + x0.shape, x0.dtype)
    paths = (jnp.broadcast_to(x0, (max_iter + 1,) + x0.shape), jnp.full(max_iter + 1, omega0),
             jnp.full(max_iter + 1, jnp.max(jnp.abs(g0))))

    def line_search(x, point, d):
        omega, g, pg = point
        slope = jnp.vdot(g, d)
        slack = 16 * jnp.finfo(x.dtype).eps * jnp.abs(omega)  # round-off of Omega itself

        def accepted(alpha, om):
            return om <= omega + _ARMIJO * alpha * slope + slack

        def body(c):
            k, alpha, _ = c
            alpha = jnp.where(k == 0, 1.0, 0.5 * alpha)
            return k + 1, alpha, evaluate(x + alpha * d)

        k, alpha, new = jax.lax.while_loop(lambda c: (c[0] < _MAX_BACKTRACKS) & ~accepted(c[1], c[2][0]), body,
                                           (0, 1.0, (jnp.inf, g, pg)))
        return alpha, new, accepted(alpha, new[0])

    def cond(state):
        it, _, point, *_, stalled, _ = state
        return (it < max_iter) & (jnp.max(jnp.abs(point[1])) >= gtol) & ~stalled

    def body(state):
        it, x, point, hist_s, hist_y, hist_z, rho, n_stored, n_valid, _, paths = state
        _, g, pg = point
        d = two_loop(g, pg, hist_s, hist_y, hist_z, rho, n_valid, (n_stored - 1) % memory)
        downhill = jnp.vdot(g, d) < 0
        d = jnp.where(downhill, d, pg)  # restart from the preconditioned gradient
        n_valid = jnp.where(downhill, n_valid, 0)
        alpha, new, ok = line_search(x, point, d)
        s, y, z = alpha * d, new[1] - g, pg - new[2]
        sy = jnp.vdot(s, y)
        keep = ok & (sy > 1e-12 * jnp.sqrt(jnp.vdot(s, s) * jnp.vdot(y, y)))
        slot = n_stored % memory
        hist_s, hist_y, hist_z = (jnp.where(keep, h.at[slot].set(v), h)
                                  for h, v in ((hist_s, s), (hist_y, y), (hist_z, z)))
        rho = jnp.where(keep, rho.at[slot].set(1.0 / jnp.where(keep, sy, 1.0)), rho)
        n_valid = jnp.where(keep, jnp.minimum(n_valid + 1, memory), n_valid)
        n_stored = n_stored + keep.astype(n_stored.dtype)
        x = jnp.where(ok, x + s, x)
        point = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, point)
        it = it + ok.astype(it.dtype)
        rows = jnp.arange(max_iter + 1) >= it  # unused rows hold the final values
        paths = (jnp.where(rows.reshape((-1,) + (1,) * x.ndim), x, paths[0]), jnp.where(rows, point[0], paths[1]),
                 jnp.where(rows, jnp.max(jnp.abs(point[1])), paths[2]))
        return it, x, point, hist_s, hist_y, hist_z, rho, n_stored, n_valid, ~ok, paths

    state = (jnp.asarray(0), x0, (omega0, g0, pg0), hist, hist, hist, jnp.zeros(memory), jnp.asarray(0),
             jnp.asarray(0), jnp.asarray(False), paths)
    it, x, (omega, g, _), *_, paths = jax.lax.while_loop(cond, body, state)
    return VariationalResult(H=x, free_energy=omega, converged=jnp.max(jnp.abs(g)) < gtol, n_iter=it,
                             H_path=paths[0], free_energy_path=paths[1], grad_path=paths[2])

"""Self-consistent field in JAX for every kind of system: Roothaan steps H <- F[D(H)] with Pulay DIIS,
in one while_loop, written against ``ai2dft.kind`` only.

Each iteration builds D = D(H) (smearing from the system), the Fock matrix F = F[D] and the
orthogonalized commutator e = X (F' D S - S D F') X (X the kind's orthogonalizer, F' = F in the basis
it keeps: ``kind.effective_hamiltonian``), which vanishes at self-consistency; the next H is the DIIS
extrapolation sum_i c_i F_i minimizing |sum_i c_i e_i| (the kind's inner product: sum_ij for
molecules, sum_k w_k Re tr for crystals) with sum_i c_i = 1 over the last ``diis_space`` iterations.
Converged when max|e| < tol.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp

from ai2dft import kind
from ai2dft.hermitian import dagger

Array = jax.Array
_DIIS_RCOND = 1e-14  # relative eigenvalue cutoff of the DIIS equations (as PySCF)


class ScfNotConverged(RuntimeError):
    """Raised by ``scf(..., on_failure="raise")`` when the SCF does not reach ``tol``."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScfResult:
    """Outcome of ``scf``.

    H:           Fock matrix F[D] of the final density (self-consistent H), Hartree; H-shaped
                 ([nao, nao] molecule, [nk, nao, nao] crystal).
    D:           spin-summed density matrix of the last iteration, H-shaped.
    energy:      [] Kohn-Sham energy E_KS[D], Hartree.
    free_energy: [] Mermin free energy E_KS[D] - sigma * entropy, Hartree.
    converged:   [] bool, error < tol.
    n_iter:      [] int, Fock builds done.
    error:       [] max |X (F D S - S D F) X| of the last iteration, Hartree.
    """

    H: Array
    D: Array
    energy: Array
    free_energy: Array
    converged: Array
    n_iter: Array
    error: Array


def scf(system, max_iter: int = 100, tol: float = 1e-8, H0: Array | None = None,
        diis_space: int = 8, on_failure: str = "warn") -> ScfResult:
    """Converge the Kohn-Sham equations of ``system`` (any kind) from H0 (default: the core Hamiltonian).

    tol: threshold on the max-abs orthogonalized commutator (Hartree; 1e-8 gives energies
    converged far below 1e-8 Ha). on_failure: "warn" (``RuntimeWarning``), "raise"
    (``ScfNotConverged``) or "ignore" when ``converged`` is False; inside an outer ``jax.jit``
    nothing can be raised, so check ``result.converged`` there.
    """
    check_on_failure(on_failure)
    H0 = checked_start(system, H0, "scf", diis_space=diis_space)
    return report_failure(_scf_jit(system, H0, max_iter, tol, diis_space), tol, on_failure)


def checked_start(system, H0, name: str, **counts: int) -> Array:
    """The argument check of solver ``name``: H0 as an array of the system's Hamiltonian dtype (default: hcore),
    after raising TypeError for a ``system`` that is no kind of system, ValueError for an H0 of the wrong shape
    or a count (diis_space, memory) below 1."""
    kind.check_kind(name, system)
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    H0 = system.hcore if H0 is None else jnp.asarray(H0)
    if H0.shape != system.hcore.shape:
        raise ValueError(f"H0 has shape {H0.shape}, expected {system.hcore.shape}")
    return H0.astype(jnp.result_type(H0, system.hcore))


def check_on_failure(on_failure: str) -> None:
    """Raise ValueError unless on_failure is "warn", "raise" or "ignore"."""
    if on_failure not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_failure must be 'warn', 'raise' or 'ignore', got {on_failure!r}")


def report_failure(result: ScfResult, tol: float, on_failure: str) -> ScfResult:
    """``result``, after a ``RuntimeWarning`` ("warn") or ``ScfNotConverged`` ("raise") when it is not
    converged; nothing for "ignore" or inside an outer ``jax.jit`` (traced ``converged``)."""
    if on_failure != "ignore" and not isinstance(result.converged, jax.core.Tracer) and not bool(result.converged):
        message = (f"SCF not converged after {int(result.n_iter)} iterations: commutator error "
                   f"{float(result.error):.2e} > tol {tol:.1e} (energy {float(result.energy):.10f} Ha)")
        if on_failure == "raise":
            raise ScfNotConverged(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return result


def diis_extrapolate(focks: Array, errors_gram: Array, n_valid: Array) -> Array:
    """sum_i c_i F_i with c minimizing c^T B c subject to sum_i c_i = 1.

    focks: [m, n, nao]; errors_gram: [m, m] B_ij = <e_i, e_j>; n_valid: [] slots in use
    (the first n_valid of the circular buffer). Solved by a pseudo-inverse of the bordered
    system (eigenvalues below 1e-14 of the largest dropped), robust when B is nearly singular.
    """
    m = focks.shape[0]
    valid = jnp.arange(m) < n_valid
    both = valid[:, None] & valid[None, :]
    scale = jnp.max(jnp.where(valid, jnp.diagonal(errors_gram), 0.0))
    B = jnp.where(both, errors_gram / jnp.where(scale > 0, scale, 1.0), jnp.eye(m))
    ones = valid.astype(B.dtype)
    A = jnp.block([[B, ones[:, None]], [ones[None, :], jnp.zeros((1, 1), B.dtype)]])
    rhs = jnp.zeros(m + 1, B.dtype).at[m].set(1.0)
    w, v = jnp.linalg.eigh(A)
    keep = jnp.abs(w) > _DIIS_RCOND * jnp.max(jnp.abs(w))
    c = v @ jnp.where(keep, (v.T @ rhs) / jnp.where(keep, w, 1.0), 0.0)
    c = jnp.where(valid, c[:m], 0.0)
    return jnp.einsum("i,ijk->jk", c, focks)


@functools.partial(jax.jit, static_argnums=(4,))
def _scf_jit(system, H0, max_iter, tol, diis_space):
    F, D, entropy, it, error = roothaan_diis(system, H0, max_iter, tol, diis_space)
    e_ks = kind.energy(system, D)
    return ScfResult(H=F, D=D, energy=e_ks, free_energy=e_ks - system.sigma * entropy,
                     converged=error < tol, n_iter=it, error=error)


def roothaan_diis(system, H0: Array, max_iter, tol, diis_space: int = 8):
    """The SCF loop of ``scf`` from H0 (H-shaped), traceable (no checks, no energy) -> (F, D, entropy,
    n_iter, error).

    At most max_iter Fock builds, stopping once the max |X (F' D S - S D F') X| < tol (Hartree). F is the
    Fock matrix of the last density D; with max_iter = 1 it is F[D(H0)]. Used by ``scf`` and as the
    self-consistency target of training (``elct_jax.train.losses``).
    """
    S, X = system.overlap, kind.orthogonalizer(system)
    m, shape = diis_space, H0.shape
    real = jnp.real(H0).dtype

    def step(H):
        D, entropy = kind.density_and_entropy_of(system, H, X)
        F = kind.fock(system, D)
        FDS = kind.effective_hamiltonian(system, F) @ D @ S
        return D, entropy, F, X @ (FDS - dagger(FDS)) @ X

    def cond(state):
        return (state[0] < max_iter) & (state[-1] >= tol)

    def body(state):
        it, H, focks, errors, gram, *_ = state
        D, entropy, F, e = step(H)
        slot = it % m
        focks, errors = focks.at[slot].set(F), errors.at[slot].set(e)
        row = kind.inner(system, errors, e)
        gram = gram.at[slot, :].set(row).at[:, slot].set(row)
        H_next = diis_extrapolate(focks.reshape(m, -1, shape[-1]), gram, jnp.minimum(it + 1, m))
        return it + 1, H_next.reshape(shape), focks, errors, gram, D, entropy, F, jnp.max(jnp.abs(e))

    zeros = jnp.zeros((m,) + shape, H0.dtype)
    state = (jnp.asarray(0), H0, zeros, zeros, jnp.zeros((m, m), real), zeros[0], jnp.zeros((), real), H0,
             jnp.asarray(jnp.inf, real))
    it, _, _, _, _, D, entropy, F, error = jax.lax.while_loop(cond, body, state)
    return F, D, entropy, it, error

"""Solvers for crystals: DIIS self-consistent field and variational minimization of Omega.

``scf``: Roothaan steps H(k) <- F[D(H)](k) with Pulay DIIS in one ``lax.while_loop``, as
``ai2dft.scf`` does for molecules (its ``diis_extrapolate`` and ``ScfResult`` are reused). The
error of iteration i is e_i(k) = X (F' D S - S D F') X per k-point, with X the orthogonalizer and
F' = P F P + L (1 - P) restricted to the basis PySCF keeps (``effective_hamiltonian``); the DIIS
Gram matrix is B_ij = sum_k w_k Re tr(e_i(k)^H e_j(k)).

``minimize_free_energy`` / ``minimize_free_energy_real_space``: Omega minimized directly over
H(k), or over real-space blocks H(R) (complex in general; H(k) = Herm(sum_R H(R) e^{2 pi i k.R})),
by L-BFGS with the divided-difference preconditioner of ``ai2dft.variational``: in the eigenbasis
C(k) of H(k) the Hessian of Omega is about -2 w_k Phi(k), so the preconditioned gradient is the
Roothaan step F[D(H)] - H (taken from F directly) and L-BFGS accelerates it; Armijo backtracking
keeps Omega decreasing. Over H(R) the step is mapped back with ``inverse_bloch_sum``, the inverse
of the Bloch sum when the translations are one per Born-von Karman class (``bvk_translations``);
then minimizing over H(R) and over H(k) are the same problem.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from ai2dft import lbfgs
from ai2dft.crystal import CrystalSystem, bloch_sum, hermitian_part, inverse_bloch_sum
from ai2dft.crystal_energy import density_and_entropy_of, effective_hamiltonian, energy, fock
from ai2dft.scf import ScfResult, check_on_failure, diis_extrapolate, report_failure
from ai2dft.lbfgs import VariationalResult

Array = jax.Array


def scf(system: CrystalSystem, max_iter: int = 100, tol: float = 1e-8, H0: Array | None = None,
        diis_space: int = 8, on_failure: str = "warn") -> ScfResult:
    """Converge the Kohn-Sham equations of a crystal from H0 [nk, nao, nao] (default: hcore).

    Returns an ``ai2dft.scf.ScfResult`` whose H, D are [nk, nao, nao]; tol bounds the max-abs
    orthogonalized commutator (Hartree). on_failure as in ``ai2dft.scf.scf``: "warn"
    (``RuntimeWarning``), "raise" (``ScfNotConverged``) or "ignore" when not converged.
    """
    check_on_failure(on_failure)
    if diis_space < 1:
        raise ValueError(f"diis_space must be >= 1, got {diis_space}")
    H0 = system.hcore if H0 is None else jnp.asarray(H0, system.hcore.dtype)
    if H0.shape != system.hcore.shape:
        raise ValueError(f"H0 has shape {H0.shape}, expected {system.hcore.shape}")
    return report_failure(_scf(system, H0, max_iter, tol, diis_space), tol, on_failure)


def _dagger(a: Array) -> Array:
    return jnp.conj(jnp.swapaxes(a, -1, -2))


@functools.partial(jax.jit, static_argnums=(4,))
def _scf(system, H0, max_iter, tol, diis_space):
    F, D, entropy, it, error = roothaan_diis(system, H0, max_iter, tol, diis_space)
    e_ks = energy(system, D)
    return ScfResult(H=F, D=D, energy=e_ks, free_energy=e_ks - system.sigma * entropy,
                     converged=error < tol, n_iter=it, error=error)


def roothaan_diis(system: CrystalSystem, H0: Array, max_iter, tol, diis_space: int = 8):
    """The SCF loop of ``scf`` from H0(k) [nk, nao, nao], traceable -> (F(k), D(k), entropy, n_iter, error);
    as ``ai2dft.scf.roothaan_diis`` (DIIS on the k-weighted commutators; with max_iter = 1, F = F[D(H0)])."""
    S, X, w = system.overlap, system.s_inv_sqrt, system.kweights
    nk, nao = H0.shape[0], H0.shape[-1]

    def step(H):
        D, entropy = density_and_entropy_of(system, H)
        F = fock(system, D)
        FDS = effective_hamiltonian(system, F) @ D @ S
        return D, entropy, F, X @ (FDS - _dagger(FDS)) @ X

    def cond(state):
        return (state[0] < max_iter) & (state[-1] >= tol)

    def body(state):
        it, H, focks, errors, gram, *_ = state
        D, entropy, F, e = step(H)
        slot = it % diis_space
        focks, errors = focks.at[slot].set(F), errors.at[slot].set(e)
        row = jnp.einsum("k,ikab,kab->i", w, jnp.conj(errors), e).real
        gram = gram.at[slot, :].set(row).at[:, slot].set(row)
        H_next = diis_extrapolate(focks.reshape(diis_space, nk * nao, nao), gram, jnp.minimum(it + 1, diis_space))
        return it + 1, H_next.reshape(H0.shape), focks, errors, gram, D, entropy, F, jnp.max(jnp.abs(e))

    zeros = jnp.zeros((diis_space,) + H0.shape, H0.dtype)
    state = (jnp.asarray(0), H0, zeros, zeros, jnp.zeros((diis_space, diis_space)), H0, jnp.zeros(()), H0,
             jnp.asarray(jnp.inf))
    it, _, _, _, _, D, entropy, F, error = jax.lax.while_loop(cond, body, state)
    return F, D, entropy, it, error


def _complex(x: Array) -> Array:
    return x[0] + 1j * x[1]


def _real_view(z: Array) -> Array:
    return jnp.stack([jnp.real(z), jnp.imag(z)])


def minimize_free_energy(system: CrystalSystem, H0: Array | None = None, max_iter: int = 100,
                         gtol: float = 1e-8, memory: int = 10) -> VariationalResult:
    """Minimize Omega over Hermitian H(k) [nk, nao, nao] from H0 (default: hcore).

    Returns an ``ai2dft.variational.VariationalResult`` (H and H_path hold H(k); converged when
    max |dOmega/dH| < gtol, or stalled when no downhill step is found within round-off).
    Jitted; max_iter and memory are static.
    """
    if memory < 1:
        raise ValueError(f"memory must be >= 1, got {memory}")
    H0 = system.hcore if H0 is None else jnp.asarray(H0, system.hcore.dtype)
    if H0.shape != system.hcore.shape:
        raise ValueError(f"H0 has shape {H0.shape}, expected {system.hcore.shape}")
    return _minimize_k(system, H0, gtol, max_iter, memory)


def minimize_free_energy_real_space(system: CrystalSystem, blocks0: Array, translations: Array,
                                    max_iter: int = 100, gtol: float = 1e-8,
                                    memory: int = 10) -> VariationalResult:
    """Minimize Omega over real-space blocks H(R) [nR, nao, nao] (complex) from blocks0.

    translations: [nR, 3] integer lattice coordinates; use one per Born-von Karman class of the
    k-mesh (``bvk_translations``) for a complete, unaliased parametrization. The result's H and
    H_path hold the blocks; gtol bounds max |dOmega/dH(R)|.
    """
    if memory < 1:
        raise ValueError(f"memory must be >= 1, got {memory}")
    blocks0 = jnp.asarray(blocks0, system.hcore.dtype)
    R = jnp.asarray(translations)
    if blocks0.ndim != 3 or blocks0.shape[1:] != system.hcore.shape[1:] or R.shape != (blocks0.shape[0], 3):
        raise ValueError(f"blocks0 {blocks0.shape} and translations {R.shape} must be [nR, nao, nao] and [nR, 3] "
                         f"with nao = {system.n_ao}")
    return _minimize_r(system, blocks0, R, gtol, max_iter, memory)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _minimize_k(system, H0, gtol, max_iter, memory):
    def to_h(x):
        return hermitian_part(_complex(x))

    result = _minimize(system, to_h, _real_view, _real_view(hermitian_part(H0)), gtol, max_iter, memory)
    return _as_complex(result, jax.vmap(to_h))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _minimize_r(system, blocks0, R, gtol, max_iter, memory):
    kf, w = system.kpts_frac, system.kweights

    def to_h(x):
        return hermitian_part(bloch_sum(_complex(x), R, kf))

    def from_k(direction):
        return _real_view(inverse_bloch_sum(direction, w, kf, R))

    result = _minimize(system, to_h, from_k, _real_view(blocks0), gtol, max_iter, memory)
    return _as_complex(result, jax.vmap(_complex))


def _as_complex(result: VariationalResult, to_h: Callable) -> VariationalResult:
    """The result with H and H_path mapped from real parameter views to complex matrices."""
    return VariationalResult(H=to_h(result.H[None])[0], free_energy=result.free_energy,
                             converged=result.converged, n_iter=result.n_iter, H_path=to_h(result.H_path),
                             free_energy_path=result.free_energy_path, grad_path=result.grad_path)


def _evaluator(system: CrystalSystem, to_h: Callable, from_k: Callable) -> Callable:
    """x -> (Omega, dOmega/dx, pg): pg = from_k(P (F[D(H)] - H) P) is the preconditioned descent direction.

    Taken from the Fock matrix directly rather than by dividing the gradient by Phi ~ exp(-gap/sigma),
    which would amplify its round-off. One D(H), one energy-and-Fock evaluation, one VJP.
    """
    w, P = system.kweights[:, None, None], system.basis_projector

    def evaluate(x):
        H, to_h_vjp = jax.vjp(to_h, x)
        (D, entropy), density_vjp = jax.vjp(functools.partial(density_and_entropy_of, system), H)
        e_ks, dE = jax.value_and_grad(energy, argnums=1)(system, D)  # dE = w_k conj(F(k))
        (g,) = to_h_vjp(density_vjp((dE, -system.sigma * jnp.ones_like(entropy)))[0])
        return e_ks - system.sigma * entropy, g, from_k(P @ (jnp.conj(dE) / w - H) @ P)

    return evaluate


def _minimize(system, to_h: Callable, from_k: Callable, x0, gtol, max_iter: int, memory: int):
    """``ai2dft.lbfgs.minimize`` over a real parameter array x with H(k) = to_h(x); from_k maps a k-space
    direction to parameters (the inverse of to_h's linear part)."""
    return lbfgs.minimize(_evaluator(system, to_h, from_k), x0, gtol, max_iter, memory)

"""Omega of a crystal as a function of real-space blocks H(R), and its minimum over them.

H(k) = Herm(sum_R H(R) e^{2 pi i k.R}) (``ai2dft.crystal.bloch_sum``) is what the network predicts.
The minimizer is ``ai2dft.variational``'s L-BFGS over H(R) (complex in general) with the same
evaluator as over H(k): the preconditioned step F[D(H)] - H is mapped back with
``inverse_bloch_sum``, the inverse of the Bloch sum when the translations are one per Born-von
Karman class (``bvk_translations``); then minimizing over H(R) and over H(k) are the same problem.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ai2dft.api import free_energy
from ai2dft.crystal import CrystalSystem, bloch_sum, inverse_bloch_sum
from ai2dft.hermitian import hermitian_part
from ai2dft.lbfgs import VariationalResult
from ai2dft.scf import checked_start
from ai2dft.variational import from_real, minimize_parametrized, to_real

Array = jax.Array


def free_energy_real_space(system: CrystalSystem, blocks: Array, translations: Array) -> Array:
    """[] Omega of real-space blocks: H(k) = Herm(sum_R H(R) exp(2 pi i k.R)).

    blocks: [nR, nao, nao] H_ij(R) = <i, 0|H|j, R> (Hartree), real or complex; translations:
    [nR, 3] integer lattice coordinates. Taking the Hermitian part makes any list valid: when it
    holds -R for every R with H(-R) = H(R)^H, that part is the Bloch sum itself; otherwise each
    block acts as the symmetrized pair (H(R) at R, H(R)^H at -R) with half weight each.
    """
    return free_energy(system, hermitian_part(bloch_sum(blocks, translations, system.kpts_frac)))


def minimize_free_energy_real_space(system: CrystalSystem, blocks0: Array, translations: Array,
                                    max_iter: int = 100, gtol: float = 1e-8,
                                    memory: int = 10) -> VariationalResult:
    """Minimize Omega over real-space blocks H(R) [nR, nao, nao] (complex) from blocks0.

    translations: [nR, 3] integer lattice coordinates; use one per Born-von Karman class of the
    k-mesh (``bvk_translations``) for a complete, unaliased parametrization. The result's H and
    H_path hold the blocks; gtol bounds max |dOmega/dH(R)|.
    """
    checked_start(system, None, "minimize_free_energy_real_space", memory=memory)
    blocks0 = jnp.asarray(blocks0, system.hcore.dtype)
    R = jnp.asarray(translations)
    if blocks0.ndim != 3 or blocks0.shape[1:] != system.hcore.shape[1:] or R.shape != (blocks0.shape[0], 3):
        raise ValueError(f"blocks0 {blocks0.shape} and translations {R.shape} must be [nR, nao, nao] and [nR, 3] "
                         f"with nao = {system.n_ao}")
    return _minimize_r(system, blocks0, R, gtol, max_iter, memory)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _minimize_r(system, blocks0, R, gtol, max_iter, memory):
    kf, w = system.kpts_frac, system.kweights

    def as_blocks(x):
        return from_real(x, blocks0.dtype)

    def to_h(x):
        return hermitian_part(bloch_sum(as_blocks(x), R, kf))

    def from_h(direction):
        return to_real(inverse_bloch_sum(direction, w, kf, R))

    return minimize_parametrized(system, to_h, from_h, to_real(blocks0), gtol, max_iter, memory, as_blocks)

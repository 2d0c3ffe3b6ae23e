"""The molecule kind: ``ai2dft.kind`` implemented for ``ai2dft.System``.

H, D and F are real symmetric [nao, nao], padded AOs (``ao_mask`` 0) included: they are never
occupied and every residual is zero on them. The energy functional is ``ai2dft.energy``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import kind
from ai2dft.density import density_and_entropy, inverse_sqrt_overlap, mask_padding
from ai2dft.energy import energy, fock
from ai2dft.system import System

Array = jax.Array

kind.energy.register(System, energy)
kind.fock.register(System, fock)


@kind.orthogonalizer.register
def _(system: System) -> Array:
    return inverse_sqrt_overlap(mask_padding(system.hcore, system.overlap, system.ao_mask)[1])


@kind.density_and_entropy_of.register
def _(system: System, H, X=None) -> tuple[Array, Array]:
    return density_and_entropy(H, system.overlap, system.n_electrons, system.sigma, system.smearing_kind,
                               ao_mask=system.ao_mask, s_inv_sqrt=X)


@kind.effective_hamiltonian.register
def _(system: System, H) -> Array:
    return H  # padding is handled inside density_and_entropy (``mask_padding``)


@kind.kept_part.register
def _(system: System, A) -> Array:
    return jnp.where((system.ao_mask[:, None] * system.ao_mask[None, :]) > 0, A, 0.0)


@kind.metric.register
def _(system: System) -> Array:
    return jnp.ones((), system.overlap.dtype)

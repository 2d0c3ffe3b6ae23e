"""Loss terms of the training step, for a batch of B structures.

    mae    mean |H_pred - H_ref| over the real orbital pairs of labelled structures (Hartree)
    omega  mean over structures with a DFT system of Omega(H_pred) / n_electrons (Hartree per electron)
    sc     mean over those structures of mean |H - F[D(H)]| over real AO pairs (self-consistency residual)

Omega is invariant under H -> H + c S, so label-free training fixes H only up to that shift; the
self-consistency residual is not, and pins it. Everything here is pure jnp and vmaps over structures.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft.density import density_and_entropy
from ai2dft.energy import energy, fock
from ai2dft.system import System


def block_mae(pred, target, mask):
    """Masked mean absolute error of arrays of one shape; mask 1 where labelled, 0 elsewhere."""
    return jnp.sum(jnp.abs(pred - target) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _density(system: System, H):
    return density_and_entropy(H, system.overlap, system.n_electrons, system.sigma, system.smearing_kind,
                               ao_mask=system.ao_mask)


def free_energy_per_electron(system: System, H) -> jax.Array:
    """[] Omega(H) / N_electrons for one (padded) system and H [nao, nao] (Hartree)."""
    D, entropy = _density(system, H)
    return (energy(system, D) - system.sigma * entropy) / system.n_electrons


def self_consistency_residual(system: System, H) -> jax.Array:
    """[] mean |H - F[D(H)]| over the real AO pairs (Hartree)."""
    D, _ = _density(system, H)
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]
    return jnp.sum(jnp.abs(H - fock(system, D)) * pair) / jnp.sum(pair)


def masked_mean(values, mask):
    """Mean of values [B] over mask [B] (0/1); 0 if the mask is empty."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def energy_losses(systems: System, H, has_system, w_omega, w_sc):
    """(omega, sc) batch means. systems: System stacked over B; H [B, nao, nao]; has_system [B].

    Each term is computed only when its (traced) weight is non-zero, so a supervised-only step pays
    nothing for it while sharing the same compiled function.
    """
    omega = jax.lax.cond(
        w_omega != 0,
        lambda: masked_mean(jax.vmap(free_energy_per_electron)(systems, H), has_system),
        lambda: jnp.zeros((), H.dtype),
    )
    sc = jax.lax.cond(
        w_sc != 0,
        lambda: masked_mean(jax.vmap(self_consistency_residual)(systems, H), has_system),
        lambda: jnp.zeros((), H.dtype),
    )
    return omega, sc

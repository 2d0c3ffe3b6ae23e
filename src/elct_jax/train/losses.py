"""Loss terms of the training step, for a batch of B structures.

    mae    mean |H_pred - H_ref| over the real orbital pairs of labelled structures (Hartree)
    omega  mean over structures with a DFT system of Omega(H_pred) / n_electrons (Hartree per electron)
    sc     mean over those structures of mean |H - F[D(H)]| over real AO pairs (self-consistency residual)

Omega is invariant under H -> H + c S, so label-free training fixes H only up to that shift; the
self-consistency residual is not, and pins it. Omega also leaves the occupied-occupied and
virtual-virtual blocks of H free (it depends on H only through D(H)), and its gradient
dOmega/dH = chi[F - H] is damped by the response chi ~ (f_i - f_a) / (e_i - e_a), tiny for levels far
from the Fermi level: plain first-order training on Omega stalls (experiments/unsupervised_h2o.py).

The residual is differentiated with F[D(H)] held fixed (``stop_gradient``): F is the label the
structure generates for itself, as in self-consistency training (Zhang et al., ICML 2024), and the
H-gradient sign(H - F) points along the preconditioned Omega gradient -chi^{-1} dOmega/dH = H - F
(the direction of the project's variational solver, ``ai2dft.lbfgs``), with no back-propagation through
the Fock build. Its fixed point H = F[D(H)] is the SCF solution, which pins every block of H.
Everything here is pure jnp and vmaps over structures.
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
    """[] mean |H - F[D(H)]| over the real AO pairs (Hartree); differentiated with F held fixed."""
    D, _ = _density(system, jax.lax.stop_gradient(H))
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]
    target = jax.lax.stop_gradient(fock(system, D))
    return jnp.sum(jnp.abs(H - target) * pair) / jnp.sum(pair)


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

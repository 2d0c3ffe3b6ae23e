"""Loss terms of the training step, for a batch of B structures.

    mae    mean |H_pred - H_ref| over the real orbital pairs of labelled structures (Hartree)
    omega  mean over structures with a DFT system of Omega(H_pred) / n_electrons (Hartree per electron)
    sc     mean over those structures of mean |H - T(H)| over real AO pairs (self-consistency residual),
           T(H) = the Fock matrix after ``sc_iterations`` Roothaan-DIIS steps from H (1: T = F[D(H)])

Omega is invariant under H -> H + c S, so label-free training fixes H only up to that shift; the
self-consistency residual is not, and pins it. Omega also leaves the occupied-occupied and
virtual-virtual blocks of H free (it depends on H only through D(H)), and its gradient
dOmega/dH = chi[F - H] is damped by the response chi ~ (f_i - f_a) / (e_i - e_a), tiny for levels far
from the Fermi level: plain first-order training on Omega stalls (experiments/unsupervised_h2o.py).

The residual is differentiated with the target held fixed (``stop_gradient``): T is the label the
structure generates for itself, as in self-consistency training (Zhang et al., ICML 2024), with no
back-propagation through the Fock build. With one iteration, T = F[D(H)] and the H-gradient sign(H - F)
points along the preconditioned Omega gradient -chi^{-1} dOmega/dH = H - F (the direction of the
project's variational solver, ``ai2dft.lbfgs``). Near the solution H - F[D(H)] = (1 - K chi)(H - H_scf):
the residual weighs the error through the dielectric operator (K the Hartree-XC kernel), and at a finite
budget training settles where that weighted error, not |H - H_scf|, is small. More iterations
(``sc_iterations`` = n, warm-started DIIS, each one Fock build without gradient) bring T towards the
SCF solution H_scf itself, so the residual becomes |H - H_scf| and label-free training converges as
supervised training does (experiments/unsupervised_h2o.py). The fixed point H = T(H) is the SCF
solution for every n, which pins every block of H.
Everything here is pure jnp and vmaps over structures.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft.density import density_and_entropy
from ai2dft.energy import energy
from ai2dft.scf import roothaan_diis
from ai2dft.system import System

TARGET_TOL = 1e-10  # Hartree: the target's DIIS stops early once its commutator is below this


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


def self_consistency_residual(system: System, H, iterations: int = 1) -> jax.Array:
    """[] mean |H - T(H)| over the real AO pairs (Hartree), T(H) the Fock matrix after ``iterations``
    Roothaan-DIIS steps from H [nao, nao] (1: F[D(H)]); differentiated with T held fixed."""
    F, *_ = roothaan_diis(system, jax.lax.stop_gradient(H), iterations, TARGET_TOL)
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]
    return jnp.sum(jnp.abs(H - jax.lax.stop_gradient(F)) * pair) / jnp.sum(pair)


def masked_mean(values, mask):
    """Mean of values [B] over mask [B] (0/1); 0 if the mask is empty."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def energy_losses(systems: System, H, has_system, w_omega, w_sc, sc_iterations: int = 1):
    """(omega, sc) batch means. systems: System stacked over B; H [B, nao, nao]; has_system [B];
    sc_iterations: Roothaan-DIIS steps of the self-consistency target (static).

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
        lambda: masked_mean(jax.vmap(lambda s, h: self_consistency_residual(s, h, sc_iterations))(systems, H),
                            has_system),
        lambda: jnp.zeros((), H.dtype),
    )
    return omega, sc

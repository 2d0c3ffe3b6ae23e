"""The spin-polarized molecule kind: ``ai2dft.kind`` implemented for ``ai2dft.SpinSystem``.

H, D and F are [2, nao, nao] real symmetric (alpha, beta); D[s] is the density matrix of spin s, with
occupations in [0, 1] per spin-orbital. D(H) reuses the closed-shell ``density_and_entropy`` (its
divided-difference VJP, so degenerate levels of either spin are exact):

* fixed magnetisation (``spin`` = N_alpha - N_beta): each spin on its own, N_s electrons and its own
  chemical potential: D_s = density_and_entropy(H_s, S, 2 N_s) / 2, entropy halved likewise;
* free magnetisation (``spin`` None): both spins as two "k-points" of weight 1/2 sharing one chemical
  potential for the total electron count: D = density_and_entropy(H, S, N, kweights=(1/2, 1/2)) / 2, whose
  entropy 2 sum_k w_k sum_i s_ki is already the sum over both spins.

The entropy is dimensionless and summed over spin-orbitals, so Omega = E_KS[D] - sigma * entropy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import kind, molecule, spin_energy  # noqa: F401  (molecule: the base System's functions)
from ai2dft.density import density_and_entropy
from ai2dft.spin_system import SpinSystem

Array = jax.Array

kind.energy.register(SpinSystem, spin_energy.energy)
kind.fock.register(SpinSystem, spin_energy.fock)


@kind.orthogonalizer.register
def _(system: SpinSystem) -> Array:
    X = kind.orthogonalizer(system.base)
    return jnp.broadcast_to(X, (2,) + X.shape)


@kind.density_and_entropy_of.register
def _(system: SpinSystem, H, X=None) -> tuple[Array, Array]:
    base = system.base
    X = kind.orthogonalizer(system) if X is None else X
    if system.spin is None:
        D, entropy = density_and_entropy(H, system.overlap, base.n_electrons, base.sigma, base.smearing_kind,
                                         kweights=jnp.full((2,), 0.5, base.sigma.dtype), ao_mask=base.ao_mask,
                                         s_inv_sqrt=X)
        return 0.5 * D, entropy

    def one_spin(h, x, n):
        D, entropy = density_and_entropy(h, base.overlap, 2.0 * n, base.sigma, base.smearing_kind,
                                         ao_mask=base.ao_mask, s_inv_sqrt=x)
        return 0.5 * D, 0.5 * entropy

    D, entropy = jax.vmap(one_spin)(H, X, system.spin_electrons)
    return D, jnp.sum(entropy)


@kind.effective_hamiltonian.register
def _(system: SpinSystem, H) -> Array:
    return kind.effective_hamiltonian(system.base, H)


@kind.kept_part.register
def _(system: SpinSystem, A) -> Array:
    return kind.kept_part(system.base, A)


@kind.metric.register
def _(system: SpinSystem) -> Array:
    return kind.metric(system.base)

"""The public functions of ai2dft, one per operation for every kind of system.

``energy`` and ``fock`` are the kinds' own functions (``ai2dft.kind``, dispatched on the system's
Python type, so they work unchanged under ``jax.jit``, ``jax.grad`` and ``jax.vmap``); ``density_matrix``,
``free_energy``, ``scf`` and ``minimize_free_energy`` are written once on top of them. Importing this
module registers the five kinds: ``ai2dft.molecule`` (``System``), ``ai2dft.crystal_energy``
(``CrystalSystem``), ``ai2dft.spin_molecule`` (``SpinSystem``), ``ai2dft.spin_crystal_energy``
(``SpinCrystalSystem``) and ``ai2dft.spinor_molecule`` (``SpinorSystem``, spin-orbit coupling). Shapes: H and
D are [nao, nao] real for a molecule, [nk, nao, nao] complex for a crystal (H(k), D(k) not k-weighted), [2, nao, nao] real (alpha, beta; D per spin) for a spin-polarized
molecule, [2, nk, nao, nao] complex for a spin-polarized crystal and [2 nao, 2 nao] complex (spin outer) for
a spinor molecule; energies in Hartree (per cell).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import crystal_energy, molecule, spin_crystal_energy, spin_molecule, spinor_molecule  # noqa: F401  (register the kinds)
from ai2dft.density import validate_hamiltonian
from ai2dft.kind import check_kind, density_and_entropy_of, energy, fock
from ai2dft.scf import roothaan_diis, scf
from ai2dft.variational import minimize_free_energy

__all__ = ["density_matrix", "energy", "fock", "free_energy", "scf", "roothaan_diis", "minimize_free_energy"]


def _validate(name: str, system, H) -> None:
    """TypeError for a ``system`` that is no kind of system; ValueError for an H of the wrong shape, complex for
    a real overlap (molecule), or (when concrete) non-Hermitian or non-finite (``density.validate_hamiltonian``)."""
    check_kind(name, system)
    validate_hamiltonian(H, system.overlap.shape, real=not jnp.iscomplexobj(system.overlap))


def density_matrix(system, H) -> jax.Array:
    """D(H), same shape as H: the spin-summed density matrix (per spin for a SpinSystem) with the system's
    smearing (crystals: in
    the basis PySCF keeps after removing near linear dependencies). Raises ValueError for an H of the
    wrong shape, complex for a molecule, or non-Hermitian or non-finite (when H is concrete)."""
    _validate("density_matrix", system, H)
    return _density_matrix_jit(system, H)


@jax.jit
def _density_matrix_jit(system, H) -> jax.Array:
    return density_and_entropy_of(system, H)[0]


def free_energy(system, H) -> jax.Array:
    """[] Mermin free energy Omega(H) = E_KS[D(H)] - sigma * entropy (Hartree; per cell), differentiable
    in H and stationary at self-consistency (H = F[D(H)] up to c*S). For complex H(k), jax.grad returns
    conj(dOmega/dH). Raises ValueError for an H of the wrong shape or a complex H of a molecule, and,
    when H is concrete (not a tracer inside jit, grad or vmap, so the compiled path pays nothing),
    non-Hermitian or non-finite."""
    _validate("free_energy", system, H)
    D, entropy = density_and_entropy_of(system, H)
    return energy(system, D) - system.sigma * entropy

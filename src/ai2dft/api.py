"""The public functions of ai2dft, one per operation for molecules and crystals alike.

Each is a ``functools.singledispatch`` function of the system's type: a ``System`` goes to the
molecular implementation (``ai2dft.density``, ``ai2dft.energy``, ``ai2dft.scf``,
``ai2dft.variational``), a ``CrystalSystem`` to the periodic one (``ai2dft.crystal_energy``,
``ai2dft.crystal_scf``); the table below is the only place where the two meet. Dispatch reads the
Python type of the first argument, so it works unchanged under ``jax.jit``, ``jax.grad`` and
``jax.vmap`` (a traced System is still a System). Shapes: H and D are [nao, nao] real for a molecule
and [nk, nao, nao] complex for a crystal (H(k), D(k) not k-weighted); energies in Hartree (per cell).
"""
from __future__ import annotations

import functools
from typing import Any, NoReturn

from ai2dft import crystal_energy, crystal_scf, density, variational
from ai2dft.crystal import CrystalSystem
from ai2dft.energy import energy as _molecular_energy
from ai2dft.energy import fock as _molecular_fock
from ai2dft.energy import free_energy as _molecular_free_energy
from ai2dft.scf import scf as _molecular_scf
from ai2dft.system import System


def _not_a_system(name: str, system: Any) -> NoReturn:
    raise TypeError(f"ai2dft.{name} needs an ai2dft.System or ai2dft.CrystalSystem as its first argument, "
                    f"got {type(system).__name__}")


@functools.singledispatch
def density_matrix(system, H):
    """D(H), same shape as H: the spin-summed density matrix with the system's smearing (crystals: in
    the basis PySCF keeps after removing near linear dependencies). Raises ValueError for an H of the
    wrong shape, complex for a molecule, or non-Hermitian or non-finite (when H is concrete)."""
    _not_a_system("density_matrix", system)


@functools.singledispatch
def energy(system, D):
    """[] Kohn-Sham total energy E_KS[D] (Hartree; per cell for crystals). jax.grad in D gives the
    Fock matrix (molecules) or w_k conj(F(k)) (crystals)."""
    _not_a_system("energy", system)


@functools.singledispatch
def fock(system, D):
    """Kohn-Sham matrix F[D] = dE_KS/dD (Hartree), same shape as D."""
    _not_a_system("fock", system)


@functools.singledispatch
def free_energy(system, H):
    """[] Mermin free energy Omega(H) = E_KS[D(H)] - sigma * entropy (Hartree; per cell), differentiable
    in H and stationary at self-consistency. For complex H(k), jax.grad returns conj(dOmega/dH).
    Raises ValueError for an H of the wrong shape or a complex H of a molecule, and, when H is concrete
    (not a tracer inside jit, grad or vmap, so the compiled path pays nothing), non-Hermitian or
    non-finite."""
    _not_a_system("free_energy", system)


@functools.singledispatch
def scf(system, max_iter: int = 100, tol: float = 1e-8, H0=None, diis_space: int = 8, on_failure: str = "warn"):
    """Jitted DIIS self-consistent field from H0 (default: the core Hamiltonian); returns an
    ``ai2dft.ScfResult`` (H, D, energy, free_energy, converged, n_iter, error). on_failure: "warn",
    "raise" (``ai2dft.ScfNotConverged``) or "ignore" when the commutator error stays above tol."""
    _not_a_system("scf", system)


@functools.singledispatch
def minimize_free_energy(system, H0=None, max_iter: int = 100, gtol: float = 1e-8, memory: int = 10):
    """Minimize Omega(H) over Hermitian H from H0 (default: the core Hamiltonian) by L-BFGS
    preconditioned with the Roothaan residual; returns a ``VariationalResult`` (converged when
    max |dOmega/dH| < gtol)."""
    _not_a_system("minimize_free_energy", system)


for _public, _molecular, _crystal in (
    (density_matrix, density.density_matrix, crystal_energy.density_matrix),
    (energy, _molecular_energy, crystal_energy.energy),
    (fock, _molecular_fock, crystal_energy.fock),
    (free_energy, _molecular_free_energy, crystal_energy.free_energy),
    (scf, _molecular_scf, crystal_scf.scf),
    (minimize_free_energy, variational.minimize_free_energy, crystal_scf.minimize_free_energy),
):
    _public.register(System, _molecular)
    _public.register(CrystalSystem, _crystal)

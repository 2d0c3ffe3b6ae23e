"""ai2dft: a JAX-differentiable Kohn-Sham DFT free energy in an atomic-orbital basis.

One entry point for molecules and crystals: ``System.from_pyscf`` / ``System.from_ase`` return a
``System`` for a molecule and a ``CrystalSystem`` for a periodic cell, and ``density_matrix``,
``energy``, ``fock``, ``free_energy``, ``scf`` and ``minimize_free_energy`` take either
(``ai2dft.api`` writes each once; what differs between the kinds is the small interface of ``ai2dft.kind``,
registered by ``ai2dft.molecule``, ``ai2dft.crystal_energy``, ``ai2dft.spin_molecule`` and
``ai2dft.spin_crystal_energy``). A collinear spin-polarized molecule (UKS) is a ``SpinSystem``
(``SpinSystem.from_pyscf``; H and D [2, nao, nao]), a spin-polarized crystal (KUKS) a ``SpinCrystalSystem``
(``SpinCrystalSystem.from_pyscf``; H(k) and D(k) [2, nk, nao, nao]), a molecule with spin-orbit coupling
(X2C1e generalised Kohn-Sham) a ``SpinorSystem`` (``SpinorSystem.from_pyscf``; H and D [2 nao, 2 nao] complex).

The Kohn-Sham layer needs float64, which JAX enables process-wide: call ``ai2dft.enable_float64()``
before building a System (importing ai2dft changes no JAX setting; see ``ai2dft.precision``).
"""
from ai2dft.api import density_matrix, energy, fock, free_energy, minimize_free_energy, scf
from ai2dft.crystal import CrystalSystem
from ai2dft.density import density_and_entropy
from ai2dft.precision import enable_float64
from ai2dft.scf import ScfNotConverged, ScfResult
from ai2dft.spin_crystal import SpinCrystalSystem
from ai2dft.spin_system import SpinSystem
from ai2dft.spinor_system import SpinorSystem
from ai2dft.system import System, pad_system

__all__ = [
    "System", "CrystalSystem", "SpinSystem", "SpinCrystalSystem", "SpinorSystem", "pad_system", "density_matrix", "density_and_entropy", "energy", "fock", "free_energy",
    "scf", "ScfResult", "ScfNotConverged", "minimize_free_energy", "enable_float64",
]

"""ai2dft: a JAX-differentiable Kohn-Sham DFT free energy in an atomic-orbital basis.

One entry point for molecules and crystals: ``System.from_pyscf`` / ``System.from_ase`` return a
``System`` for a molecule and a ``CrystalSystem`` for a periodic cell, and ``density_matrix``,
``energy``, ``fock``, ``free_energy``, ``scf`` and ``minimize_free_energy`` take either
(``ai2dft.api`` dispatches on the system's type to the molecular or the crystal implementation).

Importing ai2dft enables JAX's float64 mode (``jax_enable_x64``): the Kohn-Sham layer is a physics code
whose parity with PySCF (1e-8 Ha) needs double precision. Networks may still run in float32 by choosing
float32 parameters; their output Hamiltonians are cast to the System's dtype.
"""
import jax

jax.config.update("jax_enable_x64", True)

from ai2dft.api import density_matrix, energy, fock, free_energy, minimize_free_energy, scf  # noqa: E402
from ai2dft.crystal import CrystalSystem  # noqa: E402
from ai2dft.density import density_and_entropy  # noqa: E402
from ai2dft.scf import ScfNotConverged, ScfResult  # noqa: E402
from ai2dft.system import System, pad_system  # noqa: E402

__all__ = [
    "System", "CrystalSystem", "pad_system", "density_matrix", "density_and_entropy", "energy", "fock", "free_energy",
    "scf", "ScfResult", "ScfNotConverged", "minimize_free_energy",
]

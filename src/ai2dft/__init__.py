"""ai2dft: a JAX-differentiable Kohn-Sham DFT free energy in an atomic-orbital basis.

Molecules: ``System`` with ``energy``, ``fock``, ``free_energy``, ``scf``, ``minimize_free_energy``.
Crystals: ``CrystalSystem`` with the functions of ``ai2dft.crystal_energy`` and ``ai2dft.crystal_scf``.

Importing ai2dft enables JAX's float64 mode (``jax_enable_x64``): the Kohn-Sham layer is a physics code
whose parity with PySCF (1e-8 Ha) needs double precision. Networks may still run in float32 by choosing
float32 parameters; their output Hamiltonians are cast to the System's dtype.
"""
import jax

jax.config.update("jax_enable_x64", True)

from ai2dft.crystal import CrystalSystem  # noqa: E402
from ai2dft.density import density_and_entropy, density_matrix  # noqa: E402
from ai2dft.energy import energy, fock, free_energy  # noqa: E402
from ai2dft.scf import ScfNotConverged, ScfResult, scf  # noqa: E402
from ai2dft.system import System, pad_system  # noqa: E402
from ai2dft.variational import minimize_free_energy  # noqa: E402

__all__ = [
    "System", "CrystalSystem", "pad_system", "density_matrix", "density_and_entropy", "energy", "fock", "free_energy",
    "scf", "ScfResult", "ScfNotConverged", "minimize_free_energy",
]

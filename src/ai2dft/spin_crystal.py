"""``SpinCrystalSystem``: a collinear spin-polarized crystal for the Kohn-Sham layer (KUKS).

H, D and F are [2, nk, nao, nao] complex Hermitian: (alpha, beta) x k-points. D[s, k] is the density matrix of
spin s at k (not k-weighted; sum_k w_k tr(D[s, k] S(k)) = N_s per cell), F[s] = dE_KS/dD[s]. The integrals are a
closed-shell ``CrystalSystem``'s (``base``: S(k), hcore(k), Bloch AOs on the FFT mesh, Coulomb kernel, Ewald
energy); the spin is fixed (``spin`` = N_alpha - N_beta per cell, one chemical potential per spin) or free
(``spin`` None: one chemical potential for both spins, the moment follows H). PySCF's ``KUKS`` counts electrons
per Born-von Karman supercell (``cell.spin`` = N_alpha - N_beta of all nk cells together); here the moment is
per cell. ``overlap`` and ``hcore`` are H-shaped views [2, nk, nao, nao] of the base's, as the solvers expect.
The kind's functions are in ``ai2dft.spin_crystal_energy``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ai2dft.crystal import CrystalSystem
from ai2dft.spin_system import SpinPolarized

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpinCrystalSystem(SpinPolarized):
    """One spin-polarized crystal (nk k-points, nao AOs per cell).

    Attributes:
        base: the crystal's ``CrystalSystem`` (valence electrons per cell, smearing, xc); its spin-summed
              closed-shell view does not apply.
        spin: [] N_alpha - N_beta per cell (2S of one cell, electrons; need not be an integer) held fixed, or None
              for free magnetisation.
    """

    base: CrystalSystem
    spin: Array | None

    def __repr__(self) -> str:
        moment = "free" if self.spin is None else f"fixed {float(self.spin):g} per cell"
        return f"SpinCrystalSystem(spin={moment}, base={self.base!r})"

    @classmethod
    def from_pyscf(cls, mf: Any, magnetisation: str | None = None, chunk_size: int = 2048) -> "SpinCrystalSystem":
        """From a PySCF ``pbc.dft.KUKS`` (FFTDF, plain k-point array; xc, k-points, mesh and smearing taken from
        it, as ``CrystalSystem.from_pyscf`` from a KRKS). magnetisation: "fixed" (N_alpha - N_beta per cell from
        ``mf.nelec`` / nk) or "free"; default "free" for a KUKS smeared without ``fix_spin``, else "fixed"."""
        from ai2dft.pyscf_bridge.spin_cell import spin_crystal_arrays

        arrays, spin = spin_crystal_arrays(mf, magnetisation, chunk_size)
        return cls(CrystalSystem.from_arrays(**arrays), None if spin is None else jnp.asarray(spin))

"""``SpinSystem``: a collinear spin-polarized molecule for the Kohn-Sham layer (unrestricted Kohn-Sham, UKS).

H, D and F are [2, nao, nao] real symmetric: (alpha, beta). D[s] is the density matrix of spin s
(tr(D[s] S) = N_s; D[0] + D[1] is the total density matrix), F[s] = dE_KS/dD[s]. The integrals are a
closed-shell ``System``'s (``base``); the spin is either fixed (``spin`` = 2S = N_alpha - N_beta, one chemical
potential per spin) or free (``spin`` None: one chemical potential for both spins, the moment follows H).
``overlap`` and ``hcore`` are H-shaped views [2, nao, nao] of the base's, as the solvers expect of every kind.
The kind's functions are in ``ai2dft.spin_molecule``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ai2dft.system import System, pad_system

Array = jax.Array


class SpinPolarized:
    """What every collinear spin-polarized kind derives from its closed-shell ``base`` (a ``System`` or
    ``CrystalSystem``) and its ``spin`` (N_alpha - N_beta, per cell for crystals, or None: free magnetisation):
    H-shaped [2, *base H shape] views of the base's S and hcore, the smearing width, the electron counts."""

    @property
    def overlap(self) -> Array:
        """[2, *base] S (S(k) for crystals) for each spin."""
        return jnp.broadcast_to(self.base.overlap, (2,) + self.base.overlap.shape)

    @property
    def hcore(self) -> Array:
        """[2, *base] core Hamiltonian for each spin (Hartree): the solvers' default starting H."""
        return jnp.broadcast_to(self.base.hcore, (2,) + self.base.hcore.shape)

    @property
    def sigma(self) -> Array:
        """[] smearing width (Hartree)."""
        return self.base.sigma

    @property
    def n_electrons(self) -> Array:
        """[] total electron count N_alpha + N_beta (per cell for crystals)."""
        return self.base.n_electrons

    @property
    def spin_electrons(self) -> Array:
        """[2] (N_alpha, N_beta) of a fixed magnetisation (per cell for crystals)."""
        if self.spin is None:
            raise ValueError("a free magnetisation has no fixed electron count per spin")
        return 0.5 * (self.base.n_electrons + jnp.stack([self.spin, -self.spin]))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpinSystem(SpinPolarized):
    """One spin-polarized molecule.

    Attributes:
        base: the molecule's ``System`` (S, hcore, AO values on the grid, density fitting, total electron
              count, E_nuc, smearing, xc); its own closed-shell checks do not apply.
        spin: [] N_alpha - N_beta (2S, electrons) held fixed, or None for free magnetisation.
    """

    base: System
    spin: Array | None

    def __repr__(self) -> str:
        moment = "free" if self.spin is None else f"fixed {float(self.spin):g}"
        return f"SpinSystem(spin={moment}, base={self.base!r})"

    @classmethod
    def from_pyscf(
        cls,
        obj: Any,
        xc: str | None = None,
        smearing: tuple[str, float] | None = None,
        grid_level: int | None = None,
        auxbasis: str | None = None,
        *,
        magnetisation: str | None = None,
    ) -> "SpinSystem":
        """The spin-polarized system of a PySCF ``dft.UKS`` object or ``Mole`` (2S = ``mol.spin``).

        xc, smearing ``(kind, sigma_hartree)``, grid_level and auxbasis as in ``System.from_pyscf`` (taken from the
        UKS object unless given). magnetisation: "fixed" (N_alpha, N_beta from ``mol.spin``) or "free" (one
        chemical potential); default: "free" for a UKS smeared without ``fix_spin`` (PySCF's default), else "fixed".
        """
        from ai2dft.pyscf_bridge.spin_molecule import spin_molecule_arrays

        arrays, spin = spin_molecule_arrays(obj, xc, smearing, grid_level, auxbasis, magnetisation)
        return cls(System.from_arrays(**arrays), None if spin is None else jnp.asarray(spin))


def pad_spin_system(system: SpinSystem, nao_pad: int, ngrid_pad: int, naux_pad: int) -> SpinSystem:
    """``system`` with its base padded as ``ai2dft.pad_system`` pads a System (padded AOs never occupied, in
    either spin); the spin is unchanged."""
    return dataclasses.replace(system, base=pad_system(system.base, nao_pad, ngrid_pad, naux_pad))

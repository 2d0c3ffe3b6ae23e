"""``SpinorSystem``: a molecule in the two-component (spinor) basis with spin-orbit coupling, generalised
Kohn-Sham (GKS) with PySCF's X2C1e one-electron Hamiltonian.

H, D and F are [2 nao, 2 nao] complex Hermitian, spin OUTER (rows and columns 0..nao-1 spin up, nao..2 nao-1
spin down, each in the base's AO order), the layout of PySCF's GHF/GKS and of the spinful DeepH formats; D has
occupations in [0, 1] per spinor. The overlap is [[S, 0], [0, S]]. What is not spinless is the core
Hamiltonian ``hcore_so`` (X2C1e with its spin-orbit terms, ``pyscf_bridge.soc``); the two-electron terms are
the base's non-relativistic Coulomb (density fitted) and semi-local XC of (n, m) under ``collinear``:

    "col"   XC of (n, m_z): the UKS functional of rho_up = rho[D_uu], rho_down = rho[D_dd] (any LDA or GGA)
    "ncol"  Kubler's locally collinear XC of (n, |m|): the spin-polarised LDA at rho_+- = (n +- |m|) / 2,
            |m|^2 = (rho_uu - rho_dd)^2 + 4 |rho_ud|^2 (LDAs only, as in PySCF 2.14)

both as PySCF's ``NumInt2C`` evaluates them (``ai2dft.spinor_molecule`` has the energy and the kind).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ai2dft.system import System, pad_system
from ai2dft.units import PAD_LEVEL_HARTREE

Array = jax.Array
COLLINEAR = ("col", "ncol")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpinorSystem:
    """One molecule with spin-orbit coupling (generalised Kohn-Sham).

    Attributes:
        base:      the molecule's spinless ``System`` (S, AO values on the grid, density fitting, electron
                   count, E_nuc, smearing, xc); its hcore is not used.
        hcore_so:  [2 nao, 2 nao] complex Hermitian core Hamiltonian with spin-orbit terms (Hartree).
        collinear: non-collinear XC treatment, "col" or "ncol" (static; see the module).
    """

    base: System
    hcore_so: Array
    collinear: str = dataclasses.field(metadata=dict(static=True))

    def __post_init__(self):
        if self.collinear not in COLLINEAR:
            raise ValueError(f"collinear must be one of {COLLINEAR} (PySCF's 'mcol' needs mcfun), got "
                             f"{self.collinear!r}")

    def __repr__(self) -> str:
        return f"SpinorSystem(collinear={self.collinear!r}, hcore_so={tuple(self.hcore_so.shape)}, base={self.base!r})"

    @property
    def overlap(self) -> Array:
        """[2 nao, 2 nao] spinor overlap [[S, 0], [0, S]] (complex dtype, as H)."""
        return jnp.kron(jnp.eye(2, dtype=self.hcore_so.dtype), self.base.overlap)

    @property
    def hcore(self) -> Array:
        """[2 nao, 2 nao] the core Hamiltonian with spin-orbit terms: the solvers' default starting H."""
        return self.hcore_so

    @property
    def sigma(self) -> Array:
        return self.base.sigma

    @property
    def n_electrons(self) -> Array:
        return self.base.n_electrons

    @classmethod
    def from_pyscf(cls, mf: Any, smearing: tuple[str, float] | None = None,
                   auxbasis: str | None = None) -> "SpinorSystem":
        """The system of a PySCF X2C1e GKS object (``dft.GKS(mol).x2c1e()``, as ``pyscf_bridge.soc`` runs it):
        its xc, collinear scheme, grid and (if any) density fitting; ``auxbasis`` overrides the fitting basis.
        Raises ValueError for another object, a meta-GGA or hybrid functional, or "ncol" with a GGA."""
        from ai2dft.pyscf_bridge.spinor_molecule import spinor_molecule_arrays

        arrays, hcore_so, collinear = spinor_molecule_arrays(mf, smearing, auxbasis)
        return cls(System.from_arrays(**arrays), jnp.asarray(hcore_so), collinear)


def pad_spinor_system(system: SpinorSystem, nao_pad: int, ngrid_pad: int, naux_pad: int) -> SpinorSystem:
    """``system`` with its base padded as ``ai2dft.pad_system`` pads a System and each spin quadrant of
    ``hcore_so`` padded to nao_pad (padded spinors at ``PAD_LEVEL_HARTREE``, never occupied): the spin-outer layout
    [u (nao_pad), d (nao_pad)] of a padded network Hamiltonian (``elct_jax.hamiltonian.spinor.spinor_to_dense``)."""
    n = system.base.n_ao
    da = nao_pad - n
    level = PAD_LEVEL_HARTREE * jnp.diag(jnp.concatenate([jnp.zeros(n), jnp.ones(da)]))
    quadrant = [[jnp.pad(system.hcore_so[s * n:(s + 1) * n, t * n:(t + 1) * n], ((0, da), (0, da)))
                 + (level if s == t else 0.0) for t in (0, 1)] for s in (0, 1)]
    hcore_so = jnp.concatenate([jnp.concatenate(row, axis=1) for row in quadrant], axis=0)
    return dataclasses.replace(system, base=pad_system(system.base, nao_pad, ngrid_pad, naux_pad), hcore_so=hcore_so)

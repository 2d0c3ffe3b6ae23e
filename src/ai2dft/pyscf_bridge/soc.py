"""Spin-orbit Kohn-Sham labels of molecules from PySCF: X2C1e in a generalised (two-component) Kohn-Sham run.

Route (PySCF 2.14): ``dft.GKS(mol).x2c1e()`` (pyscf/x2c/x2c.py: ``x2c1e_ghf`` -> ``X2C1E_GSCF`` with a
``SpinOrbitalX2CHelper``). Its core Hamiltonian is the one-electron exact-two-component (X2C1e) Hamiltonian with
its spin-orbit terms (sigma . (p V x p) from the nuclear potential, on an uncontracted basis, projected back), in
the GHF spin-orbital basis of PySCF's real-spherical AOs: [2 n_ao, 2 n_ao], complex Hermitian, spin OUTER -- rows
and columns 0..n_ao-1 are the spin-up AOs, n_ao..2 n_ao-1 the spin-down AOs, each in PySCF's AO order (p as
px, py, pz). That is the layout of the DeepH formats (``elct_jax.data.spinful``). The overlap is spin-diagonal,
[[S, 0], [0, S]]; the spinless S [n_ao, n_ao] is returned. ``scf.X2C(mol)`` / ``x2c.UKS`` / ``x2c.RKS`` work
in the j-adapted spinor basis (``int1e_ovlp_spinor``), not a real-spherical x spin product basis: not taken.

Level of theory (recorded in :attr:`SOCLabels.theory`): two-electron terms are non-relativistic (Coulomb and XC;
no two-electron spin-orbit or Breit term, so spin-orbit splittings come out some 5-15 % too large for 4p/5p
elements); the XC of the non-collinear magnetisation m(r) follows PySCF's ``collinear`` setting: "ncol"
(Kubler's locally collinear XC of (n, |m|); LDA only in PySCF 2.14), "col" (XC of (n, m_z): not
invariant under global spin rotations) or "mcol" (multi-collinear; needs the ``mcfun`` package, absent here).
For a closed-shell molecule m = 0 at the solution and H is time-reversal symmetric: H_dd = conj(H_uu),
H_du = -conj(H_ud).

Crystals: PySCF 2.14 has spin-orbit X2C for cells too (pyscf/pbc/x2c/x2c1e.py, ``KGKS(cell).x2c1e()``), but
all-electron only (GTH pseudopotentials raise NotImplementedError), with density fitting on an uncontracted
basis: costly for the heavy elements where spin-orbit coupling matters. Not wired here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from pyscf import dft, gto

from ai2dft.pyscf_bridge.labels import _atoms

COLLINEAR_SCHEMES = {
    "ncol": "locally collinear (Kubler): XC of (n, |m|)",
    "col": "collinear along z: XC of (n, m_z)",
    "mcol": "multi-collinear (Pu et al. 2023, mcfun)",
}


@dataclass(frozen=True)
class SOCSettings:
    """Level of theory of spin-orbit labels.

    basis, xc       PySCF basis name (all-electron: X2C takes no pseudopotential) and functional
    collinear       non-collinear XC treatment, a key of :data:`COLLINEAR_SCHEMES` ("ncol" takes LDA only)
    grid_level      molecular integration grid
    conv_tol        SCF energy convergence (Hartree); conv_tol_grad its orbital-gradient convergence
    charge          molecular charge; the electron count may be odd (GKS has no spin constraint)
    """

    basis: str = "cc-pvdz"
    xc: str = "lda,vwn"
    collinear: str = "ncol"
    grid_level: int = 5
    conv_tol: float = 1e-12
    conv_tol_grad: float = 1e-9
    max_cycle: int = 100
    charge: int = 0
    density_fit: bool = True

    def __post_init__(self):
        if self.collinear not in COLLINEAR_SCHEMES:
            raise ValueError(f"collinear must be one of {sorted(COLLINEAR_SCHEMES)}, got {self.collinear!r}")


@dataclass(frozen=True)
class SOCLabels:
    """Converged X2C1e-GKS matrices of a molecule, PySCF AO order, Hartree.

    H          [2 n_ao, 2 n_ao] complex Hermitian Kohn-Sham matrix rebuilt from the final density, spin outer
    S          [n_ao, n_ao] real overlap (the spin-orbital overlap is [[S, 0], [0, S]])
    D          [2 n_ao, 2 n_ao] complex density matrix H was built from, D = C_occ C_occ^H
    mo_energy  [2 n_ao] PySCF's orbital energies of the run
    fermi_energy  midway between the highest occupied and lowest empty level of (H, S x 1_2)
    theory     JSON-serializable level of theory: spin treatment, relativistic Hamiltonian, XC and its
               non-collinear treatment, basis, grid, charge, electron count
    """

    H: np.ndarray
    S: np.ndarray
    D: np.ndarray
    mo_energy: np.ndarray
    e_tot: float
    converged: bool
    n_electrons: int
    fermi_energy: float
    theory: dict


def soc_molecule_labels(structure, settings: SOCSettings) -> SOCLabels:
    """Run X2C1e-GKS with spin-orbit coupling on ``structure`` (``symbols``, ``positions_ang``, non-periodic);
    a non-converged SCF is returned with converged=False."""
    mol = build_molecule_any_spin(structure, settings.basis, settings.charge)
    mf = dft.GKS(mol).x2c1e()
    if settings.density_fit:
        mf = mf.density_fit()
    mf.xc, mf.collinear = settings.xc, settings.collinear
    mf.grids.level = settings.grid_level
    mf.conv_tol, mf.conv_tol_grad, mf.max_cycle = settings.conv_tol, settings.conv_tol_grad, settings.max_cycle
    mf.kernel()
    D = np.asarray(mf.make_rdm1())
    H = np.asarray(mf.get_fock(dm=D))
    S = np.asarray(mol.intor_symmetric("int1e_ovlp"))
    n = mol.nelectron
    eps = scipy.linalg.eigh(H, scipy.linalg.block_diag(S, S), eigvals_only=True)
    return SOCLabels(H, S, D, np.asarray(mf.mo_energy), float(mf.e_tot), bool(mf.converged), n,
                     float(0.5 * (eps[n - 1] + eps[n])), _theory(settings, n))


def _theory(settings: SOCSettings, n_electrons: int) -> dict:
    return {
        "spin": "noncollinear",  # two-component generalised Kohn-Sham: one spinor per orbital
        "hamiltonian": "x2c1e spin-orbit (one-electron, nuclear potential; no two-electron spin-orbit)",
        "xc": settings.xc,
        "noncollinear_xc": settings.collinear,
        "noncollinear_xc_note": COLLINEAR_SCHEMES[settings.collinear],
        "basis": settings.basis,
        "grid_level": settings.grid_level,
        "density_fit": settings.density_fit,
        "charge": settings.charge,
        "n_electrons": n_electrons,
    }


def build_molecule_any_spin(structure, basis: str, charge: int) -> gto.Mole:
    """A PySCF molecule (Angstrom) of any electron count; periodic structures are refused."""
    if getattr(structure, "lattice_ang", None) is not None and any(structure.pbc):
        raise ValueError("spin-orbit labels are for molecules; PySCF's periodic X2C is all-electron only (see module)")
    return gto.M(atom=_atoms(structure), basis=basis, charge=charge, unit="Angstrom", verbose=0)

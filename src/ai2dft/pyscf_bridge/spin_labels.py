"""Collinear spin-polarized training labels from PySCF: UKS of molecules, KUKS of crystals.

The level of theory is ``labels.DFTSettings`` with ``spin`` = 2S = N_alpha - N_beta set (held fixed, with or
without smearing; per cell for crystals, where the moment may also be left free); everything else (basis, functional,
grid, density fitting, smearing, k-meshes, real-space blocks) as for the RKS labels. Matrices are in PySCF's AO order
and Hartree, with a leading spin axis (alpha, beta); crystal blocks as a pair (alpha, beta) of block dicts.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from pyscf.pbc import dft as pbc_dft
from pyscf.pbc.scf.smearing import smearing_ as pbc_smearing_

import ai2dft.smearing
from ai2dft.pyscf_bridge.labels import DFTSettings, _density_on_mesh, build_cell, kohn_sham, zeroth_step_fock
from ai2dft.pyscf_bridge.realspace import Block, blocks_from_kmesh, real_space_mesh
from ai2dft.pyscf_bridge.spin_molecule import MAGNETISATIONS
from ai2dft.xc import exact_exchange_fraction


@dataclass(frozen=True)
class SpinMoleculeLabels:
    """Converged UKS matrices of a molecule, PySCF AO order, Hartree.

    H [2, n_ao, n_ao] Fock matrices (alpha, beta) rebuilt from the final density; H0 the same of PySCF's MINAO
    initial density (the zeroth-step Hamiltonian); S [n_ao, n_ao] overlap; D [2, n_ao, n_ao] density matrix of each
    spin (tr D_s S = N_s), the one H was built from; n_electrons (N_alpha, N_beta); fermi_energy per spin: the
    chemical potential of each spin's levels of (H_s, S) (midway HOMO-LUMO without smearing).
    """

    H: np.ndarray
    H0: np.ndarray
    S: np.ndarray
    D: np.ndarray
    e_tot: float
    converged: bool
    n_electrons: tuple[int, int]
    fermi_energy: tuple[float, float]


def spin_molecule_labels(structure, settings: DFTSettings) -> SpinMoleculeLabels:
    """Run UKS at ``settings`` (``settings.spin`` required) and return F[D_final], S, D_final, H0. A non-converged SCF
    is returned with converged=False."""
    if settings.spin is None:
        raise ValueError("spin_molecule_labels needs DFTSettings.spin = 2S = N_alpha - N_beta (0 for a UKS singlet)")
    mf = kohn_sham(structure, settings)
    mf.kernel()
    dm = np.asarray(mf.make_rdm1())
    fock = np.asarray(mf.get_fock(dm=dm))
    S = np.asarray(mf.get_ovlp())
    n_spin = tuple(int(n) for n in mf.mol.nelec)
    fermi = tuple(_chemical_potential(scipy.linalg.eigh(fock[s], S, eigvals_only=True), n_spin[s], settings.smearing)
                  for s in (0, 1))
    return SpinMoleculeLabels(fock, np.asarray(zeroth_step_fock(structure, settings, mf)), S, dm, float(mf.e_tot),
                              bool(mf.converged), n_spin, fermi)


def _chemical_potential(eps: np.ndarray, n_electrons: int, smearing) -> float:
    """Chemical potential of n_electrons in levels eps [n_mo] holding one electron each (``ai2dft.smearing``)."""
    kind, width = ("fermi", 0.0) if smearing is None else smearing
    with jax.enable_x64(True):  # numpy in, numpy out: float64 whatever the process-wide JAX setting
        return float(ai2dft.smearing.occupations(jnp.asarray(eps), jnp.ones(eps.shape), n_electrons, width, kind)[1])


@dataclass(frozen=True)
class SpinCrystalLabels:
    """Converged KUKS real-space blocks of a crystal, PySCF AO order within each atom, Hartree.

    H, D: (alpha, beta) blocks on the keys with max |S_ij(R)| > overlap_tol (``realspace.real_space_mesh``): H the
    Fock matrices of the converged SCF density, D the density matrix of each spin that these H give on
    ``realspace_kmesh`` (tr over the cell = N_s; as D of ``labels.CrystalLabels``); S spinless. magnetisation
    "fixed" (N_alpha - N_beta = ``DFTSettings.spin`` per cell, one chemical potential per spin) or "free" (one
    for both); n_electrons per cell, n_electrons_per_spin and fermi_energy (per spin; equal when free) of D.
    """

    H: tuple[Block, Block]
    S: Block
    D: tuple[Block, Block]
    e_tot: float
    converged: bool
    magnetisation: str
    n_electrons: int
    n_electrons_per_spin: tuple[float, float]
    fermi_energy: tuple[float, float]
    kmesh: tuple[int, int, int]
    realspace_kmesh: tuple[int, int, int]
    max_overlap_deviation: float


def spin_crystal_labels(structure, settings: DFTSettings, magnetisation: str = "fixed") -> SpinCrystalLabels:
    """Run KUKS on ``settings.kmesh`` (GTH, multigrid, as ``labels.crystal_labels``) with 2S = ``settings.spin`` per
    cell held fixed, or with ``magnetisation`` "free" (smearing required) starting from that moment; return unaliased
    real-space blocks per spin (see SpinCrystalLabels)."""
    if settings.spin is None:
        raise ValueError("spin_crystal_labels needs DFTSettings.spin = 2S = N_alpha - N_beta per cell (the fixed "
                         "moment, or the starting moment of a free magnetisation)")
    if magnetisation not in MAGNETISATIONS or (magnetisation == "free" and settings.smearing is None):
        raise ValueError(f"magnetisation must be one of {MAGNETISATIONS} ('free' needs smearing), got "
                         f"{magnetisation!r} with smearing {settings.smearing}")
    if exact_exchange_fraction(settings.xc):
        raise ValueError(f"xc={settings.xc!r} is a hybrid functional: periodic exact exchange is not implemented")
    cell = build_cell(structure, settings)
    rs = real_space_mesh(cell, structure.pbc, settings)  # before the SCF: fail fast on aliasing
    mf = _run_kuks(cell, settings, magnetisation)
    fock = np.asarray(mf.get_hcore(cell, rs.kpts))[None] + np.asarray(
        mf.get_veff(cell, mf.make_rdm1(), kpts=mf.kpts, kpts_band=rs.kpts))  # [2, nk, n_ao, n_ao]
    D, mu = _spin_density_on_mesh(fock, rs.S_k, cell.nelectron, settings, magnetisation)
    counts = np.einsum("skij,kji->s", D, rs.S_k).real / len(rs.kpts)
    H, D = ([blocks_from_kmesh(cell, m[s], rs.mesh, rs.keys, settings.alias_tol) for s in (0, 1)] for m in (fock, D))
    return SpinCrystalLabels(tuple(H), rs.S, tuple(D), float(mf.e_tot), bool(mf.converged), magnetisation,
                             int(cell.nelectron), tuple(float(n) for n in counts), mu, settings.kmesh, rs.mesh,
                             rs.max_overlap_deviation)


def _run_kuks(cell, settings: DFTSettings, magnetisation: str):
    """Converged KUKS; PySCF's nelec counts the Born-von Karman supercell of the k-mesh (nk cells)."""
    kpts = cell.make_kpts(settings.kmesh)
    mf = pbc_dft.KUKS(cell, kpts, xc=settings.xc).multigrid_numint()
    mf.nelec = tuple(len(kpts) * (cell.nelectron + sign * settings.spin) // 2 for sign in (1, -1))
    if settings.smearing is not None:
        mf = pbc_smearing_(mf, sigma=settings.smearing[1], method=settings.smearing[0],
                           fix_spin=magnetisation == "fixed")
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycle
    mf.kernel()
    return mf


def _spin_density_on_mesh(fock: np.ndarray, S_k: np.ndarray, n_electrons: int, settings: DFTSettings,
                          magnetisation: str) -> tuple[np.ndarray, tuple[float, float]]:
    """D(k) of each spin [2, nk, n_ao, n_ao] (levels hold one electron) of F_s(k) [2, nk, n_ao, n_ao] and the
    chemical potential of each spin: fixed, N_s = (N +- 2S) / 2 per spin; free, both spins as 2 nk k-points of half
    weight sharing one mu (``labels._density_on_mesh`` with the spin-summed occupations halved)."""
    if magnetisation == "free":
        D, mu = _density_on_mesh(fock.reshape((-1,) + fock.shape[2:]), np.concatenate([S_k, S_k]), n_electrons,
                                 settings.smearing)
        return 0.5 * D.reshape(fock.shape), (mu, mu)
    parts = [_density_on_mesh(fock[s], S_k, n_electrons + sign * settings.spin, settings.smearing)
             for s, sign in ((0, 1), (1, -1))]
    return 0.5 * np.stack([p[0] for p in parts]), (parts[0][1], parts[1][1])

"""Collinear spin-polarized (UKS) training labels of molecules from PySCF.

The level of theory is ``labels.DFTSettings`` with ``spin`` = 2S = N_alpha - N_beta set (held fixed, with or
without smearing); everything else (basis, functional, grid, density fitting, smearing) as for the RKS labels.
Matrices are in PySCF's AO order and Hartree, with a leading spin axis (alpha, beta).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

import ai2dft.smearing
from ai2dft.pyscf_bridge.labels import DFTSettings, kohn_sham, zeroth_step_fock


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

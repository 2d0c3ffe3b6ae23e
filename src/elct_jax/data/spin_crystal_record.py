"""KUKS labels of a crystal as a collinear spinful DeepH record (``ai2dft.pyscf_bridge.spin_labels``).

H and D become spin-outer blocks [[up, 0], [0, down]] (up = alpha; real, deepx-dock's collinear convention,
``elct_jax.data.spinful.collinear_blocks``), S stays spinless; internal orbital order, Hartree. The level of
theory records the spin treatment and magnetisation, 2S per cell, the initial moments ``magmom`` (2S spread
evenly over the atoms: the collinear model's input), the electrons and chemical potential of each spin, and
the crystal settings of the RKS labels (pseudopotential, k-meshes, cutoff, overlap tolerance and aliasing).
"""
from __future__ import annotations

import numpy as np

from ai2dft.pyscf_bridge.labels import DFTSettings
from ai2dft.pyscf_bridge.spin_labels import spin_crystal_labels
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.spinful import MAGMOM, collinear_blocks
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import reorder_blocks


def spin_crystal_record(structure: Structure, settings: DFTSettings,
                        magnetisation: str = "fixed") -> tuple[DeepHRecord, bool]:
    """PySCF KUKS labels of ``structure`` (``settings.spin`` = 2S per cell, held fixed or the start of a free
    moment) as a collinear spinful record, and the SCF's converged flag. The record's Fermi energy is the common
    chemical potential of a free magnetisation, None for a fixed one (one per spin, in ``dft``)."""
    labels = spin_crystal_labels(structure, settings, magnetisation)
    basis = OrbitalBasis.from_pyscf(settings.basis, structure.symbols)
    symbols = structure.symbols

    def internal(blocks):
        return reorder_blocks(blocks, basis, symbols, "pyscf")

    matrices = {"hamiltonian": collinear_blocks(*map(internal, labels.H)),
                "density_matrix": collinear_blocks(*map(internal, labels.D)), "overlap": internal(labels.S)}
    dft = dict(xc=settings.xc, charge=settings.charge, conv_tol=settings.conv_tol,
               smearing=None if settings.smearing is None else list(settings.smearing),
               pseudopotential=settings.pseudopotential, kmesh=list(labels.kmesh),
               realspace_kmesh=list(labels.realspace_kmesh), ke_cutoff_Ha=settings.ke_cutoff_Ha,
               overlap_tol=settings.overlap_tol, max_overlap_deviation=labels.max_overlap_deviation,
               density_matrix="D(H) on realspace_kmesh", spin=settings.spin,
               spin_treatment=f"collinear (KUKS, {magnetisation} magnetisation)", magnetisation=magnetisation,
               **{MAGMOM: np.full(len(symbols), settings.spin / len(symbols)).tolist()},
               n_electrons=labels.n_electrons, n_electrons_per_spin=list(labels.n_electrons_per_spin),
               fermi_energy_hartree_per_spin=list(labels.fermi_energy), e_tot_hartree=labels.e_tot,
               converged=labels.converged)
    fermi = labels.fermi_energy[0] if magnetisation == "free" else None
    return DeepHRecord(structure, basis, matrices, fermi, dft, spinful=True), labels.converged

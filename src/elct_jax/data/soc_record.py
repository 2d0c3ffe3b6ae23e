"""Spin-orbit labels of a molecule (X2C1e GKS, ``ai2dft.pyscf_bridge.soc``) as a spinful DeepH record.

H and D are complex spin-outer blocks [2 n_i, 2 n_j] (internal orbital order, Hartree), S spinless; the level of
theory is the labels' (``SOCLabels.theory``: spin "noncollinear", X2C1e, xc and its non-collinear scheme, basis,
grid, charge, electrons) with the energy and the converged flag, enough to rebuild the record's
``ai2dft.SpinorSystem`` (``elct_jax.data.systems``).
"""
from __future__ import annotations

from ai2dft.pyscf_bridge.soc import SOCSettings, soc_molecule_labels
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.spinful import spinful_dense_to_dict
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dense_to_dict


def soc_record(structure: Structure, settings: SOCSettings) -> tuple[DeepHRecord, bool]:
    """PySCF X2C1e GKS labels of the molecule ``structure`` as a spinful record, and the SCF's converged flag."""
    labels = soc_molecule_labels(structure, settings)
    basis = OrbitalBasis.from_pyscf(settings.basis, structure.symbols)
    symbols = structure.symbols
    matrices = {"hamiltonian": spinful_dense_to_dict(labels.H, basis, symbols),
                "density_matrix": spinful_dense_to_dict(labels.D, basis, symbols),
                "overlap": dense_to_dict(labels.S, basis, symbols)}
    dft = dict(labels.theory, e_tot_hartree=labels.e_tot, converged=labels.converged)
    return DeepHRecord(structure, basis, matrices, labels.fermi_energy, dft, spinful=True), labels.converged

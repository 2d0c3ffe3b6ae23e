"""Accuracy of predicted Hamiltonians against DFT references: block MAE and energy errors.

H is fixed by the Kohn-Sham equations only up to a constant shift c*S when it is learned from the
free energy alone (D(H + cS) = D(H)); ``aligned`` errors remove the least-squares shift first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ai2dft.density import density_matrix
from ai2dft.energy import energy
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.systems import system_from_record
from elct_jax.hamiltonian import dict_to_dense
from elct_jax.predict import predict_blocks

HARTREE_TO_MEV = 27211.386245981
HARTREE_TO_UHA = 1e6


@dataclass(frozen=True)
class Errors:
    """Per-structure errors, Hartree."""

    mae: float           # mean |H - H_ref| over all AO pairs
    mae_aligned: float   # same after removing the best constant shift c*S
    energy: float        # E_KS[D(H)] - E_KS[D(H_ref)] (positive: the variational principle)


def shift_aligned(H: np.ndarray, H_ref: np.ndarray, S: np.ndarray) -> np.ndarray:
    """H - c S with c minimising ||H - c S - H_ref||_F."""
    c = np.sum((H - H_ref) * S) / np.sum(S * S)
    return H - c * S


def structure_errors(model, record: DeepHRecord) -> Errors:
    """Errors of a trained model (``elct_jax.train.run.TrainedModel``) on one molecular record."""
    symbols = record.structure.symbols
    H = np.asarray(predict_blocks(model, record.structure, dense=True))
    H_ref = dict_to_dense(record.matrices["hamiltonian"], model.basis, symbols)
    S = dict_to_dense(record.matrices["overlap"], model.basis, symbols)
    system = system_from_record(record)
    return Errors(
        mae=float(np.mean(np.abs(H - H_ref))),
        mae_aligned=float(np.mean(np.abs(shift_aligned(H, H_ref, S) - H_ref))),
        energy=float(_energy_of_h(system, H) - _energy_of_h(system, H_ref)),
    )


def _energy_of_h(system, H):
    """E_KS[D(H)] (Hartree). Not jitted: grid sizes differ between structures, and one evaluation
    costs less than a compilation."""
    return energy(system, density_matrix(system, H))

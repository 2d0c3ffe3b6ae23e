"""A predicted molecular Hamiltonian beside a fresh PySCF calculation of the same molecule.

``compare_with_dft(model, structure)`` predicts H, runs the self-consistent DFT the model learned (its level
of theory is the one of its H0 baseline) and returns the HOMO and LUMO of both (generalised eigenproblem
H C = S C eps), the H MAE, the energy error E_KS[D(H_pred)] - E_KS[D(H_DFT)] and the wall time of each:
the check a user makes before trusting a model on a new molecule, as ``elct predict --compare``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ai2dft.units import HARTREE_TO_EV, HARTREE_TO_MEV
from elct_jax.data.baseline import dft_settings
from elct_jax.analysis.evaluate import Errors, structure_errors
from elct_jax.hamiltonian.blocks import dict_to_dense
from elct_jax.inference.predict import predict_blocks
from elct_jax.geometry.structure import Structure


@dataclass(frozen=True)
class Frontier:
    homo: float  # Hartree
    lumo: float  # Hartree

    @property
    def gap(self) -> float:
        return self.lumo - self.homo


@dataclass(frozen=True)
class DFTComparison:
    predicted: Frontier
    dft: Frontier
    errors: Errors           # H MAE and energy error (Hartree)
    predict_seconds: float   # wall, H0 build and compilation included
    dft_seconds: float       # wall, SCF and labels
    theory: str              # "xc/basis" of the reference

    def table(self, model_name: str) -> str:
        rows = [f"{'':<24}{model_name:>22}{'PySCF ' + self.theory:>26}",
                f"{'wall time (s)':<24}{self.predict_seconds:>22.2f}{self.dft_seconds:>26.2f}"]
        for label, a, b in (("HOMO (eV)", self.predicted.homo, self.dft.homo),
                            ("LUMO (eV)", self.predicted.lumo, self.dft.lumo),
                            ("gap (eV)", self.predicted.gap, self.dft.gap)):
            rows.append(f"{label:<24}{a * HARTREE_TO_EV:>22.4f}{b * HARTREE_TO_EV:>26.4f}")
        rows.append(f"H MAE {self.errors.mae * HARTREE_TO_MEV:.3f} meV; energy error E_KS[D(H_pred)] - "
                    f"E_KS[D(H_DFT)] {self.errors.energy * HARTREE_TO_MEV:.3f} meV")
        return "\n".join(rows)


def level_of_theory(model) -> dict:
    """The settings of the DFT a model learned (basis, xc, grid, ...), from its H0 baseline."""
    if model.baseline is None:
        raise ValueError(f"{model.name} records no level of theory (it was trained without the H0 baseline); "
                         "compare it with `elct data generate` labels instead (elct predict --compare-labels FOLDER)")
    return model.baseline


def _frontier_of(H: np.ndarray, S: np.ndarray, n_electrons: int) -> Frontier:
    eps = scipy.linalg.eigh(H, S, eigvals_only=True)
    n_occ = n_electrons // 2
    return Frontier(float(eps[n_occ - 1]), float(eps[n_occ]))


def compare_with_dft(model, structure: Structure) -> DFTComparison:
    """Predict H of a molecule, run PySCF at the model's level of theory, compare (see module docstring).
    A DFT that does not converge is an error, not a reference."""
    from elct_jax.data.generate import label_record

    if model.config.spin != "none":
        raise ValueError(f"{model.name} predicts spinful H (spin = {model.config.spin!r}); the PySCF comparison is "
                         "for spinless models: compare it with labels of the structure (elct predict --compare-labels FOLDER)")
    start = time.perf_counter()
    H = np.asarray(predict_blocks(model, structure, dense=True))
    predict_seconds = time.perf_counter() - start
    theory = level_of_theory(model)
    start = time.perf_counter()
    record, converged = label_record(structure, dft_settings(theory))
    dft_seconds = time.perf_counter() - start
    if not converged:
        raise RuntimeError("the reference SCF did not converge; no comparison is made")
    symbols = structure.symbols
    S = dict_to_dense(record.matrices["overlap"], model.basis, symbols)
    H_dft = dict_to_dense(record.matrices["hamiltonian"], model.basis, symbols)
    n_el = int(record.dft["n_electrons"])
    return DFTComparison(_frontier_of(H, S, n_el), _frontier_of(H_dft, S, n_el),
                         structure_errors(model, record, H), predict_seconds, dft_seconds,
                         f"{theory['xc']}/{theory['basis']}")

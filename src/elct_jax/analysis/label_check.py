"""A prediction beside the DFT labels of the same structure: ``elct predict --compare-labels FOLDER``.

``compare_with_labels(model, prediction, folder)`` reads a labelled DeepH folder (``elct data generate`` output, any
DeepH-dock or legacy folder with hamiltonian.h5) of the predicted structure and gives the errors ``elct evaluate``
gives for it (H MAE over every block entry, energy error for molecules, band MAE near E_F for crystals) and the H MAE
of each spin part (``elct_jax.data.spinful.SPIN_PARTS``): up and down for a collinear model, the four spin quadrants
for a spin-orbit one. The folder must hold the model's spin treatment and, for a collinear model, the prediction's
initial moments where it records them (``dft["magmom"]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.analysis.evaluate import RecordErrors, record_errors
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.spinful import MAGMOM, SPIN_OF_MODEL, SPIN_PARTS, check_spin, spin_parts

_PART_NAMES = {"": "H", "up": "spin up", "down": "spin down", "uu": "up-up", "ud": "up-down", "du": "down-up",
               "dd": "down-down"}


@dataclass(frozen=True)
class LabelComparison:
    """folder: the labels; treatment: their spin treatment (``spinful.spin_treatment``); errors: as elct evaluate;
    part_mae: {spin part name: H MAE over the labels' entries of that part} (Hartree)."""

    folder: str
    treatment: str
    errors: RecordErrors
    part_mae: dict[str, float]

    def table(self, model_name: str) -> str:
        def mev(value):
            return "-" if value is None else f"{value * HARTREE_TO_MEV:.4f} meV"

        rows = [f"{model_name} vs the labels in {self.folder} ({self.treatment} spin)",
                f"{'H MAE, all entries':<24}{mev(self.errors.mae):>16}{self.errors.mae * HARTREE_TO_UHA:>14.2f} uHa"
                f"  ({self.errors.n_entries} entries)"]
        if self.treatment != "none":
            rows += [f"{'H MAE, ' + _PART_NAMES[name]:<24}{mev(mae):>16}{mae * HARTREE_TO_UHA:>14.2f} uHa"
                     for name, mae in self.part_mae.items()]
        rows.append(f"{'energy error':<24}{mev(self.errors.energy):>16}   E_KS[D(H_pred)] - E_KS[D(H_DFT)]")
        rows.append(f"{'band MAE':<24}{mev(self.errors.band_mae):>16}   within 2 eV of E_F")
        return "\n".join(rows)


def part_mae(predicted: dict, reference: dict, treatment: str) -> dict[str, float]:
    """{spin part name: mean |H - H_ref|} over the entries of ``reference``'s blocks in that part (a block missing from
    ``predicted`` counts as zero); both dicts of blocks (R1, R2, R3, i, j) of spin ``treatment``."""
    pred = dict(zip(SPIN_PARTS[treatment], spin_parts(predicted, treatment)))
    out = {}
    for name, ref in zip(SPIN_PARTS[treatment], spin_parts(reference, treatment)):
        errors = [np.abs(pred[name].get(key, 0.0) - block) for key, block in ref.items()]
        out[name] = float(sum(e.sum() for e in errors) / max(sum(e.size for e in errors), 1))
    return out


def compare_with_labels(model, prediction: DeepHRecord, folder: str | Path) -> LabelComparison:
    """The errors of ``prediction`` (``elct_jax.inference.predict.prediction_record`` of ``model``) against the labels
    in ``folder``; raises naming the folder when it holds another structure, another spin treatment than the model's,
    or (collinear) other initial moments than the prediction's."""
    from elct_jax.data.dataset_dir import read_record

    labels = read_record(Path(folder), require=("hamiltonian",))
    _check_same_structure(prediction.structure, labels.structure, folder)
    check_spin([labels], [str(folder)], model.config.spin)
    if MAGMOM in labels.dft and MAGMOM in prediction.dft and not np.allclose(
            labels.dft[MAGMOM], prediction.dft[MAGMOM], atol=1e-8):
        raise ValueError(f"{folder}: its labels are of the initial moments {labels.dft[MAGMOM]}, the prediction's are "
                         f"{prediction.dft[MAGMOM]} (--spin / --magmom)")
    predicted, treatment = prediction.matrices["hamiltonian"], SPIN_OF_MODEL[model.config.spin]
    return LabelComparison(str(folder), treatment, record_errors(model, labels, predicted),
                           part_mae(predicted, labels.matrices["hamiltonian"], treatment))


def _check_same_structure(structure, labelled, folder, tol_ang: float = 1e-5) -> None:
    """Raise naming ``folder`` unless its structure has the same atoms, positions, lattice and periodicity."""
    same = (structure.symbols == labelled.symbols and structure.pbc == labelled.pbc
            and np.allclose(structure.positions_ang, labelled.positions_ang, atol=tol_ang)
            and (structure.lattice_ang is None) == (labelled.lattice_ang is None)
            and (structure.lattice_ang is None or np.allclose(structure.lattice_ang, labelled.lattice_ang, atol=tol_ang)))
    if not same:
        raise ValueError(f"{folder} holds the labels of another structure ({labelled.n_atoms} atoms "
                         f"{''.join(labelled.symbols)}) than the one predicted ({structure.n_atoms} atoms "
                         f"{''.join(structure.symbols)}, or different positions, lattice or periodicity)")

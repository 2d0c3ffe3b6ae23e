"""Score a model trained on g2-mol and ship it as ``universal-mol-v1`` (package folder, model card included).

    elct data benchmark g2-mol --out ~/.cache/elct/g2-mol               # 1,596 structures (resumable)
    elct data benchmark g2-heldout --out ~/.cache/elct/g2-heldout       # 5 held-out molecules x 24
    python benchmarks/accuracy.py g2-mol --data ~/.cache/elct/g2-mol --run ~/.cache/elct/acc/g2 --cpu-minutes 45
    python experiments/export_universal.py --run ~/.cache/elct/acc/g2 --data ~/.cache/elct/g2-mol \\
        --heldout ~/.cache/elct/g2-heldout

The card records the training data (dataset, command, counts), level of theory, elements, cutoff, H0
baseline, training CPU time, the test MAE of the g2-mol test split pooled / per block kind / per element
pair, and per held-out molecule the test H MAE and mean energy error E_KS[D(H_pred)] - E_KS[D(H_DFT)].
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import ai2dft
from ai2dft.units import HARTREE_TO_UHA
from elct_jax.data.benchmarks import SPLIT_FILE, get_dataset
from elct_jax.data.dataset_dir import read_record
from elct_jax.analysis.evaluate import block_errors, structure_errors
from elct_jax.train.saved_model import export_model, load_model, pretrained_folder
from elct_jax.analysis.curve import read_curve
from elct_jax.config import DataConfig, RunConfig
from elct_jax.train.run import prepare_data

NAME = "universal-mol-v1"
LIMITATIONS = (
    "Trained on the H MAE in the AO basis only: errors along nearly linearly dependent def2-SVP combinations "
    "(S eigenvalues down to ~3e-3) are amplified ~1/s in the spectrum, so zero-shot orbital energies (eV) and "
    "E_KS[D(H_pred)] (Hartree) are not usable; fine-tune on the target molecules. Li, Be, B, Na, Al, P occur in "
    "1-3 training molecules each: their blocks are the least accurate.")


def test_errors(model, data: Path) -> dict:
    """g2-mol test split: MAE (uHa) pooled, per block kind and per (kind, element pair)."""
    config = RunConfig(data=DataConfig(path=str(data), cutoff_ang=model.cutoff_ang, split_file=str(data / SPLIT_FILE)),
                       model=model.config)
    dataset = prepare_data(config, basis=model.basis)
    errors = block_errors(model.apply, model.params, dataset.batches["test"], model.basis.elements)
    print(errors.table())
    out = {"all": errors.mae(), "onsite": errors.mae("onsite"), "offsite": errors.mae("offsite")}
    out.update({f"{kind} {pair}": errors.mae(kind, pair) for kind, pair in sorted(errors.sums)})
    return {"n_structures": len(dataset.splits["test"]), "n_train": len(dataset.splits["train"]),
            "n_val": len(dataset.splits["val"]), **{k: round(v * HARTREE_TO_UHA, 2) for k, v in out.items()}}


def heldout_errors(model, heldout: Path) -> dict:
    """Per held-out molecule: H MAE and mean energy error (uHa) over its test structures."""
    test = json.loads((heldout / SPLIT_FILE).read_text())["test"]
    by_molecule: dict[str, list] = {}
    for name in test:
        by_molecule.setdefault(name.split("/")[0], []).append(structure_errors(model, read_record(heldout / name)))
    out = {}
    for molecule, errs in by_molecule.items():
        out[molecule] = {"n": len(errs), "mae_uHa": round(float(np.mean([e.mae for e in errs])) * HARTREE_TO_UHA, 2),
                         "energy_error_uHa": round(float(np.mean([e.energy for e in errs])) * HARTREE_TO_UHA, 2)}
        print(f"{molecule:<10} {out[molecule]}")
    return out


def card(model, run: Path, data: Path, heldout: Path) -> dict:
    ds = get_dataset("g2-mol")
    record = read_record(next(p.parent for p in sorted(data.glob("*/0/info.json"))))
    rows = read_curve(run / "curve.csv")
    return {
        "name": NAME,
        "description": "ELCT (small preset, float32) pretrained on G2 molecules of H, Li-F, Na-Cl; learns H - H0 "
                       "(H0 = Fock matrix of the MINAO density, rebuilt by PySCF for each new structure)",
        "data": {"dataset": "g2-mol", "molecules": len(ds.bases), "structures_per_molecule": ds.n_structures,
                 "sampling": "Gaussian displacements 0.04 A per coordinate", "seed": ds.seed,
                 "command": "elct data benchmark g2-mol --out DIR"},
        "level_of_theory": {"basis": record.basis.name,
                            **{k: record.dft.get(k) for k in ("xc", "grid_level", "density_fit", "charge")}},
        "elements": list(model.basis.elements),
        "cutoff_ang": model.cutoff_ang,
        "training": {"cpu_minutes": round(float(rows[-1]["train_cpu_s"]) / 60, 1) if rows else None,
                     "steps": int(rows[-1]["step"]) if rows else None, "machine": "2-core CPU VM",
                     "command": "python benchmarks/accuracy.py g2-mol --data DIR --run RUN --cpu-minutes N"},
        "test_mae_uHa": test_errors(model, data),
        "heldout_test_uHa": heldout_errors(model, heldout),
        "limitations": LIMITATIONS,
    }


def main() -> None:
    ai2dft.enable_float64()  # the DFT layer (Systems, energies) needs float64
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory trained on g2-mol")
    parser.add_argument("--data", type=Path, required=True, help="the g2-mol dataset")
    parser.add_argument("--heldout", type=Path, required=True, help="the g2-heldout dataset")
    parser.add_argument("--out", type=Path, default=pretrained_folder(NAME))
    args = parser.parse_args()
    model = load_model(args.run)
    out = export_model(model, args.out, card(model, args.run, args.data, args.heldout))
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

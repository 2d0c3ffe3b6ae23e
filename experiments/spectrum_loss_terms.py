"""Do extra loss terms make predicted spectra usable? An A/B of ``[train.weights]`` entries at equal CPU.

The pretrained ``universal-mol-v1`` was trained on the AO-basis MAE alone; zero-shot, held-out molecules' orbital
energies came out eV off and E_KS[D(H_pred)] Hartrees above the SCF energy, because def2-SVP has nearly linearly
dependent AO combinations (S eigenvalues down to ~1e-3 in ring molecules) along which an AO-small error moves levels
by eV. ``mae_orth`` adds the error of S^-1/2 H S^-1/2, the Hamiltonian in the Loewdin orthonormal basis, whose
entries are what the spectrum sees. Result on 36 molecules at 12 CPU-minutes per arm (benchmarks/RESULTS.md): no; the
orbital-energy, gap and energy errors rose 1.4-4x at weights 0.1 and 1. ``mae_onsite`` adds the MAE of the atoms' own
blocks alone: they set the levels, and are a few per cent of what the pooled MAE weighs.

Data: the molecules of a ``g2-mol`` folder (``elct data benchmark g2-mol``: 14 geometries per molecule, PBE/def2-SVP,
H0 stored), split per molecule 12 / 1 / 1 as the benchmark does; ``--molecules`` picks some (default: every molecule
folder whose 14 records exist). Each arm trains the ``small`` preset with the default recipe (H0 baseline,
``head_scale``) for ``--cpu-minutes`` of process CPU time from the same seed, with weights mae = 1 and ``--term`` = the
arm's value (0: the pooled MAE alone, one arm shared by every term), and is scored on the test geometries (one per molecule, never trained on):

  AO MAE       mean |H - H_ref| over AO pairs (Hartree)
  orth MAE     mean |X (H - H_ref) X|, X = S^-1/2
  eps MAE      mean |eps_i - eps_i,ref| over the occupied levels and the LUMO (generalised eigenproblem H C = S C eps)
  gap error    |(LUMO - HOMO) - reference|
  E error      |E_KS[D(H)] - E_KS[D(H_ref)]| (the record's level of theory, ``elct_jax.analysis.evaluate``)

    OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \\
    python experiments/spectrum_loss_terms.py --data ~/.cache/elct/g2-mol --cpu-minutes 12 --term mae_onsite
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.linalg

import ai2dft
from ai2dft.units import HARTREE_TO_MEV
from elct_jax.analysis.evaluate import structure_errors
from elct_jax.config import DataConfig, LossWeights, RunConfig, TrainConfig, preset
from elct_jax.data.dataset_dir import read_record
from elct_jax.inference.predict import model_dense, predict_blocks
from elct_jax.train.run import train
from elct_jax.train.saved_model import load_model

N_PER_MOLECULE, SPLIT = 14, (12, 1)
OUT = Path(__file__).parent / "out"


def complete_molecules(data: Path) -> list[str]:
    """Molecule folders of ``data`` whose N_PER_MOLECULE records are all written."""
    return sorted(d.name for d in data.iterdir()
                  if d.is_dir() and all((d / str(i) / "hamiltonian.h5").exists() for i in range(N_PER_MOLECULE)))


def write_split(molecules: list[str], path: Path) -> Path:
    """split.json over ``molecules``: geometries 0-11 train, 12 validation, 13 test of each."""
    n_train, n_val = SPLIT
    split = {"train": [f"{m}/{i}" for m in molecules for i in range(n_train)],
             "val": [f"{m}/{n_train + i}" for m in molecules for i in range(n_val)],
             "test": [f"{m}/{i}" for m in molecules for i in range(n_train + n_val, N_PER_MOLECULE)]}
    path.write_text(json.dumps(split, indent=1))
    return path


def train_arm(data: Path, split: Path, run_dir: Path, weights: LossWeights, cpu_minutes: float) -> float:
    """Train one arm to its CPU budget (resumes an interrupted run); returns its training CPU seconds."""
    config = RunConfig(data=DataConfig(path=str(data), split_file=str(split)), model=preset("small"),
                       train=TrainConfig(run_dir=str(run_dir), epochs=100_000, progress=False, weights=weights))
    start = time.process_time()
    train(config, callbacks=[lambda end: time.process_time() - start > 60 * cpu_minutes])
    return time.process_time() - start


def spectrum_errors(model, record) -> dict[str, float]:
    """The module docstring's errors of one molecular test record (Hartree)."""
    H = np.asarray(predict_blocks(model, record.structure, dense=True))
    H_ref = model_dense(record.matrices["hamiltonian"], model, record.structure)
    S = model_dense(record.matrices["overlap"], model, record.structure)
    w, U = np.linalg.eigh(S)
    X = (U / np.sqrt(w)) @ U.T
    n_occ = int(record.dft["n_electrons"]) // 2
    eps, eps_ref = scipy.linalg.eigh(H, S, eigvals_only=True), scipy.linalg.eigh(H_ref, S, eigvals_only=True)
    gap, gap_ref = eps[n_occ] - eps[n_occ - 1], eps_ref[n_occ] - eps_ref[n_occ - 1]
    return {"AO MAE": float(np.mean(np.abs(H - H_ref))), "orth MAE": float(np.mean(np.abs(X @ (H - H_ref) @ X))),
            "eps MAE": float(np.mean(np.abs(eps - eps_ref)[: n_occ + 1])), "gap error": abs(float(gap - gap_ref)),
            "E error": abs(structure_errors(model, record, H).energy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a g2-mol dataset folder")
    parser.add_argument("--molecules", nargs="*", help="molecule folders to use (default: every complete one)")
    parser.add_argument("--term", choices=["mae_orth", "mae_onsite"], default="mae_onsite")
    parser.add_argument("--arms", type=float, nargs="+", default=[0.0, 1.0], help="the term's weights to compare")
    parser.add_argument("--molecules-of", type=Path, help="use the molecules of an earlier run's split.json")
    parser.add_argument("--cpu-minutes", type=float, default=12.0, help="training budget per arm")
    parser.add_argument("--out", type=Path, default=OUT / "spectrum_loss_terms")
    args = parser.parse_args()
    ai2dft.enable_float64()  # H0, the dense H and the energies in float64, as `elct train` runs
    molecules = args.molecules or complete_molecules(args.data)
    if args.molecules_of:
        molecules = sorted({name.split("/")[0] for name in json.loads(args.molecules_of.read_text())["test"]})
    args.out.mkdir(parents=True, exist_ok=True)
    split = write_split(molecules, args.out / "split.json")
    print(f"{len(molecules)} molecules ({', '.join(molecules)}), {SPLIT[0]} / {SPLIT[1]} / "
          f"{N_PER_MOLECULE - sum(SPLIT)} geometries each; {args.cpu_minutes} CPU-minutes per arm", flush=True)
    tests = [read_record(args.data / name) for name in json.loads(split.read_text())["test"]]
    rows, cpus = {}, {}
    for w in args.arms:
        run = args.out / (f"{args.term}_{w:g}" if w else "mae_only")
        cpu = train_arm(args.data, split, run, LossWeights.from_dict({"mae": 1.0, args.term: w}), args.cpu_minutes)
        model = load_model(run)
        errors = [spectrum_errors(model, r) for r in tests]
        rows[w] = {k: float(np.mean([e[k] for e in errors])) for k in errors[0]}
        print(f"{args.term} = {w:g}: {cpu:.0f} training CPU s; " + ", ".join(
            f"{k} {v * HARTREE_TO_MEV:.2f} meV" for k, v in rows[w].items()), flush=True)
        cpus[w] = cpu
    keys = list(next(iter(rows.values())))
    print(f"\ntest means over {len(tests)} held-out geometries, meV\n{args.term:>10} "
          + " ".join(f"{k:>11}" for k in keys) + "  training CPU s")
    for w, row in rows.items():
        print(f"{w:>10g} " + " ".join(f"{row[k] * HARTREE_TO_MEV:11.2f}" for k in keys) + f"  {cpus[w]:14.0f}")


if __name__ == "__main__":
    main()

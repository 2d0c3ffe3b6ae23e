"""Generalization of label-free training: ELCT trained on N water structures, tested on held-out ones.

Data: water geometries sampled from the PBE/def2-SVP normal modes at 300 K and labelled with PySCF
(density fitting, grid level 3) by ``elct_jax.data.generate.generate_dataset`` into runs/ (DeepH-dock
folders). A seeded split gives ``--n-train`` training and ``--n-test`` test structures (no validation
set: nothing is selected on held-out data; the final parameters are tested).

The same network (ELCT, same random initialisation, same optimizer and epochs) is trained by the
project's loop ``elct_jax.train.loop.fit`` in each mode (loss weights [w_mae, w_omega, w_sc]). The
on-site biases are NOT fitted to the labels first (``elct_jax.train.run.train`` does that for
supervised runs): label-free training cannot, and every mode starts from the same parameters.

  supervised   MAE against the PySCF Hamiltonians of the training structures
  omega        label-free: Omega(H) / N_e on the training structures
  sc           label-free: |H - F[D(H)]| (self-consistency residual, F held fixed: see elct_jax.train.losses)
  omega+sc     label-free: Omega(H) / N_e + |H - F[D(H)]|
  omega+sc-diis  label-free: Omega(H) / N_e + |H - T_n(H)|, T_n = ``--sc-iterations`` Roothaan-DIIS steps from H

In the label-free modes the MAE weight is exactly 0: the PySCF labels of the training structures
only appear in the logged MAE metric, never in the gradient. Test errors against PySCF come from
``elct_jax.analysis.evaluate.structure_errors``: H MAE raw and after removing the shift c S that Omega cannot
see (meV), and E_KS[D(H)] - E_KS[D(H_pyscf)] (micro-Hartree); the same numbers are given for the
training structures to separate fitting from generalization.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python experiments/water_generalization.py
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import jax
import numpy as np

import ai2dft
from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.config import DataConfig, LossWeights, OptimConfig, RunConfig, TrainConfig, preset
from elct_jax.data.generate import Recipe, generate_dataset
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.analysis.evaluate import structure_errors
from elct_jax.nn.model import count_parameters, make_predict_fn
from elct_jax.geometry.structure import Structure
from elct_jax.train.loop import fit
from elct_jax.train.run import prepare_data
from elct_jax.train.saved_model import TrainedModel

ai2dft.enable_float64()

WATER = Structure(("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
MODES = {"supervised": LossWeights(mae=1.0), "omega": LossWeights(mae=0.0, omega=1.0),
         "sc": LossWeights(mae=0.0, sc=1.0), "omega+sc": LossWeights(mae=0.0, omega=1.0, sc=1.0),
         "omega+sc-diis": LossWeights(mae=0.0, omega=1.0, sc=1.0)}  # "-diis": train.sc_iterations > 1


def make_data(out_dir: Path, n: int, grid_level: int, smearing: float, seed: int) -> Path:
    """Normal-mode sampled waters with PySCF labels in out_dir/data (resumable); returns that path."""
    dft = DFTSettings(basis="def2-svp", xc="pbe", grid_level=grid_level, conv_tol=1e-10,
                      smearing=("fermi", smearing) if smearing > 0 else None)
    recipe = Recipe(kind="normal_modes", temperature_K=300.0, dft=dft)
    manifest = generate_dataset(WATER, recipe, out_dir / "data", n, n_workers=0, seed=seed, progress=False)
    done = sum(entry["status"] == "done" for entry in manifest["structures"].values())
    if done < n:
        raise RuntimeError(f"only {done} of {n} structures were labelled; see {out_dir / 'data' / 'manifest.json'}")
    return out_dir / "data"


def table(results: dict) -> str:
    head = (f"{'mode':<15}{'set':<6}{'MAE meV':>10}{'MAE* meV':>10}{'MAE* uHa':>10}"
            f"{'dE uHa (mean)':>15}{'|dE| uHa (max)':>16}{'s/step':>8}")
    lines = [head, "-" * len(head)]
    for mode, r in results.items():
        for name in ("train", "test"):
            errs = r[name]
            mae = np.mean([e.mae for e in errs])
            mae_a = np.mean([e.mae_aligned for e in errs])
            de = np.array([e.energy for e in errs])
            lines.append(f"{mode:<15}{name:<6}{mae * HARTREE_TO_MEV:>10.3f}{mae_a * HARTREE_TO_MEV:>10.3f}"
                         f"{mae_a * HARTREE_TO_UHA:>10.1f}{np.mean(de) * HARTREE_TO_UHA:>15.2f}"
                         f"{np.max(np.abs(de)) * HARTREE_TO_UHA:>16.2f}{r['seconds_per_step']:>8.3f}")
    lines.append("MAE over all AO pairs; MAE*: after removing the constant shift c*S (Omega(H + cS) = Omega(H)); "
                 "dE = E_KS[D(H_pred)] - E_KS[D(H_pyscf)]")
    return "\n".join(lines)


def last_row(run_dir: Path) -> dict:
    with (run_dir / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--patience", type=int, default=5, help="plateau patience (epochs) of the lr halving")
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--smearing", type=float, default=0.0, help="Fermi-Dirac width, Hartree (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sc-iterations", type=int, default=8, help="Roothaan-DIIS steps of the -diis mode's target")
    parser.add_argument("--out", type=Path, default=Path("runs/water_generalization"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    n = args.n_train + args.n_test
    data_path = make_data(args.out, n, args.grid_level, args.smearing, args.seed)
    print(f"{n} water structures (normal modes, 300 K, PBE/def2-SVP, grid level {args.grid_level}) in {data_path}: "
          f"{time.perf_counter() - t0:.0f} s")
    base = RunConfig(data=DataConfig(path=str(data_path), cutoff_ang=6.0, batch_size=args.batch_size,
                                     split_seed=args.seed, split=(args.n_train / n, 0.0, args.n_test / n)),
                     model=preset(args.preset, dtype=args.dtype))
    dataset = prepare_data(base, with_systems=True)  # one padded shape for every mode: one compilation
    init, apply = make_predict_fn(base.model, dataset.basis)
    params0 = init(jax.random.PRNGKey(args.seed), dataset.batches["train"][0].graph)
    print(f"ELCT preset {args.preset!r} ({args.dtype}), {count_parameters(params0)} parameters; "
          f"{len(dataset.splits['train'])} train / {len(dataset.splits['test'])} test structures; "
          f"Adam lr {args.lr:g}, halved after {args.patience} epochs without improvement, {args.epochs} epochs")
    records = {name: [dataset.records[i] for i in dataset.splits[name]] for name in ("train", "test")}
    results = {}
    for mode in args.modes:
        run_dir = args.out / mode
        config = TrainConfig(run_dir=str(run_dir), epochs=args.epochs, seed=args.seed, weights=MODES[mode],
                             optim=OptimConfig(learning_rate=args.lr, plateau_patience=args.patience,
                                               min_learning_rate=args.lr * 1e-3),
                             progress=False,
                             sc_iterations=args.sc_iterations if mode.endswith("-diis") else 1)
        t1 = time.perf_counter()
        state = fit(apply, params0, dataset.batches["train"], [], config)
        seconds = time.perf_counter() - t1
        model = TrainedModel(base.model, dataset.basis, base.data.cutoff_ang, state.params, apply, dataset.baseline)
        results[mode] = {name: [structure_errors(model, r) for r in recs] for name, recs in records.items()}
        results[mode]["seconds_per_step"] = seconds / max(int(state.step), 1)
        row = last_row(run_dir)
        print(f"{mode}: {int(state.step)} steps in {seconds:.0f} s (compilation included), final epoch: "
              f"train loss {float(row['train_loss']):.6g}, train MAE {float(row['train_mae']) * HARTREE_TO_MEV:.2f} meV, "
              f"lr {float(row['lr']):.2g}", flush=True)
    print("\n" + table(results))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""Fine-tuning the pretrained model against training from scratch, at 1/8, 1/4, 1/2 and all of the training data.

    elct data benchmark g2-heldout --out ~/.cache/elct/g2-heldout        # 5 held-out molecules x 24
    python experiments/finetune.py --data ~/.cache/elct/g2-heldout --runs ~/.cache/elct/finetune \\
        --cpu-minutes 4 --plot docs/finetune_g2-heldout.png

The family: the five G2 molecules kept out of pretraining (pyrrole, pyridine, furan, thiophene,
acetamide), split per molecule 16 train / 2 validation / 6 test (``split.json``). Each fraction keeps
the first n of every molecule's 16 training structures (2, 4, 8, 16: stratified, so every molecule is
seen). Two arms per fraction, the same CPU budget each:

* scratch    a fresh network (the default recipe of benchmarks/accuracy.py, learning rate 1e-3);
* finetune   ``init_from = --model`` (default ``universal-mol-v1``), learning rate ``--finetune-lr``.

Each run records test H MAE against training CPU seconds (``curve.csv``); the table gives the best
checkpoint's test MAE, and for fine-tuning the CPU seconds until its test MAE first reached the
from-scratch full-data final MAE (blank: never within the budget). Reruns resume each run.

``--label-free`` adds the label-free arm: the pretrained model fine-tuned on ``--label-free-per-molecule``
training structures of each molecule with NO labels (Omega/N + self-consistency residual against the 8-step DIIS
target), against supervised fine-tuning at the same number of steps; test H MAE and energy error
E_KS[D(H_pred)] - E_KS[D(H_DFT)] before and after.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import ai2dft
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.config import DataConfig, LossWeights, OptimConfig, RunConfig, TrainConfig, preset
from elct_jax.data.benchmarks import SPLIT_FILE
from elct_jax.data.dataset_dir import read_record
from elct_jax.analysis.evaluate import block_errors, structure_errors
from elct_jax.train.saved_model import load_model
from elct_jax.analysis.curve import Curve, read_curve
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.run import network_config, prepare_data, train

PER_MOLECULE = (2, 4, 8, 16)  # training structures per molecule: 1/8, 1/4, 1/2, all
LABEL_FREE_SC_ITERATIONS = 8


def _first_per_molecule(names: list[str], n: int) -> list[str]:
    kept, seen = [], {}
    for name in names:
        molecule = name.split("/")[0]
        seen[molecule] = seen.get(molecule, 0) + 1
        if seen[molecule] <= n:
            kept.append(name)
    return kept


def subset_split(data: Path, per_molecule: int, out: Path, val_per_molecule: int | None = None,
                 with_test: bool = True) -> Path:
    """A split file with the first ``per_molecule`` training structures of each molecule (and the first
    ``val_per_molecule`` validation ones, all by default; the test set unless ``with_test`` is False)."""
    split = json.loads((data / SPLIT_FILE).read_text())
    val = split["val"] if val_per_molecule is None else _first_per_molecule(split["val"], val_per_molecule)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"train": _first_per_molecule(split["train"], per_molecule), "val": val,
                               "test": split["test"] if with_test else []}, indent=1))
    return out


def run_config(data: Path, split: Path, run_dir: Path, init_from: str, lr: float, epochs: int = 100_000,
               weights: LossWeights = LossWeights(), sc_iterations: int = 1) -> RunConfig:
    return RunConfig(data=DataConfig(path=str(data), cutoff_ang=6.0, split_file=str(split)),
                     model=preset("small"),
                     train=TrainConfig(run_dir=str(run_dir), init_from=init_from, epochs=epochs, weights=weights,
                                       optim=OptimConfig(learning_rate=lr), sc_iterations=sc_iterations))


def run_arm(config: RunConfig, budget_cpu_s: float) -> dict:
    """Train ``config`` until ``budget_cpu_s`` CPU seconds (or its own plateau stop); return the number of
    training structures, the best checkpoint's test MAE (Hartree) and the curve [(cpu_s, test MAE)]."""
    dataset = prepare_data(config)
    config, _ = network_config(config, dataset.basis)
    _, apply = make_predict_fn(config.model, dataset.basis)  # cached: the function train() uses
    run_dir = Path(config.train.run_dir)
    curve = Curve(run_dir, apply, dataset.batches["test"], dataset.basis.elements, budget_cpu_s / 10, budget_cpu_s)
    if curve.offset < budget_cpu_s:
        train(config, dataset, callbacks=[curve])
    model = load_model(run_dir)
    mae = block_errors(model.apply, model.params, dataset.batches["test"], dataset.basis.elements).mae()
    rows = read_curve(run_dir / "curve.csv")
    return {"n_train": len(dataset.splits["train"]), "test_mae": mae,
            "curve": [(float(r["train_cpu_s"]), float(r["test_mae_hartree"])) for r in rows]}


def first_reaching(curve: list[tuple[float, float]], target: float) -> float | None:
    """CPU seconds of the first curve point at or below ``target`` (None: never)."""
    return next((cpu for cpu, mae in curve if mae <= target), None)


def supervised_table(results: dict) -> str:
    """Markdown table of the scratch and finetune arms per fraction."""
    target = results[("scratch", PER_MOLECULE[-1])]["test_mae"]
    lines = ["| training structures | scratch test MAE (uHa / meV) | fine-tuned test MAE (uHa / meV) | "
             "fine-tuned CPU s to reach scratch-100 % |", "|---|---|---|---|"]
    for n in PER_MOLECULE:
        s, f = results[("scratch", n)], results[("finetune", n)]
        reach = first_reaching(f["curve"], target)
        lines.append(f"| {f['n_train']} ({n}/16 per molecule) | {s['test_mae'] * HARTREE_TO_UHA:.1f} / "
                     f"{s['test_mae'] * HARTREE_TO_MEV:.3f} | {f['test_mae'] * HARTREE_TO_UHA:.1f} / "
                     f"{f['test_mae'] * HARTREE_TO_MEV:.3f} | {'' if reach is None else f'{reach:.0f}'} |")
    return "\n".join(lines)


def label_free_arms(data: Path, runs: Path, model: str, steps_epochs: int, lr: float, per_molecule: int) -> str:
    """Label-free vs supervised fine-tuning of ``model`` on ``per_molecule`` training structures of each
    molecule for ``steps_epochs`` epochs each; test H MAE and energy error before and after (per structure,
    PySCF H0 and grids)."""
    full = json.loads((data / SPLIT_FILE).read_text())
    test = [read_record(data / name) for name in full["test"]]
    # the DFT systems (grids, DF tensors) of every record in the split are built: keep it to train + 1 val each
    split = subset_split(data, per_molecule, runs / f"split_label_free_{per_molecule}.json", val_per_molecule=1,
                         with_test=False)
    arms = {"label-free (Omega + SC, no labels)": LossWeights(mae=0.0, omega=1.0, sc=1.0),
            "supervised (MAE)": LossWeights(mae=1.0)}
    rows = {"pretrained, no fine-tuning": load_model(model)}
    for label, weights in arms.items():
        config = run_config(data, split, runs / ("label_free" if weights.mae == 0 else "supervised_steps"), model,
                            lr, epochs=steps_epochs, weights=weights, sc_iterations=LABEL_FREE_SC_ITERATIONS)
        dataset = prepare_data(config, with_systems=weights.mae == 0)
        if not (Path(config.train.run_dir) / "checkpoints").exists():
            train(config, dataset)
        rows[label] = load_model(config.train.run_dir)
    lines = ["| model | test H MAE (uHa) | mean energy error (uHa) | max energy error (uHa) |", "|---|---|---|---|"]
    for label, m in rows.items():
        errs = [structure_errors(m, r) for r in test]
        de = np.array([e.energy for e in errs]) * HARTREE_TO_UHA
        lines.append(f"| {label} | {np.mean([e.mae for e in errs]) * HARTREE_TO_UHA:.1f} | {de.mean():.2f} | "
                     f"{np.abs(de).max():.2f} |")
    return "\n".join(lines)


def plot(results: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, style in (("scratch", "o-"), ("finetune", "s-")):
        n = [results[(arm, k)]["n_train"] for k in PER_MOLECULE]
        mae = [results[(arm, k)]["test_mae"] * HARTREE_TO_UHA for k in PER_MOLECULE]
        ax.loglog(n, mae, style, label="from scratch" if arm == "scratch" else "fine-tuned from universal-mol-v1")
    ax.axhline(results[("scratch", PER_MOLECULE[-1])]["test_mae"] * HARTREE_TO_UHA, ls="--", lw=0.8, color="gray")
    ax.set_xlabel("training structures (5 held-out molecules)")
    ax.set_ylabel("test H MAE (uHa)")
    ax.set_title("g2-heldout: fine-tuning vs scratch at equal CPU budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def main() -> None:
    ai2dft.enable_float64()  # the DFT layer (Systems, energies) needs float64
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the g2-heldout dataset (with split.json)")
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run directories (resumed)")
    parser.add_argument("--model", default="universal-mol-v1", help="pretrained model to fine-tune")
    parser.add_argument("--cpu-minutes", type=float, default=4.0, help="training budget of each run")
    parser.add_argument("--finetune-lr", type=float, default=3e-4)
    parser.add_argument("--label-free", action="store_true", help="also the label-free fine-tuning arm")
    parser.add_argument("--label-free-epochs", type=int, default=20)
    parser.add_argument("--label-free-per-molecule", type=int, default=2, help="unlabelled structures per molecule")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--arms", nargs="+", choices=("scratch", "finetune"), default=("scratch", "finetune"),
                        help="run only these arms (the table needs both; e.g. scratch while pretraining runs)")
    args = parser.parse_args()

    t0, cpu0 = time.perf_counter(), time.process_time()
    results = {}
    for n in PER_MOLECULE:
        split = subset_split(args.data, n, args.runs / f"split_{n}.json")
        for arm, init_from, lr in (("scratch", "", 1e-3), ("finetune", args.model, args.finetune_lr)):
            if arm not in args.arms:
                continue
            print(f"== {arm}, {n}/16 training structures per molecule", flush=True)
            config = run_config(args.data, split, args.runs / f"{arm}_{n}", init_from, lr)
            results[(arm, n)] = run_arm(config, args.cpu_minutes * 60)
    if set(args.arms) != {"scratch", "finetune"}:
        return
    print(supervised_table(results))
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    if args.label_free:
        print(label_free_arms(args.data, args.runs, args.model, args.label_free_epochs, args.finetune_lr,
                              args.label_free_per_molecule))
    print(f"done in {time.perf_counter() - t0:.0f} s wall, {time.process_time() - cpu0:.0f} s CPU")


if __name__ == "__main__":
    main()

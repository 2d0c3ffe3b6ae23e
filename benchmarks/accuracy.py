"""Accuracy at the field's protocol: ELCT trained with the default recipe on a named benchmark dataset.

    elct data benchmark water-md17 --out ~/.cache/elct/water-md17        # the data, once (resumable)
    python benchmarks/accuracy.py water-md17 --data ~/.cache/elct/water-md17 --run ~/.cache/elct/acc/water \\
        --cpu-minutes 60

Trains with ``elct train``'s defaults (the preset and TrainConfig/OptimConfig defaults; only the data,
split file and run directory are set here) until ``--cpu-minutes`` of process CPU time, recording the
test-set H MAE against the CPU seconds spent training (``curve.csv`` in the run directory; the time spent
evaluating the curve is not counted). Then it loads the best checkpoint (by validation loss) and prints
the test H MAE pooled, per block kind (on-site / off-site) and per element pair, in meV and uHa, and the
energy error E_KS[D(H_pred)] - E_KS[D(H_DFT)] on test molecules, beside the published anchors.
Rerunning continues from the last checkpoint and the curve. ``--plot`` writes the curve to docs/.
Against DeepH-E3 at equal CPU seconds on the same split: ``benchmarks/deephe3_race.py`` (scores its curve).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import ai2dft
from elct_jax.config import DataConfig, LossWeights, OptimConfig, RunConfig, TrainConfig, preset
from elct_jax.data.baseline import BASELINE
from elct_jax.data.benchmarks import SPLIT_FILE, get_dataset
from elct_jax.data.workers import Interrupted
from elct_jax.nn.model import make_predict_fn
from elct_jax.inference.predict import predict_blocks
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.analysis.evaluate import band_errors, block_errors, structure_errors
from elct_jax.analysis.curve import Curve, read_curve
from elct_jax.train.run import network_config, prepare_data, train
from elct_jax.train.saved_model import load_model

ANCHORS = {  # published test H MAE of the same protocol (DESIGN.md section 4), micro-Hartree / meV
    "water-md17": [("QHFlow (2025)", 4.93, "uHa"), ("HELM (2025)", 9.33, "uHa"), ("QHNet", 10.79, "uHa"),
                   ("PhiSNet", 15.7, "uHa"), ("SchNOrb", 165.0, "uHa")],
    "graphene-300k": [("DeepH-2 (OpenMX graphene)", 0.12, "meV"), ("DeepH-E3 (same data)", 0.40, "meV")],
    "g2-mol": [("DeepH universal (104 solids)", 2.2, "meV"), ("QHNet on QH9 (B3LYP)", 76.3 / 36.749, "meV")],
    "g2-b3lyp": [("QHNet, QH9-stable-id (QM9 mols)", 76.3, "uHa")],  # B3LYP/def2-SVP, other molecules and split
}
CUTOFF_ANG = {"water-md17": 6.0, "graphene-300k": 8.0, "g2-mol": 6.0, "g2-b3lyp": 6.0}
def run_config(name: str, data: Path, run: Path, args: argparse.Namespace) -> RunConfig:
    """The default recipe on the benchmark's data and split, with the command line's overrides (``train``
    fits a fresh network's radial basis and l_max to the data, ``elct_jax.train.run.network_config``)."""
    overrides = {k: v for k, v in (("l_max", args.l_max), ("edge_init_scale", args.edge_init_scale)) if v is not None}
    model = preset(args.preset, **overrides)
    optim = OptimConfig(schedule=args.schedule, learning_rate=args.learning_rate,
                        final_learning_rate=args.final_learning_rate)
    weights = LossWeights.from_dict({k: float(v) for k, v in (w.split("=", 1) for w in args.weight)})
    return RunConfig(data=DataConfig(path=str(data), cutoff_ang=CUTOFF_ANG[name], split_file=str(data / SPLIT_FILE),
                                     batch_size=args.batch_size, baseline=args.baseline),
                     model=model, train=TrainConfig(run_dir=str(run), epochs=args.epochs, optim=optim, weights=weights,
                                                    head_scale=args.head_scale, init_from=args.init_from,
                                                    fit_l_max=args.l_max is None))


def energy_errors(model, records) -> np.ndarray:
    """[n] E_KS[D(H_pred)] - E_KS[D(H_DFT)] of molecular records (Hartree)."""
    return np.array([structure_errors(model, r).energy for r in records])


def report(name: str, errors, energies: np.ndarray | None, curve_path: Path) -> str:
    rows = read_curve(curve_path)
    cpu = float(rows[-1]["train_cpu_s"]) if rows else float("nan")
    lines = [f"{name}: test set of the best checkpoint after {cpu / 60:.1f} CPU-minutes of training", errors.table()]
    if energies is not None and len(energies):
        de = energies * HARTREE_TO_UHA
        lines.append(f"energy error E_KS[D(H_pred)] - E_KS[D(H_DFT)] over {len(de)} test structures: mean "
                     f"{de.mean():.3f} uHa, mean |.| {np.abs(de).mean():.3f} uHa, max |.| {np.abs(de).max():.3f} uHa")
    mae = errors.mae()
    lines.append("anchors (published, same protocol, other data generators):")
    for who, value, unit in ANCHORS[name]:
        ours = mae * (HARTREE_TO_UHA if unit == "uHa" else HARTREE_TO_MEV)
        lines.append(f"  {who:<28}{value:>9.2f} {unit}   ELCT {ours:9.3f} {unit}   "
                     f"ratio ELCT/anchor {ours / value:6.2f}")
    return "\n".join(lines)


def plot(name: str, curve_path: Path, out_png: Path, label: str = "ELCT (default recipe)",
         others: list[tuple[Path, str]] = ()) -> None:
    """The test-MAE-vs-CPU curve of this run (and of ``others``: (curve.csv, label) of earlier runs) with the
    anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit, scale = ("uHa", HARTREE_TO_UHA) if ANCHORS[name][0][2] == "uHa" else ("meV", HARTREE_TO_MEV)
    fig, ax = plt.subplots(figsize=(6, 4))
    right = 0.0
    for path, text in [(curve_path, label), *others]:
        rows = read_curve(path)
        cpu = np.array([float(r["train_cpu_s"]) for r in rows]) / 60
        ax.semilogy(cpu, np.array([float(r["test_mae_hartree"]) for r in rows]) * scale, "o-", ms=3, label=text)
        right = max(right, cpu.max())
    for who, value, u in ANCHORS[name]:
        ax.axhline(value, ls="--", lw=0.8, color="gray")
        ax.text(right, value, f" {who}", va="center", fontsize=7)
    ax.set_xlabel("training CPU minutes (2-core VM)")
    ax.set_ylabel(f"test H MAE ({unit})")
    ax.set_title(f"{name}: test MAE vs CPU time")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def main() -> None:
    ai2dft.enable_float64()  # the DFT layer (Systems, energies) needs float64
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(ANCHORS))
    parser.add_argument("--data", type=Path, required=True, help="the dataset folder (with split.json)")
    parser.add_argument("--run", type=Path, required=True, help="run directory (resumed if it exists)")
    parser.add_argument("--cpu-minutes", type=float, default=60.0, help="training budget in process CPU minutes")
    parser.add_argument("--curve-seconds", type=float, default=120.0, help="CPU seconds between curve points")
    parser.add_argument("--curve-structures", type=int, default=100, help="test structures in each curve point")
    parser.add_argument("--energy-structures", type=int, default=100, help="test molecules for the energy error")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the curve (e.g. docs/accuracy_water.png)")
    parser.add_argument("--l-max", type=int, default=None, help="replace the preset's l_max (default: the least the "
                        "head needs, 2 x the highest orbital l: 2 for an s/p basis, 4 with d shells)")
    parser.add_argument("--edge-init-scale", type=float, default=None,
                        help="replace the preset's edge_init_scale (initial off-site blocks ~ this many Hartree)")
    parser.add_argument("--head-scale", type=float, default=TrainConfig.head_scale,
                        help="[train] head_scale: initial blocks vary this times the targets (0: random heads)")
    parser.add_argument("--batch-size", type=int, default=DataConfig.batch_size)
    parser.add_argument("--schedule", choices=["plateau", "exponential"], default="plateau",
                        help="exponential: lr 1e-3 -> 1e-5 over --epochs (size it to the budget)")
    parser.add_argument("--baseline", choices=["auto", "h0", "none"], default=DataConfig.baseline,
                        help="learn H - H0 (h0; crystals need `elct data add-h0` first), H (none), or auto")
    parser.add_argument("--compare", action="append", default=[], metavar="RUN_DIR=LABEL",
                        help="also plot the curve of an earlier run (repeatable), e.g. for an A/B of one option")
    parser.add_argument("--epochs", type=int, default=100_000, help="epochs (the budget usually stops first)")
    parser.add_argument("--learning-rate", type=float, default=OptimConfig.learning_rate)
    parser.add_argument("--final-learning-rate", type=float, default=OptimConfig.final_learning_rate,
                        help="the exponential schedule's last lr")
    parser.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE",
                        help="[train.weights] entry (repeatable), e.g. mae_onsite=1")
    parser.add_argument("--init-from", default="", help="[train] init_from: fine-tune from a run directory or model")
    args = parser.parse_args()

    get_dataset(args.name)
    config = run_config(args.name, args.data, args.run, args)
    dataset = prepare_data(config)
    bs = config.data.batch_size
    curve_batches = dataset.batches["test"][: max(1, args.curve_structures // bs)]
    print(f"{args.name}: {', '.join(f'{len(v)} {k}' for k, v in dataset.splits.items())}; preset {args.preset}; "
          f"budget {args.cpu_minutes} CPU-minutes; run {args.run}", flush=True)
    config, _ = network_config(config, dataset.basis)  # the network train() builds, for the curve
    _, apply = make_predict_fn(config.model, dataset.basis)  # cached: the same function train() uses
    curve = Curve(args.run, apply, curve_batches, dataset.basis.elements, args.curve_seconds, args.cpu_minutes * 60)
    if curve.offset < curve.budget:
        try:
            train(config, dataset, callbacks=[curve])
        except Interrupted as stop:  # the checkpoint of the last step is written: rerun to resume
            raise SystemExit(f"{stop}; the run resumes from {args.run} with the same command") from None
    model = load_model(args.run)
    errors = block_errors(model.apply, model.params, dataset.batches["test"], dataset.basis.elements)
    test_records = [dataset.records[i] for i in dataset.splits["test"]]
    energies = bands = None
    if test_records[0].structure.is_periodic:
        bands = [band_errors(predict_blocks(model, r.structure, h0=r.matrices.get(BASELINE)), r) for r in test_records]
    else:
        energies = energy_errors(model, test_records[: args.energy_structures])
    print(report(args.name, errors, energies, args.run / "curve.csv"))
    if bands:
        mev = HARTREE_TO_MEV
        print(f"bands within 2 eV of E_F on a 6x6 k-mesh, {len(bands)} test structures: MAE "
              f"{np.mean([b.mae for b in bands]) * mev:.2f} meV, worst band error {max(b.worst for b in bands) * mev:.2f} "
              f"meV, mean |E_F error| {np.mean([abs(b.fermi) for b in bands]) * mev:.2f} meV; relative to each one's "
              f"E_F: MAE {np.mean([b.mae_aligned for b in bands]) * mev:.2f} meV, worst "
              f"{max(b.worst_aligned for b in bands) * mev:.2f} meV (target: 5 meV band MAE)")
    if args.plot:
        changed = ([f"l_max {args.l_max}"] if args.l_max is not None else []) \
            + ([f"edge init {args.edge_init_scale:g}"] if args.edge_init_scale is not None else []) \
            + ([f"head scale {args.head_scale:g}"] if args.head_scale != TrainConfig.head_scale else []) \
            + ([f"batch {args.batch_size}"] if args.batch_size != DataConfig.batch_size else []) \
            + ([f"{args.schedule} lr"] if args.schedule != "plateau" else []) \
            + ([f"baseline {args.baseline}"] if args.baseline != DataConfig.baseline else []) \
            + [f"weight {w}" for w in args.weight] + ([f"from {Path(args.init_from).name}"] if args.init_from else [])
        others = [(Path(run).expanduser() / "curve.csv", label) for run, label in (c.split("=", 1) for c in args.compare)]
        plot(args.name, args.run / "curve.csv", args.plot,
             f"ELCT {args.preset}" + (f" ({', '.join(changed)})" if changed else " (default recipe)"), others)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

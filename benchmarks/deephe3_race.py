"""ELCT against DeepH-E3 on water-md17 at equal training CPU seconds (issue 13, point 6): the project side.

DeepH-E3 (github Xiaoxun-Gong/DeepH-E3, PyTorch) is a peer installed in its own venv, never imported here;
its side is ``benchmarks/deephe3_driver.py``, run with that venv's python. Its venv and source, once::

    python3.11 -m venv /work/deephe3-venv && /work/deephe3-venv/bin/pip install torch==2.13.0
    /work/deephe3-venv/bin/pip install e3nn==0.6.0 torch_geometric==2.8.1 h5py scipy pathos psutil pymatgen tensorboard
    git clone https://github.com/Xiaoxun-Gong/DeepH-E3 /work/deephe3-src && git -C /work/deephe3-src checkout f011d5f

Then three steps::

    # 1. legacy DeepH folders (OpenMX orbital order, eV) of the train / val split and the first 100 test waters
    python benchmarks/deephe3_race.py export --data ~/.cache/elct/water-md17 --out ~/.cache/elct/deephe3-water
    # 2. DeepH-E3 trains on one thread, its parameters scored on the test subset at each CPU mark
    OMP_NUM_THREADS=1 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/deephe3-venv/bin/python \\
        benchmarks/deephe3_driver.py --src /work/deephe3-src --work ~/.cache/elct/deephe3-water --budget-min 60
    # 3. its predicted H read back into the project's order and units, scored against the project's labels,
    #    beside ELCT's curve (benchmarks/accuracy.py's curve.csv of the same split)
    python benchmarks/deephe3_race.py score --data ~/.cache/elct/water-md17 --work ~/.cache/elct/deephe3-water \\
        --elct-curve ~/.cache/elct/acc/water/curve.csv --test 83 --elct-h0-cpu-s 227

``--test 83``: the first 83 test waters, the subset ELCT's curve was scored on (accuracy.py's
``--curve-structures``); ``--elct-h0-cpu-s``: CPU seconds of ELCT's H0 baseline for its 1,000 train and val
waters (0.227 CPU-s each, one thread), shown as a second ELCT column with that time added to its clock.

``score`` checks that DeepH-E3's stored labels equal the project's H (same order, same units) before it
scores a prediction, and prints the MAE both ways (the driver's own, from DeepH-E3's masked labels, and the
project's, from the dense matrices) so a mismatch would show.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np

from ai2dft.units import HARTREE_TO_EV, HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.analysis.curve import read_curve
from elct_jax.data.dataset_dir import read_record
from elct_jax.data.deeph_legacy import write_deeph_legacy
from elct_jax.hamiltonian.blocks import dict_to_dense, reorder_blocks
from machine import describe

MARKS_MIN = (5, 10, 20, 30, 45, 60)


def read_split(data: Path) -> dict[str, list[str]]:
    """The dataset's split.json: {"train" | "val" | "test": [folder names]}."""
    return {k: [str(n) for n in v] for k, v in json.loads((data / "split.json").read_text()).items()}


def export(data: Path, out: Path, n_test: int) -> None:
    """Legacy DeepH folders (Hamiltonian only) of the train and val parts and the first ``n_test`` test
    structures under ``out/raw/<name>``, and ``out/split.json`` naming them (the driver's exact split)."""
    split = read_split(data)
    split["test"] = split["test"][:n_test]
    for part, names in split.items():
        for name in names:
            folder = out / "raw" / name
            if (folder / "hamiltonians.h5").exists():
                continue
            record = read_record(data / name, require=("hamiltonian",))
            hamiltonian_only = {"hamiltonian": record.matrices["hamiltonian"]}
            write_deeph_legacy(folder, dataclasses.replace(record, matrices=hamiltonian_only))
        print(f"{part}: {len(names)} legacy folders under {out / 'raw'}", flush=True)
    (out / "split.json").write_text(json.dumps(split))


def read_blocks(group: h5py.Group, record) -> dict:
    """One structure's DeepH-E3 blocks ("[R1, R2, R3, i, j]", 1-based, OpenMX order, eV) -> project blocks
    ((R1, R2, R3, i - 1, j - 1), internal order, Hartree)."""
    blocks = {}
    for name, value in group.items():
        r1, r2, r3, i, j = json.loads(name)
        blocks[(r1, r2, r3, i - 1, j - 1)] = np.asarray(value, dtype=np.float64) / HARTREE_TO_EV
    return reorder_blocks(blocks, record.basis, record.structure.symbols, "openmx", to_internal=True)


def dense(blocks: dict, record) -> np.ndarray:
    """[n_ao, n_ao] PySCF-order matrix of a molecule's blocks."""
    return dict_to_dense(blocks, record.basis, record.structure.symbols)


def check_labels(path: Path, records: dict) -> float:
    """Largest |DeepH-E3's label - project's H| (Hartree) over the test subset; raises when the orders or
    units differ (anything above float32 rounding of eV values)."""
    worst = 0.0
    with h5py.File(path, "r") as f:
        for name, record in records.items():
            theirs = dense(read_blocks(f[name], record), record)
            ours = dense(record.matrices["hamiltonian"], record)
            worst = max(worst, float(np.max(np.abs(theirs - ours))))
    scale = max(float(np.max(np.abs(dense(r.matrices["hamiltonian"], r)))) for r in records.values())
    if worst > 1e-6 * scale:
        raise ValueError(f"{path}: DeepH-E3's labels differ from the project's H by {worst:.3e} Ha: order or units")
    return worst


def project_mae(path: Path, records: dict) -> float:
    """MAE (Hartree) of DeepH-E3's predicted H over every entry of the dense H of the test subset."""
    errors = []
    with h5py.File(path, "r") as f:
        for name, record in records.items():
            errors.append(np.abs(dense(read_blocks(f[name], record), record) - dense(record.matrices["hamiltonian"], record)))
    return float(np.mean(errors))


def own_mae_ev(mark: dict, names: list[str]) -> float:
    """The driver's MAE (eV) from DeepH-E3's masked labels, pooled over ``names``."""
    sums = np.array([mark["abs_sum_count"][n] for n in names])
    return float(sums[:, 0].sum() / sums[:, 1].sum())


def elct_at(rows: list[dict], mark_s: float, offset_s: float = 0.0) -> dict | None:
    """The last ELCT curve row whose training CPU seconds plus ``offset_s`` are at most ``mark_s`` (+1 %, so a
    point logged a fraction of a second late still counts); None when there is none or the curve ends before
    the mark (a run stopped early)."""
    cpu = [float(r["train_cpu_s"]) + offset_s for r in rows]
    before = [r for r, c in zip(rows, cpu) if c <= 1.01 * mark_s]
    return before[-1] if before and max(cpu) >= 0.99 * mark_s else None


def cell(row: dict | None) -> str:
    """'MAE uHa (meV) @ CPU-s' of an ELCT curve row."""
    if row is None:
        return "-"
    e = float(row["test_mae_hartree"])
    return f"{e * HARTREE_TO_UHA:.1f} ({e * HARTREE_TO_MEV:.3f}) @ {float(row['train_cpu_s']):.0f} s"


def score(data: Path, work: Path, curve: Path, n_test: int, h0_cpu_s: float) -> None:
    """Table of test H MAE at each CPU mark: ELCT (its curve; also with ``h0_cpu_s`` of H0 preparation added
    to its clock) beside DeepH-E3 (the driver's snapshots, scored here and by the driver)."""
    names = read_split(data)["test"][:n_test]
    records = {n: read_record(data / n, require=("hamiltonian",)) for n in names}
    worst = check_labels(work / "labels.h5", records)
    print(f"DeepH-E3's stored labels of {len(records)} test waters equal the project's H to {worst:.2e} Ha "
          f"({worst * HARTREE_TO_MEV:.2e} meV: float32 eV rounding)")
    marks = json.loads((work / "marks.json").read_text())
    rows = read_curve(curve)
    print(f"machine: {describe()}")
    print(f"test H MAE over all entries of {len(records)} test waters ({names[0]}..{names[-1]}), uHa (meV)")
    print(f"| CPU-min | ELCT | ELCT, H0 ({h0_cpu_s:.0f} CPU-s) counted | DeepH-E3 | DeepH-E3, its own MAE, meV "
          "| DeepH-E3 / ELCT |")
    print("|---:|---:|---:|---:|---:|---:|")
    for mark in MARKS_MIN:
        theirs = next((m for m in marks if m["mark_min"] == mark), None)
        ours = elct_at(rows, mark * 60)
        if theirs:
            d = project_mae(work / theirs["file"], records)
            d_cell = f"{d * HARTREE_TO_UHA:.1f} ({d * HARTREE_TO_MEV:.3f}) @ {theirs['cpu_s']:.0f} s"
            own = f"{own_mae_ev(theirs, names) * 1e3:.3f}"
            ratio = f"{d / float(ours['test_mae_hartree']):.1f}" if ours else "-"
        else:
            d_cell = own = ratio = "-"
        print(f"| {mark} | {cell(ours)} | {cell(elct_at(rows, mark * 60, h0_cpu_s))} | {d_cell} | {own} | {ratio} |")


def plot(curve: Path, work: Path, out_png: Path, h0_cpu_s: float, names: list[str]) -> None:
    """Both learning curves, test MAE (uHa, log) against training CPU minutes; DeepH-E3's pooled over ``names``
    (the driver's sums, equal to the project's scoring: ``score`` prints both)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_curve(curve)
    cpu = np.array([float(r["train_cpu_s"]) for r in rows]) / 60
    mae = np.array([float(r["test_mae_hartree"]) for r in rows]) * HARTREE_TO_UHA
    marks = json.loads((work / "marks.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(cpu, mae, "o-", ms=3, label="ELCT (default recipe)")
    if h0_cpu_s:
        ax.semilogy(cpu + h0_cpu_s / 60, mae, ":", color="C0", lw=1, label="ELCT, H0 preparation counted")
    ax.semilogy([m["cpu_s"] / 60 for m in marks], [own_mae_ev(m, names) / HARTREE_TO_EV * 1e6 for m in marks], "s-",
                color="C3", label="DeepH-E3 (default config)")
    ax.set_xlabel("training CPU minutes (one thread each)")
    ax.set_ylabel("test H MAE (uHa)")
    ax.set_title(f"water-md17, 500 training waters, {len(names)} test: ELCT vs DeepH-E3")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print(f"wrote {out_png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="legacy DeepH folders for DeepH-E3")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--test", type=int, default=100, help="test structures exported (the first of split.json's test)")
    p = sub.add_parser("score", help="ELCT vs DeepH-E3 table")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="the driver's work directory")
    p.add_argument("--elct-curve", type=Path, required=True, help="curve.csv of benchmarks/accuracy.py")
    p.add_argument("--test", type=int, default=100, help="test structures scored (the first of the test split)")
    p.add_argument("--elct-h0-cpu-s", type=float, default=0.0,
                   help="CPU seconds of ELCT's H0 baseline for the train and val structures (a second column)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of both curves (e.g. docs/deephe3_race_water.png)")
    args = parser.parse_args()
    if args.command == "export":
        export(args.data, args.out, args.test)
    else:
        score(args.data, args.work, args.elct_curve, args.test, args.elct_h0_cpu_s)
        if args.plot:
            names = read_split(args.data)["test"][: args.test]
            plot(args.elct_curve, args.work, args.plot, args.elct_h0_cpu_s, names)


if __name__ == "__main__":
    main()

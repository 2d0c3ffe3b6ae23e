"""Learning curves recorded by callbacks of ``elct_jax.train.loop.fit``.

``Curve``: test H MAE against training CPU seconds, appended to ``curve.csv`` of a run directory::

    curve = Curve(run_dir, apply, test_batches, basis.elements, every_cpu_s=120, budget_cpu_s=3600)
    train(config, dataset, callbacks=[curve])      # stops once the budget is spent

CPU seconds are the process's (all threads), the time spent evaluating the curve excluded; a resumed run
continues the clock from the file. Used by benchmarks/accuracy.py and experiments/finetune.py.

``History``: any ``metrics(params)`` (energy errors, ...) every n steps, in memory, with the wall time of
the steps; used by the label-free experiments (experiments/unsupervised_*.py).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.analysis.evaluate import block_errors
from elct_jax.train.loop import EpochEnd

CURVE_FIELDS = ("train_cpu_s", "wall_s", "step", "epoch", "test_mae_hartree", "val_loss")


def read_curve(path: Path) -> list[dict]:
    """Rows of a curve.csv (empty when there is none yet)."""
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


class Curve:
    """Test MAE against training CPU seconds, appended to ``curve.csv``; resumes its clock from the file."""

    def __init__(self, run_dir: Path, apply_fn, batches, elements, every_cpu_s: float, budget_cpu_s: float):
        self.path = run_dir / "curve.csv"
        self.apply_fn, self.batches, self.elements = apply_fn, batches, elements
        self.every, self.budget = every_cpu_s, budget_cpu_s
        rows = read_curve(self.path)
        self.offset = float(rows[-1]["train_cpu_s"]) if rows else 0.0
        self.last = self.offset if rows else -np.inf
        self.cpu0, self.wall0, self.excluded = time.process_time(), time.perf_counter(), 0.0

    def train_cpu(self) -> float:
        return self.offset + time.process_time() - self.cpu0 - self.excluded

    def __call__(self, end: EpochEnd) -> bool:
        cpu = self.train_cpu()
        if cpu - self.last >= self.every or cpu >= self.budget:
            start = time.process_time()
            mae = block_errors(self.apply_fn, end.state.ema_params, self.batches, self.elements).mae()
            self._append(dict(train_cpu_s=round(cpu, 1), wall_s=round(time.perf_counter() - self.wall0, 1),
                              step=end.step, epoch=end.epoch, test_mae_hartree=mae,
                              val_loss=end.row.get("val_loss", "")))
            print(f"  cpu {cpu:8.0f} s  step {end.step:7d}  test MAE {mae * HARTREE_TO_UHA:9.2f} uHa "
                  f"({mae * HARTREE_TO_MEV:.4f} meV)", flush=True)
            self.last = cpu
            self.excluded += time.process_time() - start
        return cpu >= self.budget

    def _append(self, row: dict) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)


class History:
    """``metrics(params) -> {name: scalar}`` and the training loss every ``every`` steps and at ``last_step``,
    the first row at step 0 (``params0``, loss NaN); ``step_seconds``: wall time of each epoch's steps (per
    step with one batch per epoch; the first includes compilation, the metrics are excluded)."""

    def __init__(self, metrics, params0, every: int, last_step: int):
        self.metrics, self.every, self.last_step = metrics, every, last_step
        self.rows, self.step_seconds = [], []
        self._record(0, float("nan"), params0)
        self._clock = time.perf_counter()

    def _record(self, step: int, loss: float, params) -> None:
        self.rows.append(dict(step=step, loss=loss, **{k: float(v) for k, v in self.metrics(params).items()}))

    def __call__(self, end: EpochEnd) -> None:
        self.step_seconds.append(time.perf_counter() - self._clock)
        if end.step % self.every == 0 or end.step == self.last_step:
            self._record(end.step, end.row["train_loss"], end.state.params)
        self._clock = time.perf_counter()

    def arrays(self) -> dict[str, np.ndarray]:
        """{column: [n_rows]} of the recorded rows."""
        return {k: np.array([r[k] for r in self.rows]) for k in self.rows[0]}

"""The closing report of a training run (``elct train``, the demo): best validation MAE (meV, uHa) and its
step, steps, wall and CPU time, the run directory and the best checkpoint, read from the run directory
(``metrics.csv`` and ``checkpoints/``) so that it covers every session of a resumed run."""
from __future__ import annotations

import csv
from pathlib import Path

from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.train.checkpoint import Checkpointer


def run_summary(run_dir: str | Path, final_step: int, wall_s: float, cpu_s: float) -> str:
    """Lines describing the run in ``run_dir`` that ended at ``final_step``; wall_s/cpu_s: seconds of this session
    (CPU: every thread of the process)."""
    lines = [f"finished at step {final_step} ({_duration(wall_s)} wall, {_duration(cpu_s)} CPU this session)"]
    if not str(run_dir):
        return "\n".join([*lines, "  in memory (train.run_dir is empty): nothing was saved"])
    run_dir = Path(run_dir)
    checkpointer = Checkpointer(run_dir)
    try:
        best_step, best_path = checkpointer.best_step(), checkpointer.best_path()
    finally:
        checkpointer.close()
    lines.append(f"  run directory:   {run_dir}")
    row = None if best_step is None else _validated_row(run_dir / "metrics.csv", best_step)
    if row is None:
        lines.append("  no validation result (empty validation split): the latest checkpoint is the model")
        return "\n".join(lines)
    mae = float(row["val_mae"])
    lines.insert(1, f"  best validation: MAE {mae * HARTREE_TO_MEV:.3f} meV ({mae * HARTREE_TO_UHA:.1f} uHa), "
                    f"loss {float(row['val_loss']):.4e}, at step {best_step}")
    lines.append(f"  best checkpoint: {best_path}")
    return "\n".join(lines)


def _validated_row(metrics_csv: Path, step: int) -> dict | None:
    """The last metrics.csv row of ``step`` with a validation loss (None: none)."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open() as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) == step and r["val_loss"] != ""]
    return rows[-1] if rows else None


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min {s} s" if hours else f"{m} min {s} s" if m else f"{seconds:.1f} s"

"""The training loop: epochs of jitted steps, validation, checkpoints, exact resume, NaN guard, logs.

Data order is a pure function of (seed, epoch), so a run resumed from the checkpoint of step s replays
exactly the batches an uninterrupted run would have seen after step s.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from elct_jax.train.checkpoint import Checkpointer
from elct_jax.train.optim import OptimConfig, current_learning_rate, make_optimizer
from elct_jax.train.step import TrainState, init_state, make_eval_step, make_train_step


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/Inf; the last good checkpoint is kept."""


@dataclass(frozen=True)
class LossWeights:
    mae: float = 1.0     # Hamiltonian MAE (Hartree)
    omega: float = 0.0   # Mermin free energy per electron (Hartree)
    sc: float = 0.0      # self-consistency residual |H - F[D(H)]| (Hartree)

    def array(self) -> jnp.ndarray:
        return jnp.array([self.mae, self.omega, self.sc])


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str = "runs/default"
    epochs: int = 100
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every_epochs: int = 1  # the last epoch (and a plateau stop) always checkpoints
    progress: bool = True
    sc_iterations: int = 1  # Roothaan-DIIS steps of the sc target T(H) (1: F[D(H)]; see train.losses)

    def __post_init__(self):
        if self.sc_iterations < 1:
            raise ValueError(f"train.sc_iterations must be >= 1, got {self.sc_iterations}")


def epoch_order(n_batches: int, seed: int, epoch: int) -> np.ndarray:
    """Deterministic permutation of batch indices for one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n_batches)


class MetricsLog:
    """metrics.csv (one row per epoch) and TensorBoard event files under the run directory."""

    def __init__(self, run_dir: Path):
        self._csv_path = run_dir / "metrics.csv"
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # TensorBoard logs are optional; the CSV always exists
            self._tb = None

    def write(self, epoch: int, step: int, row: dict[str, float]) -> None:
        row = {"epoch": epoch, "step": step, **row}
        new = not self._csv_path.exists()
        with self._csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step"):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()


def _mean_metrics(metrics: Sequence[dict]) -> dict[str, float]:
    return {k: float(np.mean([float(m[k]) for m in metrics])) for k in metrics[0]} if metrics else {}


def _check_finite(metrics: dict, step: int, checkpointer: Checkpointer) -> None:
    loss, gnorm = float(metrics["loss"]), float(metrics["grad_norm"])
    if not (math.isfinite(loss) and math.isfinite(gnorm)):
        last = checkpointer.latest_step()
        raise TrainingDiverged(
            f"loss={loss}, grad_norm={gnorm} at step {step}: training stopped; the last good checkpoint "
            f"(step {last}) is kept. Lower the learning rate or check the data."
        )


def fit(apply_fn: Callable, params, train_batches: Sequence, val_batches: Sequence, config: TrainConfig,
        stop_after_steps: int | None = None) -> TrainState:
    """Train, resuming from ``config.run_dir`` if it holds a checkpoint. Returns the final state.

    train_batches/val_batches: sequences of ``Batch`` (already padded to their buckets).
    stop_after_steps: stop (after checkpointing) once this global step is reached; for tests of resume.
    """
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError("no training batches")
    optimizer = make_optimizer(config.optim, steps_per_epoch)
    train_step = make_train_step(apply_fn, optimizer, config.optim.ema_decay, sc_iterations=config.sc_iterations)
    eval_step = make_eval_step(apply_fn, sc_iterations=config.sc_iterations)
    weights = config.weights.array()
    checkpointer = Checkpointer(run_dir)
    state = init_state(params, optimizer)
    if checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
    log = MetricsLog(run_dir)
    step = int(state.step)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=step, desc="training", unit="step",
               disable=not config.progress)
    try:
        for epoch in range(step // steps_per_epoch, config.epochs):
            order = epoch_order(steps_per_epoch, config.seed, epoch)[step - epoch * steps_per_epoch :]
            metrics = []
            for b in order:
                new_state, m = train_step(state, train_batches[b], weights)
                _check_finite(m, step + 1, checkpointer)
                state, step = new_state, step + 1
                metrics.append(m)
                bar.update(1)
                if stop_after_steps is not None and step >= stop_after_steps:
                    checkpointer.save(step, state)
                    return state
            val = _mean_metrics([eval_step(state.params, vb, weights) for vb in val_batches])
            lr = float(current_learning_rate(state.opt_state, config.optim))
            row = {**{f"train_{k}": v for k, v in _mean_metrics(metrics).items()},
                   **{f"val_{k}": v for k, v in val.items()}, "lr": lr}
            log.write(epoch, step, row)
            bar.set_postfix(epoch=epoch, train=f"{row['train_loss']:.3e}", val=f"{val.get('loss', float('nan')):.3e}",
                            lr=f"{lr:.1e}")
            done = lr < config.optim.min_learning_rate or epoch + 1 == config.epochs
            if done or (epoch + 1) % config.checkpoint_every_epochs == 0:
                checkpointer.save(step, state, val_loss=val.get("loss"))
            if done:
                break
    finally:
        bar.close()
        checkpointer.close()
    return state

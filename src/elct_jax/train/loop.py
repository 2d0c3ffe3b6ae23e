"""The training loop: epochs of jitted steps, validation, checkpoints, exact resume, NaN guard, logs.

The one loop of the project: ``elct train``, the demo and the experiments call :func:`fit`. Data order is a
pure function of (seed, epoch), so a run resumed from the checkpoint of step s replays exactly the batches
an uninterrupted run would have seen after step s. A fixed budget of n steps on one batch is
``epochs = n`` (one step per epoch); callbacks see the state after every epoch (per-step metrics then);
``run_dir = ""`` trains in memory (no checkpoints, logs or resume). SIGINT (Ctrl-C) or SIGTERM stops it
after the current step with a checkpoint of that step. The progress bar starts after the first step, whose
compilation is announced and timed on its own, so its rate and ETA are those of the steps.
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from elct_jax.config import TrainConfig
from elct_jax.data.workers import Interrupted, stop_on_signals
from elct_jax.train.checkpoint import Checkpointer
from elct_jax.train.optim import current_learning_rate, make_optimizer
from elct_jax.train.step import LOSS_NAMES, TrainState, init_state, make_eval_step, make_train_step


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/Inf; the last good checkpoint is kept."""


@dataclass(frozen=True)
class EpochEnd:
    """What a callback of :func:`fit` sees after each epoch; ``row`` is the metrics.csv row (val_* only
    in validation epochs). A callback returning True stops training (after a checkpoint)."""

    epoch: int
    step: int
    state: "TrainState"
    row: dict


def epoch_order(n_batches: int, seed: int, epoch: int) -> np.ndarray:
    """Deterministic permutation of batch indices for one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n_batches)


def _header(path: Path) -> list[str]:
    """The column names of an existing CSV file."""
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


class MetricsLog:
    """metrics.csv (one row per epoch) and TensorBoard event files under the run directory."""

    def __init__(self, run_dir: Path):
        self._csv_path = run_dir / "metrics.csv"
        self._columns: list[str] | None = None  # fixed by the first row written (or the file's header)
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # TensorBoard logs are optional; the CSV always exists
            self._tb = None

    def write(self, epoch: int, step: int, row: dict[str, float]) -> None:
        row = {"epoch": epoch, "step": step, **row}
        new = not self._csv_path.exists() or self._csv_path.stat().st_size == 0
        if self._columns is None:  # a resumed run keeps its file's header (an older version's lacks newer columns)
            self._columns = list(row) if new else _header(self._csv_path)
        with self._csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and value != "":  # "": not measured this epoch
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush the TensorBoard events (written in the background every 2 minutes otherwise)."""
        if self._tb is not None:
            self._tb.close()


class RunFiles:
    """A run directory's files: checkpoints (latest, best by validation loss) and metrics logs.
    ema: whether the run keeps a parameter EMA (then written with the latest state)."""

    def __init__(self, run_dir: Path, ema: bool):
        run_dir.mkdir(parents=True, exist_ok=True)
        self._checkpointer, self._log, self._best = Checkpointer(run_dir, ema), MetricsLog(run_dir), _BestState()

    def restore(self, state: TrainState) -> TrainState:
        """The latest checkpoint (the structure of ``state``), or ``state`` when there is none."""
        return state if self._checkpointer.latest_step() is None else self._checkpointer.restore(state)

    def kept(self) -> str:
        step = self._checkpointer.latest_step()
        if step is None:
            return "no checkpoint had been written yet, so nothing was saved"
        return f"the last good checkpoint (step {step}) is kept"

    def offer_best(self, loss: float | None, step: int, params) -> None:
        """``params`` validated at ``step`` with validation ``loss``: kept (written at the next save) if the best."""
        self._best.offer(loss, step, params)

    def write_row(self, epoch: int, step: int, row: dict) -> None:
        self._log.write(epoch, step, row)

    def save(self, step: int, state: TrainState) -> None:
        """The latest checkpoint, and the best state since the last save if there is a new one."""
        self._checkpointer.save(step, state)
        self._best.write(self._checkpointer)

    def close(self) -> None:
        self._log.close()
        self._checkpointer.close()


class InMemory:
    """The files of a run without a run directory (``TrainConfig.run_dir = ""``): none are read or written."""

    def restore(self, state: TrainState) -> TrainState:
        return state

    def kept(self) -> str:
        return "nothing is saved (train.run_dir is empty)"

    def offer_best(self, loss: float | None, step: int, params) -> None:
        pass

    def write_row(self, epoch: int, step: int, row: dict) -> None:
        pass

    def save(self, step: int, state: TrainState) -> None:
        pass

    def close(self) -> None:
        pass


def _epoch_means(metrics: Sequence[dict], first_step: int, files: RunFiles | InMemory) -> dict[str, float]:
    """Means of the per-step metrics of an epoch (one device->host transfer); raises TrainingDiverged
    naming the first step whose loss or gradient norm is not finite."""
    stacked = {k: np.asarray(jnp.stack([m[k] for m in metrics])) for k in metrics[0]}
    bad = ~(np.isfinite(stacked["loss"]) & np.isfinite(stacked["grad_norm"]))
    if bad.any():
        k = int(np.argmax(bad))
        raise TrainingDiverged(
            f"loss={stacked['loss'][k]}, grad_norm={stacked['grad_norm'][k]} at step {first_step + k + 1}: training "
            f"stopped; {files.kept()}. Lower the learning rate or check the data.")
    return {k: float(v.mean()) for k, v in stacked.items()}


def _validate(eval_step: Callable, params, batches: Sequence, weights) -> dict[str, float]:
    if not batches:
        return {}
    metrics = [eval_step(params, b, weights) for b in batches]
    return {k: float(np.mean(np.asarray(jnp.stack([m[k] for m in metrics])))) for k in metrics[0]}


def fit(apply_fn: Callable, params, train_batches: Sequence, val_batches: Sequence, config: TrainConfig,
        stop_after_steps: int | None = None, callbacks: Sequence[Callable[[EpochEnd], bool | None]] = ()) -> TrainState:
    """Train, resuming from ``config.run_dir`` if it holds a checkpoint. Returns the final state.

    train_batches/val_batches: sequences of ``Batch`` (already padded to their buckets).
    stop_after_steps: stop (after checkpointing) once this global step is reached; for tests of resume.
    callbacks: called after every epoch with an :class:`EpochEnd`; one returning True ends training.
    Steps are dispatched without waiting for their results: metrics reach the host once per epoch.
    Training ends after ``config.epochs``, a callback's stop or (plateau schedule) at the lr floor.
    SIGINT (Ctrl-C) or SIGTERM ends it after the current step, with a checkpoint of that step (resuming
    from it equals an uninterrupted run), raising ``Interrupted``; a second signal raises it at once.
    """
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError("no training batches")
    total_steps = config.epochs * steps_per_epoch
    optimizer = make_optimizer(config.optim, steps_per_epoch, total_steps)
    train_step = make_train_step(apply_fn, optimizer, config.optim.ema_decay, sc_iterations=config.sc_iterations)
    eval_step = make_eval_step(apply_fn, sc_iterations=config.sc_iterations)
    weights = config.weights.array()
    files = RunFiles(Path(config.run_dir), config.optim.ema_decay > 0) if config.run_dir else InMemory()
    bar, validated = None, False  # the bar is made after the first step: its rate and ETA leave the compilation out
    saving = "saving a checkpoint of it" if config.run_dir else "nothing is saved: train.run_dir is empty"
    with stop_on_signals(f"stopping after the current step, {saving}") as stop:
        try:
            state = files.restore(init_state(params, optimizer))
            step = int(state.step)
            last_save = time.monotonic()
            if stop.signum is not None:  # while restoring: nothing new to save
                raise Interrupted(stop.signum)
            for epoch in range(step // steps_per_epoch, config.epochs):
                first = step
                order = epoch_order(steps_per_epoch, config.seed, epoch)[step - epoch * steps_per_epoch :]
                metrics = []
                for b in order:
                    if bar is None:
                        with timed_phase("first training step (compiles it)", config.progress):
                            state, m = train_step(state, train_batches[b], weights)
                            release_compile_memory(m)
                        bar = tqdm(total=total_steps, initial=step, desc="training", unit="step",
                                   disable=not config.progress)
                    else:
                        state, m = train_step(state, train_batches[b], weights)
                    step += 1
                    metrics.append(m)
                    bar.update(1)
                    if stop.signum is not None or (stop_after_steps is not None and step >= stop_after_steps):
                        _epoch_means(metrics, first, files)
                        files.save(step, state)
                        if stop.signum is not None:
                            raise Interrupted(stop.signum)
                        return state
                row = {f"train_{k}": v for k, v in _epoch_means(metrics, first, files).items()}
                last_epoch = epoch + 1 == config.epochs
                val = {}
                if last_epoch or (epoch + 1) % config.validate_every_epochs == 0:
                    validated_params = _eval_params(state, config)
                    first_validation = config.progress and not validated
                    with timed_phase("first validation (compiles the evaluation step)", first_validation):
                        val = _validate(eval_step, validated_params, val_batches, weights)
                        if not validated:
                            release_compile_memory(val)
                            validated = True
                    files.offer_best(val.get("loss"), step, validated_params)
                row.update({f"val_{k}": val.get(k, "") for k in (*LOSS_NAMES, "loss")})  # same columns every epoch
                lr = float(current_learning_rate(state.opt_state, step, config.optim, total_steps))
                row["lr"] = lr
                files.write_row(epoch, step, row)
                bar.set_postfix(epoch=epoch, train=f"{row['train_loss']:.3e}",
                                val=f"{val.get('loss', float('nan')):.3e}", lr=f"{lr:.1e}")
                stopped = any([bool(cb(EpochEnd(epoch, step, state, row))) for cb in callbacks])
                floor = config.optim.schedule == "plateau" and lr < config.optim.min_learning_rate
                done = stopped or floor or last_epoch or stop.signum is not None
                if done or time.monotonic() - last_save >= config.checkpoint_seconds:
                    files.save(step, state)
                    last_save = time.monotonic()
                if stop.signum is not None:
                    raise Interrupted(stop.signum)
                if done:
                    break
        finally:
            if bar is not None:
                bar.close()
            files.close()  # waits for the checkpoint being written
    return state


@contextlib.contextmanager
def timed_phase(what: str, say: bool = True, file=None):
    """Print "<what> ..." before the block and "<what>: <wall time> s" after it, when ``say``; on ``file``
    (default: stderr, with the progress bars)."""
    file = sys.stderr if file is None else file
    if say:
        tqdm.write(f"{what} ...", file=file)
    t0 = time.perf_counter()
    yield
    if say:
        tqdm.write(f"{what}: {time.perf_counter() - t0:.1f} s", file=file)


def release_compile_memory(result) -> None:
    """Wait for ``result`` (the first call of a freshly compiled function), then hand the heap memory
    the compiler freed back to the OS (glibc keeps it otherwise: ~500 MB per compiled train step of the
    small preset). No-op where glibc's malloc_trim is unavailable."""
    jax.block_until_ready(result)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_all_compiled(result) -> None:
    """Wait for ``result``, then drop every compiled function JAX holds (``jax.clear_caches``) and hand the freed
    heap back to the OS: after a network's eager initialisation, which compiles one executable per operation
    (~1 GB for the small preset) that training never runs again. Functions used later simply compile anew."""
    jax.block_until_ready(result)
    jax.clear_caches()
    release_compile_memory(result)


def _eval_params(state: TrainState, config: TrainConfig):
    """The parameters that are validated (and shipped): the EMA when one is kept."""
    return state.ema_params if config.optim.ema_decay > 0 else state.params


class _BestState:
    """The validated parameters with the lowest validation loss so far, and their step (held in memory;
    arrays are immutable)."""

    def __init__(self):
        self.loss, self.step, self.params, self.written = math.inf, 0, None, True

    def offer(self, loss: float | None, step: int, params) -> None:
        if loss is not None and math.isfinite(loss) and loss < self.loss:
            self.loss, self.step, self.params, self.written = loss, step, params, False

    def write(self, checkpointer: Checkpointer) -> None:
        if not self.written:
            checkpointer.save_best(self.step, self.params, self.loss)
            self.written = True

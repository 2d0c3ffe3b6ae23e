"""orbax checkpoints of a run: ``latest`` (the training state, every save) and ``best`` (the validated
parameters with the lowest validation loss).

Layout under the run directory::

    checkpoints/latest/<step>/   what resume needs: parameters, optimizer state, step (and the EMA if one is kept)
    checkpoints/best/<step>/     the parameters that were validated (the EMA when one is kept)

Only one of each is kept: orbax deletes the previous step after the new one is committed (renamed into
place), so a write that is cut short leaves the previous checkpoint. Without an EMA the ``ema_params``
of a TrainState equal its ``params`` and are not written. A NaN state is never saved: the loop checks the
loss before calling :meth:`Checkpointer.save`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a run's TrainState and best parameters with orbax (no pickle).

    ema: whether the run keeps a parameter EMA (``OptimConfig.ema_decay > 0``)."""

    def __init__(self, run_dir: str | Path, ema: bool = False):
        root = Path(run_dir).absolute() / "checkpoints"
        self._ema = ema
        self._latest = ocp.CheckpointManager(
            root / "latest", options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        )
        self._best = ocp.CheckpointManager(
            root / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, best_fn=lambda m: m["val_loss"], best_mode="min"
            ),
        )

    def save(self, step: int, state) -> None:
        """Save the TrainState ``state`` as the latest checkpoint of ``step``; returns once the arrays are copied,
        the files are written in the background (:meth:`wait` or :meth:`close` to finish)."""
        self._latest.save(step, args=ocp.args.StandardSave(self._stored(state)), force=True)

    def save_best(self, step: int, params, val_loss: float) -> None:
        """Offer ``params`` (those validated) as the best checkpoint; orbax keeps the lowest ``val_loss``."""
        self._best.save(step, args=ocp.args.StandardSave(params), metrics={"val_loss": float(val_loss)}, force=True)

    def wait(self) -> None:
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        return self._best.best_step()

    def best_path(self) -> Path | None:
        """The folder of the best checkpoint (None: there is none)."""
        step = self.best_step()
        return None if step is None else Path(self._best.directory) / str(step)

    def restore(self, state):
        """The latest checkpoint as a TrainState of the structure/dtypes of ``state`` (arrays or ShapeDtypeStructs)."""
        step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self._latest.directory}")
        stored = self._latest.restore(step, args=ocp.args.StandardRestore(_abstract(self._stored(state))))
        return state.__class__(**{**stored, "ema_params": stored["ema_params"] if self._ema else stored["params"]})

    def restore_best(self, params):
        """The best checkpoint's parameters, in the structure/dtypes of ``params``."""
        step = self.best_step()
        if step is None:
            raise FileNotFoundError(f"no best checkpoint under {self._best.directory}")
        try:
            return self._best.restore(step, args=ocp.args.StandardRestore(_abstract(params)))
        except ValueError:  # written before the best checkpoint held parameters only: a whole training state
            stored = self._best.restore(step, args=ocp.args.StandardRestore())
            if not isinstance(stored, dict) or "params" not in stored:
                raise
            old = stored["ema_params"] if self._ema else stored["params"]
            return jax.tree.map(lambda a, p: jnp.asarray(a, p.dtype), old, params)

    def close(self) -> None:
        """Finish pending writes and release the managers (also after Ctrl-C: orbax commits a checkpoint
        by renaming its finished directory, so an interrupted write is never restored)."""
        self.wait()
        self._latest.close()
        self._best.close()

    def _stored(self, state) -> dict:
        """What is written of a TrainState: its fields, less ``ema_params`` when no EMA is kept."""
        fields = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
        return {**fields, "ema_params": state.ema_params} if self._ema else fields


def drop_training_state(run_dir: str | Path) -> int:
    """Delete the run's ``latest`` checkpoint (what resuming needs), keeping the best parameters: for a finished
    run that will not be trained further. A run without a best checkpoint (no validation) keeps its latest one,
    its only model. Returns the bytes freed."""
    checkpoints = Path(run_dir) / "checkpoints"
    latest, best = checkpoints / "latest", checkpoints / "best"
    if not latest.is_dir() or not _has_step(best):
        return 0
    freed = sum(f.stat().st_size for f in latest.rglob("*") if f.is_file())
    shutil.rmtree(latest)
    return freed


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run has its best parameters and no training state left (see :func:`drop_training_state`;
    an empty ``latest`` folder, as opening the run for reading leaves, holds none)."""
    checkpoints = Path(run_dir) / "checkpoints"
    return _has_step(checkpoints / "best") and not _has_step(checkpoints / "latest")


def _has_step(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)

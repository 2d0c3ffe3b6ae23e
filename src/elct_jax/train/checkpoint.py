"""orbax checkpoints of the training state: ``latest`` (every save) and ``best`` (lowest validation loss).

Layout under the run directory::

    checkpoints/latest/<step>/   the last two saves (resume from the newest)
    checkpoints/best/<step>/     the best one by validation loss

A NaN state is never saved: the loop checks the loss before calling :meth:`Checkpointer.save`.
"""
from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a pytree training state with orbax (no pickle)."""

    def __init__(self, run_dir: str | Path):
        root = Path(run_dir).absolute() / "checkpoints"
        self._latest = ocp.CheckpointManager(
            root / "latest", options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
        )
        self._best = ocp.CheckpointManager(
            root / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, best_fn=lambda m: m["val_loss"], best_mode="min"
            ),
        )

    def save(self, step: int, state) -> None:
        """Save ``state`` as the latest checkpoint of ``step``; returns once the arrays are copied, the
        files are written in the background (:meth:`wait` or :meth:`close` to finish)."""
        self._latest.save(step, args=ocp.args.StandardSave(state), force=True)

    def save_best(self, step: int, state, val_loss: float) -> None:
        """Offer ``state`` as the best checkpoint; orbax keeps the one with the lowest ``val_loss``."""
        self._best.save(step, args=ocp.args.StandardSave(state), metrics={"val_loss": float(val_loss)}, force=True)

    def wait(self) -> None:
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def restore(self, abstract_state, which: str = "latest", step: int | None = None):
        """Restore into the structure/dtypes of ``abstract_state`` (a pytree of arrays or ShapeDtypeStructs)."""
        manager = {"latest": self._latest, "best": self._best}[which]
        if step is None:
            step = manager.best_step() if which == "best" else manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no {which!r} checkpoint under {manager.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        """Finish pending writes and release the managers (also after Ctrl-C: orbax commits a checkpoint
        by renaming its finished directory, so an interrupted write is never restored)."""
        self.wait()
        self._latest.close()
        self._best.close()

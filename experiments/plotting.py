"""Figures shared by the experiments: 2 x 2 panels of training or optimisation curves (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def panel_grid(figsize=(10, 7)):
    """(fig, axes [2, 2]) with a shared step axis, on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(2, 2, figsize=figsize, sharex=True)


def save(fig, path: Path, title: str, xlabel: str = "training step") -> None:
    """Label the bottom axes, add the title, write ``path`` (130 dpi, folders created) and say so."""
    for ax in fig.axes[2:]:
        ax.set_xlabel(xlabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    print(f"\nsaved {path}")


def training_curves(histories: dict, panels, path: Path, title: str, hline=None, vline=None) -> None:
    """One log-scale panel per (key, scale, label) in ``panels`` (four), one line per mode of ``histories``
    (mode -> dict with "step" and the keys, numpy arrays): |history[key]| * scale against the step.
    hline: (key, value, label) drawn on that key's panel; vline: (step, label) drawn on every panel."""
    fig, axes = panel_grid()
    for ax, (key, scale, label) in zip(axes.ravel(), panels):
        for i, (mode, h) in enumerate(histories.items()):
            ax.semilogy(h["step"], np.maximum(np.abs(h[key]) * scale, 1e-12), "-", color=f"C{i}", label=mode)
        if hline is not None and hline[0] == key:
            ax.axhline(max(abs(hline[1]), 1e-12), color="k", ls=":", lw=1, label=hline[2])
        if vline is not None:
            ax.axvline(vline[0], color="gray", ls="--", lw=1, label=vline[1])
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 1].legend(fontsize=8)
    save(fig, path, title)

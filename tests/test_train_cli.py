"""`elct train` as a user runs it, in a subprocess on tiny STO-3G water data: SIGTERM and then Ctrl-C (SIGINT)
mid-run (checkpoints written every epoch, so a signal often lands in a save) stop it with one message, no
traceback and exit status 143 / 130; re-running the command resumes and ends with exactly the parameters of an
uninterrupted run, and with the summary (best validation MAE, its step, times, run directory, best checkpoint).
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from ai2dft.pyscf_bridge.labels import DFTSettings
from ai2dft.units import HARTREE_TO_MEV
from elct_jax.data.generate import Recipe, generate_dataset
from elct_jax.geometry.structure import Structure
from elct_jax.train.checkpoint import Checkpointer
from elct_jax.train.saved_model import load_model

WATER = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
EPOCHS, STEPS_PER_EPOCH = 150, 2  # 2 training structures, batch 1: long enough to be stopped mid-run


def _toml(data: Path, run_dir: Path) -> str:
    return f"""[data]
path = "{data}"
cutoff_ang = 5.0
batch_size = 1
split = [0.5, 0.25, 0.25]

[model]
preset = "tiny"
dtype = "float64"
l_max = 2

[train]
run_dir = "{run_dir}"
epochs = {EPOCHS}
checkpoint_seconds = 0.0

[train.optim]
learning_rate = 1e-3
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cli")
    generate_dataset(WATER, Recipe("random", sigma_ang=0.03, dft=DFTSettings(basis="sto-3g", xc="lda", grid_level=3)),
                     root / "data", n_structures=4, n_workers=0, seed=1, progress=False)
    for name in ("full", "cut"):
        (root / f"{name}.toml").write_text(_toml(root / "data", root / name))
    return root


def _elct_train(toml: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "elct_jax.cli", "train", str(toml)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _stop_mid_run(toml: Path, run_dir: Path, signum: int, after_rows: int) -> tuple[int, str]:
    """Start `elct train`, send ``signum`` once metrics.csv has more than ``after_rows`` epoch rows; returns
    (exit status, stderr)."""
    process = _elct_train(toml)
    metrics = run_dir / "metrics.csv"
    deadline = time.monotonic() + 600
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > after_rows + 1):  # + header
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)  # promptly: a step and a checkpoint write
    return process.returncode, err


def _params(run_dir: Path):
    return jax.tree.leaves(load_model(run_dir, which="latest").params)


@pytest.mark.slow  # four elct processes, each compiling the step: ~2 min unloaded; run with -m slow
def test_sigterm_and_ctrl_c_stop_cleanly_and_the_rerun_resumes_exactly(runs):
    full = _elct_train(runs / "full.toml")  # the uninterrupted run, alongside
    status, err = _stop_mid_run(runs / "cut.toml", runs / "cut", signal.SIGTERM, after_rows=2)
    assert status == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "SIGTERM received: stopping after the current step, saving a checkpoint of it" in err
    assert f"elct train: stopped by SIGTERM; the training state is in {runs / 'cut'}/checkpoints/latest" in err
    assert "first training step (compiles it) ..." in err  # 11b: the compile is announced before the bar
    checkpointer = Checkpointer(runs / "cut")
    first_stop = checkpointer.latest_step()
    checkpointer.close()
    assert 3 * STEPS_PER_EPOCH <= first_stop < EPOCHS * STEPS_PER_EPOCH

    rows = len((runs / "cut" / "metrics.csv").read_text().splitlines()) - 1
    status, err = _stop_mid_run(runs / "cut.toml", runs / "cut", signal.SIGINT, after_rows=rows + 1)
    assert status == 128 + signal.SIGINT and "Traceback" not in err, err
    assert "SIGINT received" in err and "stopped by SIGINT" in err
    checkpointer = Checkpointer(runs / "cut")
    second_stop = checkpointer.latest_step()
    checkpointer.close()
    assert first_stop < second_stop < EPOCHS * STEPS_PER_EPOCH

    resumed = _elct_train(runs / "cut.toml")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    full_out, full_err = full.communicate(timeout=900)
    assert full.returncode == 0, full_err
    for a, b in zip(_params(runs / "full"), _params(runs / "cut"), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # 11a: the summary names the best validation MAE (meV and uHa), its step, times and the best checkpoint
    assert f"elct train: finished at step {EPOCHS * STEPS_PER_EPOCH} (" in out and " CPU this session)" in out
    best = re.search(r"best validation: MAE (\d+\.\d+) meV \((\d+\.\d) uHa\), loss \S+, at step (\d+)", out)
    assert best is not None, out
    assert float(best[2]) == pytest.approx(float(best[1]) / HARTREE_TO_MEV * 1e6, rel=1e-3, abs=0.06)
    path = re.search(r"best checkpoint: (\S+)", out)[1]
    assert Path(path) == runs / "cut" / "checkpoints" / "best" / best[3] and Path(path).is_dir()
    assert f"run directory:   {runs / 'cut'}" in out
    full_best = re.search(r"best validation: MAE (\d+\.\d+) meV", full_out)
    assert full_best[1] == best[1]  # the same validation history as the uninterrupted run

"""`elct demo`, the README's main job, end to end on a shortened schedule (slow: PySCF labels + two
compilations of the `small` preset, minutes on 2 cores)."""
import csv
import re

import jax
import numpy as np
import pytest

from elct_jax.cli.main import main
from elct_jax.train.saved_model import load_model


@pytest.mark.slow
def test_demo_runs_end_to_end_and_fine_tuning_lowers_the_energy_error(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-structures", "5", "--epochs", "30", "--finetune-epochs", "10",
            "--workers", "0"]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    rows = {line[:26].strip(): line[26:].split() for line in printed.splitlines()
            if line.startswith(("supervised (MAE)", "+ label-free"))}
    assert set(rows) == {"supervised (MAE)", "+ label-free (Omega, SC)"}, printed
    values = {name: np.array(v, dtype=float) for name, v in rows.items()}  # MAE meV, uHa, MAE* meV, dE meV, dE uHa
    assert all(np.all(np.isfinite(v)) for v in values.values())
    assert values["+ label-free (Omega, SC)"][3] < values["supervised (MAE)"][3]  # Omega + SC lowers E_KS[D(H)]
    for run in ("supervised", "label_free"):
        assert (out / run / "model.json").is_file() and (out / run / "checkpoints").is_dir()
        with (out / run / "metrics.csv").open() as fh:
            assert len(list(csv.DictReader(fh))) > 0
        # a finished demo run keeps its best parameters alone (the training state for resuming is deleted)
        params_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(load_model(out / run).params))
        on_disk = sum(f.stat().st_size for f in (out / run / "checkpoints").rglob("*") if f.is_file())
        assert not any((out / run / "checkpoints" / "latest").glob("*"))
        assert on_disk < 1.1 * params_bytes, (on_disk, params_bytes)
    # every stage says what it does and how long it took; so do the Hessian and the first compilation
    for stage in ("[1/4] PySCF labels", "[2/4] supervised training", "[3/4] label-free fine-tuning", "[4/4] test-set"):
        assert re.search(re.escape(stage) + r".*: \d+\.\d s$", printed, re.MULTILINE), printed
    assert "best validation: MAE" in printed and "best checkpoint: " in printed  # each run's summary
    for phase in ("computing the Hessian of H2O", "first training step (compiles it): ",
                  "reading the data and building the DFT system of each structure: "):
        assert phase in captured.err, captured.err

    # a second run trains nothing again and prints the same errors
    assert main(args) == 0
    again = capsys.readouterr().out
    assert again.count("already trained: ") == 2 and "best validation: MAE" not in again, again
    assert [line for line in again.splitlines() if line.startswith(("supervised (MAE)", "+ label-free"))] == \
        [line for line in printed.splitlines() if line.startswith(("supervised (MAE)", "+ label-free"))]

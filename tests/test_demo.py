"""`elct demo`, the README's main job, end to end on a shortened schedule (slow: PySCF labels + two
compilations of the `small` preset, minutes on 2 cores)."""
import csv

import numpy as np
import pytest

from elct_jax.cli.main import main


@pytest.mark.slow
def test_demo_runs_end_to_end_and_fine_tuning_lowers_the_energy_error(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-structures", "5", "--epochs", "30", "--finetune-epochs", "10",
                 "--workers", "0"]) == 0
    printed = capsys.readouterr().out
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

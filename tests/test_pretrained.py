"""Exported and pretrained models: export/load round trip, refusal of truncated or mismatched files, unknown
elements, fine-tuning from an exported model on data with a subset of its elements, basis mismatches.

Real data: two molecules (water, methane) at LDA/STO-3G from PySCF, packed into mixed-size batches."""
from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.config import DataConfig, OptimConfig, RadialConfig, RunConfig, TrainConfig, preset
from elct_jax.data.generate import Recipe, generate_dataset
from elct_jax.inference.predict import predict_blocks
from elct_jax.train.saved_model import PARAMS_FILE, export_model, load_model, load_pretrained
from elct_jax.geometry.structure import Structure
from elct_jax.train.run import prepare_data, train

WATER = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
METHANE = Structure(("C", "H", "H", "H", "H"), [[0, 0, 0], [0.629, 0.629, 0.629], [-0.629, -0.629, 0.629],
                                                [-0.629, 0.629, -0.629], [0.629, -0.629, -0.629]])
FAST = DFTSettings(basis="sto-3g", xc="lda", grid_level=3)


def _generate(root, dft=FAST, molecules=(("water", WATER), ("methane", METHANE)), n=3):
    for name, base in molecules:
        generate_dataset(base, Recipe("random", sigma_ang=0.03, dft=dft), root / name, n_structures=n, n_workers=0,
                         seed=1, progress=False)
    return root


def _config(data, run_dir, init_from="", epochs=2):
    return RunConfig(data=DataConfig(path=str(data), cutoff_ang=5.0, batch_size=2, split=(0.5, 0.25, 0.25)),
                     model=preset("tiny", dtype="float64", l_max=2, radial=RadialConfig(cutoff_ang=4.0)),
                     train=TrainConfig(run_dir=str(run_dir), init_from=init_from, epochs=epochs, progress=False,
                                       optim=OptimConfig(learning_rate=1e-3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    data = _generate(root / "data")
    train(_config(data, root / "run"))
    model = load_model(root / "run")
    assert model.config.radial.cutoff_ang == 5.0  # a fresh network's radial basis reaches the 5 A graph cutoff
    export_model(model, root / "exported", card={"description": "test model"})
    return root, data, model


def test_export_round_trip_predicts_identically(exported):
    root, _, model = exported
    again = load_model(root / "exported")
    assert again.card == {"description": "test model"} and again.basis == model.basis
    assert again.baseline == model.baseline is not None  # molecules carry H0, the export keeps its settings
    for x, y in zip(jax.tree.leaves(model.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(x, y)  # the parameters come back bit for bit
    a, b = predict_blocks(model, METHANE, dense=True), predict_blocks(again, METHANE, dense=True)
    # H0 (the baseline) is rebuilt by PySCF on a DFT grid at each call; threaded grid sums differ in the last bit
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a, a.T, atol=1e-12)


def test_truncated_or_mismatched_parameter_file_is_refused(exported, tmp_path):
    root, _, _ = exported
    bad = tmp_path / "truncated"
    bad.mkdir()
    (bad / "model.json").write_text((root / "exported" / "model.json").read_text())
    data = (root / "exported" / PARAMS_FILE).read_bytes()
    (bad / PARAMS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(bad)
    info = json.loads((root / "exported" / "model.json").read_text())
    info["model"]["channels"] *= 2  # another architecture, same (intact) file
    (bad / "model.json").write_text(json.dumps(info))
    (bad / PARAMS_FILE).write_bytes(data)
    with pytest.raises(ValueError, match="does not match the model config"):
        load_model(bad)


def test_unknown_element_and_unknown_model_name_are_named(exported):
    root, _, _ = exported
    model = load_model(root / "exported")
    ammonia = Structure(("N", "H", "H", "H"), [[0, 0, 0], [0.94, 0, 0.38], [-0.47, 0.81, 0.38], [-0.47, -0.81, 0.38]])
    with pytest.raises(ValueError, match=r"\['N'\] unknown to .*C, H, O"):
        predict_blocks(model, ammonia)
    with pytest.raises(ValueError, match="universal-mol-v1"):
        load_pretrained("no-such-model")


def test_fine_tuning_from_an_exported_model_keeps_its_network_and_elements(exported, tmp_path):
    root, data, model = exported
    config = _config(data / "water", tmp_path / "ft", init_from=str(root / "exported"))
    config = dataclasses.replace(config, model=preset("small"))  # replaced by the start model's network
    train(config)
    tuned = load_model(tmp_path / "ft")
    assert tuned.basis == model.basis and tuned.config == model.config
    assert np.all(np.isfinite(predict_blocks(tuned, METHANE, dense=True)))  # still knows carbon


def test_fine_tuning_data_in_another_basis_names_the_element_and_both_bases(exported, tmp_path):
    root, _, _ = exported
    other = _generate(tmp_path / "data", DFTSettings(basis="6-31g", xc="lda", grid_level=3), (("water", WATER),), 2)
    with pytest.raises(ValueError, match=r"basis of H: the model has sto-3g .* the data 6-31g"):
        prepare_data(_config(other, tmp_path / "run", init_from=str(root / "exported")))


def test_mixed_sizes_are_packed_to_about_equal_batches_and_one_size_to_batch_size(exported):
    from elct_jax.geometry.basis import OrbitalBasis
    from elct_jax.data.dataset_dir import read_dataset
    from elct_jax.data.loader import make_example, pack_groups

    _, data, _ = exported
    records = read_dataset(data)
    basis = OrbitalBasis.from_pyscf("sto-3g", ("C", "H", "O"))
    examples = [make_example(r, basis, 5.0) for r in records]
    sizes = {len(ex.symbols) for ex in examples}
    assert sizes == {3, 5}
    mixed = [ex for pair in zip(examples[:3], examples[3:]) for ex in pair] * 3  # 18 examples, alternating sizes
    groups = pack_groups(mixed, 2)
    assert [ex for g in groups for ex in g] == mixed  # every example once, in order
    edges = [sum(len(ex.graph.senders) for ex in g) for g in groups]
    mean_edges = np.mean([len(ex.graph.senders) for ex in mixed])
    assert max(edges) <= 2 * mean_edges and min(len(g) for g in groups) >= 1
    water = [ex for ex in mixed if len(ex.symbols) == 3]
    assert [len(g) for g in pack_groups(water, 4)] == [4, 4, 1]



def test_predict_compare_matches_an_independent_pyscf_run(exported, tmp_path, capsys):
    """`elct predict --compare`: the DFT column is PySCF's own SCF, the ELCT column the eigenvalues of H_pred."""
    import scipy.linalg
    from pyscf import dft

    from ai2dft.pyscf_bridge.labels import build_molecule
    from elct_jax.cli.main import main
    from elct_jax.analysis.dft_check import compare_with_dft

    root, _, _ = exported
    model = load_model(root / "exported")
    result = compare_with_dft(model, WATER)
    mf = dft.RKS(build_molecule(WATER, FAST), xc="lda")
    mf = mf.density_fit() if FAST.density_fit else mf
    mf.grids.level, mf.conv_tol = 3, 1e-12
    mf.kernel()
    n_occ = mf.mol.nelectron // 2
    # orbital energies of two SCFs converged to an energy tolerance t agree to ~sqrt(t): 1e-5 Ha at labels' 1e-10
    assert result.dft.homo == pytest.approx(mf.mo_energy[n_occ - 1], abs=1e-5)
    assert result.dft.lumo == pytest.approx(mf.mo_energy[n_occ], abs=1e-5)
    H = predict_blocks(model, WATER, dense=True)
    eps = scipy.linalg.eigh(H, mf.get_ovlp(), eigvals_only=True)
    assert result.predicted.homo == pytest.approx(eps[n_occ - 1], abs=1e-9)
    assert result.predicted.lumo == pytest.approx(eps[n_occ], abs=1e-9)
    assert result.errors.mae == pytest.approx(np.mean(np.abs(H - mf.get_fock())), abs=1e-5)
    assert result.errors.energy > -1e-7  # variational: no density of this basis lies below the SCF minimum
    WATER.to_ase().write(tmp_path / "water.xyz")
    main(["predict", "--model", str(root / "exported"), str(tmp_path / "water.xyz"), "--out", str(tmp_path / "out"),
          "--compare"])
    out = capsys.readouterr().out
    assert "PySCF lda/sto-3g" in out and "gap (eV)" in out and (tmp_path / "out" / "hamiltonian.h5").exists()
    with pytest.raises(ValueError, match="no level of theory"):
        compare_with_dft(dataclasses.replace(model, baseline=None), WATER)


def test_shipped_universal_model_loads_in_one_line_and_keeps_its_card_on_a_held_out_molecule(tmp_path, capsys):
    """universal-mol-v1 from the package: its card is complete and its held-out accuracy holds on a fresh
    PySCF PBE/def2-SVP calculation of acetamide at the G2 geometry (a molecule it never saw)."""
    from ase.collections import g2

    from elct_jax.cli.main import main
    from elct_jax.analysis.dft_check import compare_with_dft

    model = load_pretrained("universal-mol-v1")
    card = model.card
    assert card["name"] == "universal-mol-v1" and card["elements"] == list(model.basis.elements)
    assert card["level_of_theory"]["xc"] == model.baseline["xc"] == "pbe" and model.basis.name == "def2-svp"
    assert {"all", "onsite", "offsite", "offsite C-H"} <= set(card["test_mae_uHa"])
    acetamide = Structure.from_ase(g2["CH3CONH2"])
    result = compare_with_dft(model, acetamide)
    claimed = card["heldout_test_uHa"]["CH3CONH2"]["mae_uHa"] * 1e-6  # Hartree, over 6 displaced acetamides
    assert result.errors.mae < 2 * claimed  # one geometry may fall either side of the mean; 2x is far outside
    assert result.errors.energy > -1e-7
    acetamide.to_ase().write(tmp_path / "acetamide.xyz")
    main(["predict", "--model", "universal-mol-v1", str(tmp_path / "acetamide.xyz"), "--out", str(tmp_path / "h")])
    assert "wrote" in capsys.readouterr().out and (tmp_path / "h" / "hamiltonian.h5").exists()


def test_predict_writes_a_folder_deeph_tools_read_and_evaluate_scores_any_record(exported, tmp_path, capsys):
    """`elct predict` writes H, S (PySCF's own overlap) and the occupation; `elct evaluate` scores a folder of
    the project and the same folder as another DeepH tool leaves it (no elct entry: no level of theory, so no
    energy error) alike, over a list-file split, with per-structure CSV rows."""
    import csv
    import shutil

    from pyscf import gto

    from elct_jax.cli.main import main
    from elct_jax.data.deeph_dock import read_deeph_dock
    from elct_jax.hamiltonian.blocks import dict_to_dense

    root, data, _ = exported
    model = load_model(root / "exported")
    WATER.to_ase().write(tmp_path / "water.xyz")
    assert main(["predict", "--model", str(root / "exported"), str(tmp_path / "water.xyz"), "--out",
                 str(tmp_path / "pred")]) == 0
    record = read_deeph_dock(tmp_path / "pred")
    assert json.loads((tmp_path / "pred" / "info.json").read_text())["occupation"] == 10
    mol = gto.M(atom=[[s, tuple(p)] for s, p in zip(WATER.symbols, WATER.positions_ang)], basis="sto-3g", verbose=0)
    S = dict_to_dense(record.matrices["overlap"], model.basis, WATER.symbols)
    np.testing.assert_allclose(S, mol.intor("int1e_ovlp"), atol=1e-12)
    H = dict_to_dense(record.matrices["hamiltonian"], model.basis, WATER.symbols)
    np.testing.assert_allclose(H, predict_blocks(model, WATER, dense=True), atol=1e-12)

    labelled = sorted((data / "water").rglob("info.json"))[0].parent
    shutil.copytree(labelled, tmp_path / "ds" / "ours")
    shutil.copytree(labelled, tmp_path / "ds" / "foreign")
    info = json.loads((tmp_path / "ds" / "foreign" / "info.json").read_text())
    info.pop("elct"), info.pop("basis")
    (tmp_path / "ds" / "foreign" / "info.json").write_text(json.dumps(info))
    (tmp_path / "split.txt").write_text("foreign\nours\n")
    assert main(["evaluate", "--model", str(root / "exported"), str(tmp_path / "ds"), "--split",
                 str(tmp_path / "split.txt"), "--csv", str(tmp_path / "errors.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "errors.csv")))
    assert [r["structure"] for r in rows] == ["foreign", "ours"]
    ref = read_deeph_dock(tmp_path / "ds" / "ours")
    H_ref = dict_to_dense(ref.matrices["hamiltonian"], model.basis, ref.structure.symbols)
    expected = np.mean(np.abs(predict_blocks(model, ref.structure, dense=True) - H_ref)) * 27211.386245988
    assert float(rows[0]["h_mae_meV"]) == pytest.approx(expected, rel=1e-6)
    assert float(rows[1]["h_mae_meV"]) == pytest.approx(expected, rel=1e-6)
    assert rows[0]["energy_error_meV"] == "" and float(rows[1]["energy_error_meV"]) > -1e-4
    assert "mean of 2" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(root / "exported"), str(tmp_path / "ds"), "--split", "test"]) == 2
    assert "split.json: file is missing" in capsys.readouterr().err


def test_elct_train_that_diverges_exits_1_with_one_message(exported, tmp_path, capsys):
    """A learning rate of 1e300 sends the parameters to ~1e300 in the first step, so the loss is non-finite in the
    first epoch: `elct train` says so in one line (TrainingDiverged, the step, that nothing was saved) and exits 1,
    no traceback. The network, data and split are the `exported` fixture's (float64), so the initialisation and
    prediction compiled there are reused and only the step (another learning rate) compiles again."""
    from elct_jax.cli.main import main

    _, data, _ = exported
    toml = tmp_path / "run.toml"
    toml.write_text(f'[data]\npath = "{data}"\ncutoff_ang = 5.0\nbatch_size = 2\nsplit = [0.5, 0.25, 0.25]\n'
                    f'[model]\npreset = "tiny"\ndtype = "float64"\nl_max = 2\n'
                    f'[train]\nrun_dir = "{tmp_path / "run"}"\nepochs = 3\nprogress = false\n'
                    f'[train.optim]\nlearning_rate = 1e300\n')
    assert main(["train", str(toml)]) == 1
    err = capsys.readouterr().err
    assert "elct train: TrainingDiverged:" in err and "nothing was saved" in err and "Traceback" not in err

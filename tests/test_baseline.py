"""The zeroth-step baseline H0 = F[D_minao]: labels against a fresh PySCF build, add-h0 on older data,
training targets H - H0, the full H in the energy terms, and predictions that add H0 back."""
from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from pyscf import dft, gto

from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.config import DataConfig, LossWeights, RunConfig, preset
from elct_jax.data.baseline import BASELINE, add_baseline
from elct_jax.data.deeph_dock import read_deeph_dock
from elct_jax.data.generate import Recipe, generate_dataset
from elct_jax.data.loader import make_example
from elct_jax.hamiltonian.blocks import dense_to_dict
from elct_jax.nn.model import make_predict_fn
from elct_jax.inference.predict import predict_blocks
from elct_jax.geometry.structure import Structure
from elct_jax.train.run import prepare_data
from elct_jax.train.saved_model import TrainedModel

WATER = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
FAST = DFTSettings(basis="sto-3g", xc="lda", grid_level=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("h0") / "data"
    generate_dataset(WATER, Recipe("random", sigma_ang=0.03, dft=FAST), root, n_structures=3, n_workers=0, seed=5,
                     progress=False)
    return root


def _fresh_h0(structure: Structure) -> np.ndarray:
    mol = gto.M(atom=list(zip(structure.symbols, structure.positions_ang.tolist())), basis=FAST.basis, verbose=0)
    mf = dft.RKS(mol, xc=FAST.xc).density_fit()
    mf.grids.level = FAST.grid_level
    return mf.get_fock(dm=mf.get_init_guess(key="minao"))


def test_generated_h0_matches_pyscf_and_add_h0_rebuilds_it(data):
    record = read_deeph_dock(data / "0")
    ref = dense_to_dict(_fresh_h0(record.structure), record.basis, WATER.symbols, "pyscf")
    err = max(np.abs(record.matrices[BASELINE][k] - ref[k]).max() for k in ref)
    assert err < 1e-10, err
    assert np.abs(record.matrices[BASELINE][(0, 0, 0, 0, 0)] - record.matrices["hamiltonian"][(0, 0, 0, 0, 0)]).max() > 1e-3
    (data / "1" / f"{BASELINE}.h5").unlink()  # an older dataset without H0
    assert add_baseline(data, progress=False, n_workers=1) == 1 and add_baseline(data, progress=False) == 0
    again = read_deeph_dock(data / "1")
    ref = dense_to_dict(_fresh_h0(again.structure), again.basis, WATER.symbols, "pyscf")
    assert max(np.abs(again.matrices[BASELINE][k] - ref[k]).max() for k in ref) < 1e-10
    assert not list(data.glob(".tmp-*"))


def test_training_targets_and_predictions_carry_h0(data, tmp_path):
    config = RunConfig(data=DataConfig(path=str(data), cutoff_ang=5.0, split=(1 / 3, 1 / 3, 1 / 3)),
                       model=preset("tiny", dtype="float64", l_max=2))
    dataset = prepare_data(config)
    assert dataset.baseline == {"basis": "sto-3g", "xc": "lda", "charge": 0, "grid_level": 3, "density_fit": True,
                                "smearing": None}
    record = dataset.records[0]
    with_h0 = make_example(record, dataset.basis, 5.0, baseline=True)
    without = make_example(record, dataset.basis, 5.0)
    assert BASELINE not in without.targets
    for part in (0, 1):
        np.testing.assert_allclose(with_h0.targets["hamiltonian"][part],
                                   without.targets["hamiltonian"][part] - with_h0.targets[BASELINE][part], atol=1e-14)
    init, apply = make_predict_fn(config.model, dataset.basis)
    params = jax.jit(init)(jax.random.PRNGKey(0), with_h0.graph)  # eager init of the network: several times slower
    plain = TrainedModel(config.model, dataset.basis, 5.0, params, apply)
    h0_model = dataclasses.replace(plain, baseline=dataset.baseline)
    difference = predict_blocks(h0_model, record.structure, dense=True) - predict_blocks(plain, record.structure, dense=True)
    np.testing.assert_allclose(difference, _fresh_h0(record.structure), atol=1e-10)
    # a model trained on the baseline writes its settings; load_model hands them back
    from elct_jax.train.run import save_model_info
    from elct_jax.train.saved_model import load_model
    from elct_jax.train.checkpoint import Checkpointer
    from elct_jax.config import OptimConfig
    from elct_jax.train.optim import make_optimizer
    from elct_jax.train.step import init_state

    save_model_info(tmp_path / "run", config, dataset.basis, dataset.baseline)
    checkpointer = Checkpointer(tmp_path / "run")
    checkpointer.save(0, init_state(params, make_optimizer(OptimConfig(), 1)))
    checkpointer.close()
    assert load_model(tmp_path / "run").baseline == dataset.baseline
    assert json.loads((tmp_path / "run" / "model.json").read_text())["baseline"]["xc"] == "lda"


def test_required_baseline_names_records_without_h0(data):
    (data / "2" / f"{BASELINE}.h5").unlink()
    config = RunConfig(data=DataConfig(path=str(data), cutoff_ang=5.0, baseline="h0"))
    with pytest.raises(ValueError, match=r"1 record\(s\) have no H0 .*\['2'\].*elct data add-h0"):
        prepare_data(config)
    auto = prepare_data(RunConfig(data=DataConfig(path=str(data), cutoff_ang=5.0, split=(1 / 3, 1 / 3, 1 / 3))))
    assert auto.baseline is None and all(BASELINE not in b.targets for b in auto.batches["train"])


def test_energy_terms_see_network_plus_h0(data):
    """Omega of a baseline batch is Omega of (network output + H0), not of the network output alone."""
    from elct_jax.data.baseline import with_baseline
    from elct_jax.hamiltonian.blocks import blocks_to_dense
    from elct_jax.train.losses import free_energy_per_electron
    from elct_jax.train.step import make_eval_step

    config = RunConfig(data=DataConfig(path=str(data), cutoff_ang=5.0, batch_size=1, split=(1.0, 0.0, 0.0)),
                       model=preset("tiny", dtype="float64", l_max=2))
    if not (data / "2" / f"{BASELINE}.h5").exists():
        add_baseline(data, progress=False)
    dataset = prepare_data(config, with_systems=True)
    batch = dataset.batches["train"][0]
    assert BASELINE in batch.targets
    init, apply = make_predict_fn(config.model, dataset.basis)
    params = jax.jit(init)(jax.random.PRNGKey(1), batch.graph)  # eager init and apply: several times slower
    predict = jax.jit(apply)
    omega = float(make_eval_step(apply)(params, batch, LossWeights(mae=0.0, omega=1.0).array())["omega"])
    onsite, edges = with_baseline(*predict(params, batch.graph), batch)
    H = blocks_to_dense(onsite, edges, batch.layout, order="pyscf")[0]
    system = jax.tree.map(lambda x: x[0], batch.systems)
    assert abs(omega - float(free_energy_per_electron(system, H))) < 1e-10
    onsite, edges = predict(params, batch.graph)
    bare = blocks_to_dense(onsite, edges, batch.layout, order="pyscf")[0]
    assert abs(omega - float(free_energy_per_electron(system, bare))) > 1e-3


def test_add_h0_lists_the_records_it_could_not_do(tmp_path, data):
    """A record whose level of theory the DFT layer refuses is named with the reason; the others get H0."""
    import shutil

    root = tmp_path / "mixed"
    for name in ("0", "1"):
        shutil.copytree(data / name, root / name)
        (root / name / f"{BASELINE}.h5").unlink(missing_ok=True)
    info = json.loads((root / "1" / "info.json").read_text())
    info["elct"]["xc"] = "tpss"  # a meta-GGA
    (root / "1" / "info.json").write_text(json.dumps(info))
    with pytest.raises(RuntimeError, match=r"(?s)H0 failed for 1 of 2 record\(s\).*mixed/1: ValueError: xc=.tpss."):
        add_baseline(root, progress=False)
    assert (root / "0" / f"{BASELINE}.h5").exists() and not (root / "1" / f"{BASELINE}.h5").exists()

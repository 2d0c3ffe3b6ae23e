"""The run's config tree (elct_jax.config): TOML/dict round trips, one ModelConfig parser for [model] and
model.json, misspelt keys named with their table."""
import json

import numpy as np
import pytest

from elct_jax.config import (
    PRESETS,
    DataConfig,
    LossWeights,
    ModelConfig,
    OptimConfig,
    RadialConfig,
    RunConfig,
    TrainConfig,
    load_run_config,
    preset,
)
from elct_jax.nn.layers import gaussian_basis
from elct_jax.train.saved_model import pretrained_folder


def test_a_run_survives_to_dict_and_from_dict():
    run = RunConfig(data=DataConfig(path="d", split=(0.5, 0.3, 0.2), baseline="none"),
                    model=preset("tiny", dtype="float64", m_max=2, radial=RadialConfig(cutoff_ang=4.0)),
                    train=TrainConfig(run_dir="r", init_from="universal-mol-v1", weights=LossWeights(mae=0.0, sc=1.0),
                                      optim=OptimConfig(schedule="exponential", final_learning_rate=1e-4)))
    doc = json.loads(json.dumps(run.to_dict()))  # what a JSON/TOML file holds: lists, no tuples
    assert RunConfig.from_dict(doc) == run
    for model in PRESETS.values():
        assert ModelConfig.from_dict(model.to_dict()) == model


def test_toml_tree_and_shipped_model_json_are_read_by_the_same_parser(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\npreset = "tiny"\nchannels = 4\n[model.radial]\ncutoff_ang = 4.0\n'
                    '[train]\ninit_from = "universal-mol-v1"\n[train.weights]\nomega = 0.5\n')
    run = load_run_config(toml)
    assert run.model == preset("tiny", channels=4, radial=RadialConfig(cutoff_ang=4.0))  # a nested table replaces whole
    assert run.train.init_from == "universal-mol-v1" and run.train.weights == LossWeights(mae=1.0, omega=0.5)
    assert RunConfig.from_dict({}).model == preset("small")  # no [model]: the small preset
    info = json.loads((pretrained_folder("universal-mol-v1") / "model.json").read_text())
    assert ModelConfig.from_dict(info["model"]) == preset("small")  # written by an older run, before to_dict


@pytest.mark.parametrize("doc, message", [
    ({"trian": {}}, r"unknown section\(s\) \['trian'\]; allowed: data, model, train"),
    ({"train": {"optim": {"lr": 1e-3}}}, r"unknown key\(s\) \['lr'\] in \[train.optim\]; allowed: \[.*'learning_rate'"),
    ({"train": {"weights": {"omgea": 1.0}}}, r"unknown key\(s\) \['omgea'\] in \[train.weights\]"),
    ({"model": {"attention": {"head": 2}}}, r"unknown key\(s\) \['head'\] in \[model.attention\]"),
    ({"train": {"optim": {"schedule": "cosine"}}}, "schedule must be 'plateau' or 'exponential'"),
    ({"train": {"optim": {"adam_b2": 1.0}}}, r"adam_b2 must be in \(0, 1\), got 1.0"),
    ({"train": {"optim": {"restart_learning_rates": [1e-3]}}}, r"restart_learning_rates \(0.001,\) needs the exponential"),
])
def test_bad_keys_and_values_are_named_with_their_table(doc, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(doc)


def test_radial_basis_is_extended_to_the_graph_cutoff():
    small = preset("small")  # radial basis to 6 A
    d = np.array([7.5, 8.0])
    short = np.asarray(gaussian_basis(d, small.radial.n_basis, small.radial.cutoff_ang))
    assert np.abs(short).max() < 1e-12  # beyond ~3 widths every bond embeds as ~0: 7.5 A and 8 A look alike
    wide = small.covering(8.0)
    assert wide.radial.cutoff_ang == 8.0 and wide.radial.n_basis == small.radial.n_basis
    far = np.asarray(gaussian_basis(d, wide.radial.n_basis, wide.radial.cutoff_ang))
    assert np.abs(far[0] - far[1]).max() > 0.5  # now distinguished
    assert small.covering(6.0) is small and small.covering(4.0) is small


def test_fresh_network_l_max_is_lowered_to_what_the_basis_needs(capsys):
    """[train] fit_l_max: an s/p basis needs l_max 2, d shells 4, spin-orbit spinors one more; never raised."""
    from elct_jax.geometry.basis import OrbitalBasis
    from elct_jax.train.run import fresh_model_config
    small = preset("small")  # l_max 4
    assert small.fitted_to(1).l_max == 2 and small.fitted_to(2) is small and small.fitted_to(3) is small
    assert preset("small", spin="soc").fitted_to(1).l_max == 3
    assert preset("small", m_max=3).fitted_to(1).m_max == 2
    sp = OrbitalBasis.from_pyscf("sto-3g", ("O", "H"))  # O 1s 2s 2p: highest l 1
    config = RunConfig.from_dict({"model": {"preset": "small"}, "data": {"cutoff_ang": 6.0}})
    assert fresh_model_config(config, sp).l_max == 2
    assert "l_max 4 -> 2" in capsys.readouterr().out
    kept = RunConfig.from_dict({"model": {"preset": "small"}, "train": {"fit_l_max": False}})
    assert fresh_model_config(kept, sp).l_max == 4
    svp = OrbitalBasis.from_pyscf("def2-svp", ("O", "H"))  # d shells on O
    assert fresh_model_config(config, svp) == config.model

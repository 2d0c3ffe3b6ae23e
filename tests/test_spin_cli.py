"""The spin path of the command line, float64: `elct data generate --spin` writes collinear spinful records of PySCF UKS
labels (O2 triplet, PBE/STO-3G), a collinear model trains on them with the label-free terms on (library `train`, the
same as `elct train`), and `elct predict --spin` writes a spinful DeepH-dock folder equal to the model's prediction;
collinear and spin-orbit models (random parameters) predict Hermitian spinful blocks and write spinful folders; bad input (an odd electron count without a spin, an impossible multiplicity, a collinear model without moments) is
named."""
import numpy as np
import pytest

import jax

from elct_jax.analysis.evaluate import record_errors
from elct_jax.cli.main import main
from elct_jax.config import AttentionConfig, DataConfig, LossWeights, OptimConfig, RunConfig, TrainConfig, preset
from elct_jax.data.dataset_dir import dataset_folders, read_record
from elct_jax.data.deeph_dock import read_deeph_dock, write_deeph_dock
from elct_jax.data.loader import species_index
from elct_jax.data.spinful import spin_treatment
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.graph import neighbor_graph
from elct_jax.geometry.structure import Structure
from elct_jax.inference.predict import prediction_record, predict_blocks
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.run import train
from elct_jax.train.saved_model import TrainedModel, load_model

SMALL = dict(dtype="float64", l_max=2, channels=4, ffn_channels=4, attention=AttentionConfig(heads=2, alpha_dim=2))
GENERATE = ["data", "generate", "--recipe", "random", "--sigma", "0.02", "--basis", "sto-3g", "--grid-level", "2",
            "--workers", "0", "--n"]


def _xyz(path, symbols, positions) -> str:
    path.write_text(f"{len(symbols)}\n\n" + "".join(f"{s} {x} {y} {z}\n" for s, (x, y, z) in zip(symbols, positions)))
    return str(path)


def test_odd_electron_count_or_impossible_multiplicity_is_named(tmp_path, capsys):
    """Each structure fails with the reason (exit 1, as any failed structure; no SCF is run)."""
    oh = _xyz(tmp_path / "oh.xyz", ("O", "H"), [(0, 0, 0), (0, 0, 0.97)])
    assert main(GENERATE + ["1", oh, "--out", str(tmp_path / "a")]) == 1
    assert "9 electrons (charge 0): RKS labels need an even count; an odd count needs a spin setting" in \
        capsys.readouterr().err
    assert main(GENERATE + ["1", oh, "--out", str(tmp_path / "b"), "--multiplicity", "1"]) == 1
    assert "2S = 0 (multiplicity 1) is impossible for 9 electrons" in capsys.readouterr().err
    assert not (tmp_path / "a" / "0").exists() and not (tmp_path / "b" / "0").exists()


@pytest.mark.slow  # ~70 s CPU: three UKS labels, compiling a label-free step and the prediction
def test_generate_train_predict_round_trip_of_the_o2_triplet(tmp_path, capsys):
    o2 = _xyz(tmp_path / "o2.xyz", ("O", "O"), [(0, 0, 0), (0, 0, 1.21)])
    data = tmp_path / "data"
    assert main(GENERATE + ["3", o2, "--out", str(data), "--spin", "2"]) == 0
    records = [read_record(f) for f in dataset_folders(data)]
    assert len(records) == 3
    for r in records:
        assert r.spinful and spin_treatment(True, r.matrices["hamiltonian"]) == "collinear"
        assert r.dft["spin"] == 2 and r.dft["magmom"] == [1.0, 1.0] and r.dft["converged"]

    run_dir = tmp_path / "run"
    config = RunConfig(data=DataConfig(path=str(data), cutoff_ang=5.0, batch_size=1, split=(2 / 3, 1 / 3, 0.0)),
                       model=preset("tiny", spin="collinear", **SMALL),
                       train=TrainConfig(run_dir=str(run_dir), epochs=2, progress=False,
                                         weights=LossWeights(mae=1.0, omega=0.1, sc=1.0),
                                         optim=OptimConfig(learning_rate=1e-3)))
    state, dataset, _ = train(config)
    assert type(dataset.batches["train"][0].systems).__name__ == "SpinSystem" and int(state.step) == 4

    out = tmp_path / "pred"
    assert main(["predict", "--model", str(run_dir), o2, "--out", str(out)]) == 2
    assert "needs the atoms' initial moments" in capsys.readouterr().err
    assert main(["predict", "--model", str(run_dir), o2, "--out", str(out), "--spin", "2"]) == 0
    written = read_record(out)
    assert written.spinful and written.dft["magmom"] == [1.0, 1.0] and written.dft["n_electrons"] == 16
    assert spin_treatment(True, written.matrices["hamiltonian"]) == "collinear"
    expected = predict_blocks(load_model(run_dir), Structure.read(o2), magmom=[1.0, 1.0])
    assert set(written.matrices["hamiltonian"]) == set(expected)
    for key, block in expected.items():
        assert block.shape == (10, 10)  # 2 x 5 STO-3G orbitals of O, spin outer
        np.testing.assert_allclose(written.matrices["hamiltonian"][key], block, atol=1e-12)
    up, down = expected[(0, 0, 0, 0, 0)][:5, :5], expected[(0, 0, 0, 0, 0)][5:, 5:]
    assert np.abs(up - down).max() > 0  # the spins differ
    assert written.matrices["overlap"][(0, 0, 0, 0, 0)].shape == (5, 5)

    assert main(["evaluate", "--model", str(run_dir), str(data)]) == 0  # at each record's initial moments
    errors = record_errors(load_model(run_dir), records[0])
    assert errors.n_entries == 4 * 10 * 10 and errors.mae > 0 and errors.energy > -1e-8  # variational, per spin
    assert "mean of 3" in capsys.readouterr().out


@pytest.mark.parametrize("spin", ["collinear", "soc"])
def test_spinful_models_predict_spinful_folders(spin, tmp_path):
    """A random-parameter model of each spin kind (O2, STO-3G): predict_blocks gives [2 n_i, 2 n_j] blocks, the dense
    matrix is Hermitian (SOC: the spin-outer complex matrix; collinear: up and down, each symmetric), and
    prediction_record writes a spinful folder that reads back to the same blocks; moments only for collinear."""
    basis = OrbitalBasis.from_pyscf("sto-3g", ["O"])
    o2 = Structure(("O", "O"), np.array([[0.0, 0.0, 0.0], [0.3, 0.2, 1.2]]))
    config = preset("tiny", spin=spin, **{**SMALL, "l_max": 3})  # SOC: l_max >= 2 l_orb + 1
    init, apply = make_predict_fn(config, basis)
    graph = neighbor_graph(o2, 5.0, species_index(basis))
    graph = graph._replace(nodes={**graph.nodes, "magmom": np.array([1.0, 1.0])})
    params = jax.jit(init)(jax.random.PRNGKey(3), graph)  # eager init of the network: several times slower
    model = TrainedModel(config, basis, 5.0, params, apply, name=f"random {spin} model")
    magmom = [1.0, 1.0] if spin == "collinear" else None
    wrong, message = (None, "needs the atoms' initial moments") if magmom else ([1.0, 1.0], "takes no initial moments")
    with pytest.raises(ValueError, match=message):
        predict_blocks(model, o2, magmom=wrong)
    blocks = predict_blocks(model, o2, magmom=magmom)
    assert all(b.shape == (10, 10) for b in blocks.values()) and len(blocks) == 4
    assert spin_treatment(True, blocks) == ("collinear" if spin == "collinear" else "noncollinear")
    dense = predict_blocks(model, o2, dense=True, magmom=magmom)
    if spin == "soc":
        assert dense.shape == (20, 20) and np.abs(dense.imag).max() > 1e-6
        np.testing.assert_allclose(dense, dense.conj().T, atol=1e-12)
    else:
        assert dense.shape == (2, 10, 10) and np.abs(dense[0] - dense[1]).max() > 1e-6
        np.testing.assert_allclose(dense, np.swapaxes(dense, 1, 2), atol=1e-12)
    back = read_deeph_dock(write_deeph_dock(tmp_path / spin, prediction_record(model, o2, magmom=magmom)))
    assert back.spinful and back.dft["n_electrons"] == 16 and back.dft.get("magmom") == magmom
    for key, block in blocks.items():
        np.testing.assert_allclose(back.matrices["hamiltonian"][key], block, atol=1e-12)
        assert back.matrices["overlap"][key].shape == (5, 5)

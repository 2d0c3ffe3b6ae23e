"""`elct bands --model` and `elct predict --compare-labels FOLDER` for spinful models (float64): random-parameter collinear and
spin-orbit models (preset tiny) on the H chain of tests/test_spin_bands.py (2 atoms, gth-dzvp, 8 A box).

Bands from the model (chunked prediction, S(R) from PySCF integrals) equal scipy's eigenvalues of the Bloch sum of the
model's own blocks (predict_blocks, the unchunked path) with PySCF's S(k); dense and sparse solvers agree; the bands of
the predicted folder are the same. The comparison against labels reports the H MAE of each spin part; mismatched spin
kinds and moments are named.
"""
import dataclasses

import jax
import numpy as np
import pytest
import scipy.linalg

from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell
from ai2dft.units import HARTREE_TO_MEV
from elct_jax.analysis.evaluate import band_errors
from elct_jax.analysis.label_check import compare_with_labels
from elct_jax.cli.bands import BandsRequest, run_bands, run_bands_from_folder
from elct_jax.cli.main import main
from elct_jax.config import AttentionConfig, preset
from elct_jax.data.deeph_dock import DeepHRecord, write_deeph_dock
from elct_jax.data.loader import species_index
from elct_jax.data.spinful import quadrants
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.graph import neighbor_graph
from elct_jax.inference.predict import predict_blocks, prediction_record
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.saved_model import TrainedModel, export_model

from crystals import h_chain

CUTOFF_ANG = 8.5  # every pair whose overlap exceeds 1e-7 (the 8 A box holds the chain's images apart)
MAGMOM = {"collinear": [0.5, 0.5], "soc": None}  # --spin 1: 2S = 1 per cell over two atoms


def random_models(spin: str, seeds=(0,)) -> list[TrainedModel]:
    """Models of one network (one ``apply``: compiled once) with random parameters of each seed."""
    basis = OrbitalBasis.from_pyscf("gth-dzvp", ["H"])
    config = preset("tiny", spin=spin, dtype="float64", l_max=3 if spin == "soc" else 2, channels=4, ffn_channels=4,
                    attention=AttentionConfig(heads=2, alpha_dim=2))  # l_max >= 2 l_orb, SOC 2 l_orb + 1
    init, apply = make_predict_fn(config, basis)
    graph = neighbor_graph(h_chain(), CUTOFF_ANG, species_index(basis))
    graph = graph._replace(nodes={**graph.nodes, "magmom": np.array([0.5, 0.5])})
    init = jax.jit(init)  # one compilation instead of an op-by-op initialisation per seed
    return [TrainedModel(config, basis, CUTOFF_ANG, init(jax.random.PRNGKey(seed), graph), apply,
                         name=f"random {spin} model {seed}") for seed in seeds]


@pytest.fixture(scope="module", params=["collinear", "soc"])
def spin_model(request, tmp_path_factory):
    """(model, a second model of the same network (the labels' stand-in), the module's temporary folder)."""
    model, other = random_models(request.param, seeds=(0, 1))
    return model, other, tmp_path_factory.mktemp(request.param)


def bloch_reference(blocks: dict, spin: str, kpts_frac: np.ndarray) -> np.ndarray:
    """[n_channels, n_k, n_bands] eigenvalues of the dense Bloch sum of ``blocks`` (internal order, spinful) with
    PySCF's S(k) (x 1_2 for the spinor H): one channel per spin (collinear) or the spinor bands (SOC)."""
    cell = build_cell(h_chain(), DFTSettings(basis="gth-dzvp", kmesh=(2, 1, 1)))
    s_k = cell.pbc_intor("int1e_ovlp", kpts=cell.get_abs_kpts(kpts_frac))
    basis = OrbitalBasis.from_pyscf("gth-dzvp", ["H"])
    to_pyscf = basis.permutation(list(h_chain().symbols), "pyscf")  # internal AO a is PySCF AO to_pyscf[a]
    n = len(to_pyscf)
    quads = (0, 3) if spin == "collinear" else (0, 1, 2, 3)
    out = []
    for k, s in zip(kpts_frac, s_k):
        h = np.zeros((len(quads), n, n), complex)
        for (r1, r2, r3, i, j), block in blocks.items():
            rows, cols = to_pyscf[5 * i:5 * i + 5], to_pyscf[5 * j:5 * j + 5]
            for q, quad in enumerate(quads):
                h[q][np.ix_(rows, cols)] += np.exp(2j * np.pi * k[0] * r1) * quadrants(block)[quad]
        if spin == "collinear":
            out.append([scipy.linalg.eigh(hq, s, eigvals_only=True) for hq in h])
        else:
            out.append([scipy.linalg.eigh(np.block([[h[0], h[1]], [h[2], h[3]]]), np.kron(np.eye(2), s),
                                          eigvals_only=True)])
    return np.swapaxes(np.array(out), 0, 1)


def test_bands_of_a_spin_model_equal_its_bloch_sum(spin_model, tmp_path):
    """Bands from the model (run_bands: chunked prediction, dense solver, all bands) equal scipy on the Bloch sum of
    predict_blocks' H(R) with PySCF's S(k) to 1e-8 Ha; the shift-invert solver's bands equal them at their band
    indices (1e-8 Ha); the bands of the prediction's DeepH folder (run_bands_from_folder) are the same (via eV)."""
    model, _, _ = spin_model
    spin = model.config.spin
    request = BandsRequest(npoints=5, nbands=None, fermi_kmesh=(4, 1, 1), solver="dense")
    summary = run_bands(model, h_chain(), tmp_path / "dense", request, MAGMOM[spin])
    assert summary["spin"] == {"collinear": "collinear", "soc": "noncollinear"}[spin]
    assert summary["n_bands_per_k"] == ([10, 10] if spin == "collinear" else [20])
    files = ["bands_up.npz", "bands_down.npz"] if spin == "collinear" else ["bands.npz"]
    dense = [np.load(tmp_path / "dense" / f) for f in files]
    reference = bloch_reference(predict_blocks(model, h_chain(), magmom=MAGMOM[spin]), spin, dense[0]["kpts_frac"])
    for bands, ref in zip(dense, reference):
        np.testing.assert_allclose(bands["energies_hartree"], ref, atol=1e-8)
    if spin == "collinear":
        assert np.abs(reference[0] - reference[1]).max() > 1e-4  # the spins differ
    else:  # time reversal (built into the head) and inversion: Kramers pairs at every k; spin-flip blocks present
        np.testing.assert_allclose(reference[0][:, 0::2], reference[0][:, 1::2], atol=1e-8)
        assert max(np.abs(quadrants(b)[1]).max() for b in predict_blocks(model, h_chain()).values()) > 1e-4

    sparse = dataclasses.replace(request, nbands=3, solver="sparse", fermi_ev=summary["fermi_ev"])
    assert run_bands(model, h_chain(), tmp_path / "sparse", sparse, MAGMOM[spin])["solver"] == "sparse"
    for f, ref in zip(files, reference):
        b = np.load(tmp_path / "sparse" / f)
        assert b["energies_hartree"].shape == (5, 3)
        np.testing.assert_allclose(b["energies_hartree"], np.take_along_axis(ref, b["band_index"], 1), atol=1e-8)

    write_deeph_dock(tmp_path / "pred", prediction_record(model, h_chain(), magmom=MAGMOM[spin]))
    assert run_bands_from_folder(tmp_path / "pred", tmp_path / "folder", request)["fermi_ev"] == pytest.approx(
        summary["fermi_ev"], abs=1e-7)
    for f, bands in zip(files, dense):
        np.testing.assert_allclose(np.load(tmp_path / "folder" / f)["energies_hartree"], bands["energies_hartree"],
                                   atol=1e-8)


def test_compare_with_labels_reports_the_spin_resolved_mae(spin_model):
    """A prediction against labels of the chain (here: another random model's prediction, a labelled DeepH folder): the
    H MAE of each spin part (up, down; or the four spin quadrants) equals numpy's over the labels' blocks, the
    all-entry MAE is their entry-weighted mean, the band MAE is reported; the table shows them."""
    model, other, root = spin_model
    spin = model.config.spin
    labels = prediction_record(other, h_chain(), magmom=MAGMOM[spin])
    write_deeph_dock(root / "labels", labels)
    prediction = prediction_record(model, h_chain(), magmom=MAGMOM[spin])
    result = compare_with_labels(model, prediction, root / "labels")
    quads = {"up": 0, "down": 3} if spin == "collinear" else {"uu": 0, "ud": 1, "du": 2, "dd": 3}
    assert list(result.part_mae) == list(quads)
    for name, q in quads.items():
        expected = np.mean([np.abs(quadrants(prediction.matrices["hamiltonian"][k])[q] - quadrants(b)[q])
                            for k, b in labels.matrices["hamiltonian"].items()])
        assert result.part_mae[name] == pytest.approx(expected, rel=1e-6) and expected > 1e-4
    # four equal quadrants; a collinear record's zero up-down quadrants count as exact entries
    assert result.errors.mae == pytest.approx(sum(result.part_mae.values()) / 4, rel=1e-6)
    bands = band_errors(prediction.matrices["hamiltonian"], labels)  # the random bands may leave E_F +- 2 eV empty
    assert result.errors.band_mae == (pytest.approx(bands.mae, rel=1e-8) if bands.n_energies else None)  # via eV
    assert result.errors.energy is None  # a crystal
    table = result.table(model.name)
    assert f"H MAE, {'spin up' if spin == 'collinear' else 'up-down'}" in table
    assert f"{result.errors.mae * HARTREE_TO_MEV:.4f} meV" in table


def test_spin_mismatches_are_named(spin_model, tmp_path, capsys):
    """Labels of another spin kind (spinless labels for a spinful model; the reverse in the slow test below), another
    structure or other initial moments, moments for a model that takes none or for a folder's bands: named (`elct
    bands`: exit 2)."""
    model, _, _ = spin_model
    spin = model.config.spin
    prediction = prediction_record(model, h_chain(), magmom=MAGMOM[spin])
    write_deeph_dock(tmp_path / "spinful", prediction)
    spinless = DeepHRecord(h_chain(), model.basis, {
        "hamiltonian": {k: quadrants(b)[0].real for k, b in prediction.matrices["hamiltonian"].items()},
        "overlap": prediction.matrices["overlap"]}, dft={"n_electrons": 2})
    write_deeph_dock(tmp_path / "spinless", spinless)
    with pytest.raises(ValueError, match=f"do not hold the data a model with spin = '{spin}' learns.*spinless data"):
        compare_with_labels(model, prediction, tmp_path / "spinless")
    with pytest.raises(ValueError, match="another structure"):
        compare_with_labels(model, dataclasses.replace(prediction, structure=h_chain(box_ang=9.0)), tmp_path / "spinful")
    if spin == "soc":
        with pytest.raises(ValueError, match="takes no initial moments"):
            run_bands(model, h_chain(), tmp_path / "out", magmom=[0.5, 0.5])
        return
    with pytest.raises(ValueError, match="needs the atoms' initial moments"):
        run_bands(model, h_chain(), tmp_path / "out")
    other_moments = prediction_record(model, h_chain(), magmom=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"labels are of the initial moments \[0.5, 0.5\], the prediction's are \[1.0, -1.0\]"):
        compare_with_labels(model, other_moments, tmp_path / "spinful")
    assert main(["bands", "--folder", str(tmp_path / "spinful"), "--out", str(tmp_path / "out"), "--spin", "1"]) == 2
    assert "--spin and --magmom are the input of a collinear-spin model" in capsys.readouterr().err


@pytest.mark.slow  # ~60 s CPU: loading and compiling the exported model in each command, a spinless model
def test_the_commands_on_a_spin_model(spin_model, capsys):
    """`elct bands --model` (with --spin 1 for the collinear model) writes the bands run_bands gives, and `elct predict
    --compare-labels FOLDER` prints the comparison compare_with_labels gives; a spinless model refuses the spinful labels."""
    model, other, root = spin_model
    spin = model.config.spin
    folder, chain = str(export_model(model, root / "model")), root / "chain.extxyz"
    h_chain().to_ase().write(chain)
    moments = ["--spin", "1"] if spin == "collinear" else []
    assert main(["bands", "--model", folder, "--structure", str(chain), "--out", str(root / "cli"), "--npoints", "5",
                 "--nbands", "0", "--fermi-kmesh", "4", "1", "1", *moments]) == 0
    run_bands(model, h_chain(), root / "lib", BandsRequest(npoints=5, nbands=None, fermi_kmesh=(4, 1, 1)), MAGMOM[spin])
    for f in (["bands_up.npz", "bands_down.npz"] if spin == "collinear" else ["bands.npz"]):
        np.testing.assert_allclose(np.load(root / "cli" / f)["energies_hartree"],
                                   np.load(root / "lib" / f)["energies_hartree"], atol=1e-10)
    write_deeph_dock(root / "labels", prediction_record(other, h_chain(), magmom=MAGMOM[spin]))
    capsys.readouterr()
    assert main(["predict", "--model", folder, str(chain), "--out", str(root / "pred"), "--compare-labels",
                 str(root / "labels"), *moments]) == 0
    prediction = prediction_record(model, h_chain(), magmom=MAGMOM[spin])
    table = compare_with_labels(model, prediction, root / "labels")
    assert table.table(model.name).replace(model.name, folder) in capsys.readouterr().out
    kind = {"collinear": "collinear spin", "soc": "non-collinear"}[spin]
    with pytest.raises(ValueError, match=f"do not hold the data a model with spin = 'none' learns.*e.g.*{kind}"):
        compare_with_labels(random_models("none")[0], prediction, root / "labels")

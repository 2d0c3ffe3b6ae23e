"""Supervised training of the spin-orbit model (ModelConfig.spin = "soc") on PySCF X2C1e spin-orbit labels of HBr
(STO-3G: Br has s, p and d shells): spinful targets in the network's layout reassemble PySCF's matrix, the MAE
counts real and imaginary parts, the same jitted step lowers the loss, and records of the other spin kinds are
refused naming the record and the mismatch."""
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ai2dft.pyscf_bridge.soc import SOCSettings, soc_molecule_labels
from elct_jax.analysis.evaluate import BlockErrors
from elct_jax.config import AttentionConfig, LossWeights, OptimConfig, preset
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.loader import collate, make_example
from elct_jax.data.spinful import collinear_blocks, quadrants, spinful_dense_to_dict
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dense_to_dict
from elct_jax.hamiltonian.spinor import spinor_to_dense
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.init import fit_onsite_bias
from elct_jax.train.optim import make_optimizer
from elct_jax.train.step import hamiltonian_mae, init_state, make_train_step

SYMBOLS, CUTOFF = ("H", "Br"), 5.0
SETTINGS = SOCSettings(basis="sto-3g", grid_level=2, conv_tol=1e-9, conv_tol_grad=1e-6)
CONFIG = preset("tiny", dtype="float64", l_max=5, spin="soc", channels=8, ffn_channels=8,
                attention=AttentionConfig(heads=2, alpha_dim=4))


@pytest.fixture(scope="module")
def data():
    """Three HBr geometries (bond 1.36-1.47 A, random orientations), their labels, records and examples."""
    basis = OrbitalBasis.from_pyscf(SETTINGS.basis, SYMBOLS)
    labels, records = [], []
    for k, bond in enumerate((1.36, 1.41, 1.47)):
        rot = Rotation.random(random_state=k).as_matrix()
        structure = Structure(SYMBOLS, np.array([[0.0, 0.0, 0.0], [0.0, 0.0, bond]]) @ rot.T)
        lab = soc_molecule_labels(structure, SETTINGS)
        assert lab.converged
        labels.append(lab)
        records.append(DeepHRecord(structure, basis, {"overlap": dense_to_dict(lab.S, basis, SYMBOLS),
                                                      "hamiltonian": spinful_dense_to_dict(lab.H, basis, SYMBOLS)},
                                   spinful=True))
    examples = [make_example(r, basis, CUTOFF, spin="soc") for r in records]
    return dict(basis=basis, labels=labels, records=records, examples=examples)


def test_targets_reassemble_pyscfs_spin_orbital_matrix(data):
    basis = data["basis"]
    for lab, ex in zip(data["labels"], data["examples"]):
        batch = collate([ex], basis)
        on, ed = batch.targets["hamiltonian"]
        assert on.shape[1:3] == (2, 2) and np.iscomplexobj(on)
        n_ao = lab.S.shape[0]
        H = np.asarray(spinor_to_dense(on, ed, batch.layout))  # [2 P, 2 P], P = padded AO count
        P = H.shape[-1] // 2
        got = np.block([[H[0, s * P:s * P + n_ao, t * P:t * P + n_ao] for t in (0, 1)] for s in (0, 1)])
        np.testing.assert_allclose(got, lab.H, rtol=0, atol=1e-14)


def test_mae_counts_real_and_imaginary_parts(data):
    batch = collate(data["examples"][:2], data["basis"])
    on, ed = batch.targets["hamiltonian"]
    (m_on, m_ed) = batch.target_masks["hamiltonian"]
    zero = jax.tree.map(np.zeros_like, (on, ed))
    target = np.concatenate([on[m_on], ed[m_ed]])
    assert np.abs(target.imag).max() > 1e-3
    want = np.mean(np.concatenate([np.abs(target.real), np.abs(target.imag)]))
    pooled, onsite = hamiltonian_mae(*zero, batch)
    np.testing.assert_allclose(float(pooled), want, rtol=1e-12)
    want_on = np.mean(np.concatenate([np.abs(on[m_on].real), np.abs(on[m_on].imag)]))  # [train.weights] mae_onsite
    np.testing.assert_allclose(float(onsite), want_on, rtol=1e-12)
    errors = BlockErrors(data["basis"].elements)  # the evaluation's per-kind table pools the same way
    errors.add(*zero, batch)
    np.testing.assert_allclose(errors.mae(), want, rtol=1e-12)


def test_soc_model_refuses_spinless_and_collinear_records(data):
    record, basis = data["records"][0], data["basis"]
    spinless = DeepHRecord(record.structure, basis, {"overlap": record.matrices["overlap"]})
    with pytest.raises(ValueError, match=r"the record of \('H', 'Br'\): spinless data.*need \[model\] spin = 'none'"):
        make_example(spinless, basis, CUTOFF, spin="soc")
    h = record.matrices["hamiltonian"]
    up = {k: quadrants(b)[0].real for k, b in h.items()}
    down = {k: quadrants(b)[3].real for k, b in h.items()}
    collinear = DeepHRecord(record.structure, basis, {"hamiltonian": collinear_blocks(up, down)}, spinful=True)
    with pytest.raises(ValueError, match=r"spin = 'soc' learns \(non-collinear.*e.g. the record of .*: collinear spin"):
        make_example(collinear, basis, CUTOFF, spin="soc")


@pytest.mark.slow  # ~80 s on a loaded 2-core machine (compiling the l_max = 5 step)
def test_supervised_fit_lowers_the_loss_and_the_spin_orbit_error(data):
    basis = data["basis"]
    batch = collate(data["examples"], basis)
    init, apply = make_predict_fn(CONFIG, basis)
    params = fit_onsite_bias(jax.jit(init)(jax.random.PRNGKey(0), batch.graph), jax.jit(apply), [batch], basis)
    optimizer = make_optimizer(OptimConfig(learning_rate=3e-3, clip_norm=0.0), 1)
    step = make_train_step(apply, optimizer)
    state, weights = init_state(params, optimizer), LossWeights(mae=1.0).array()

    def spin_orbit_error(p):  # mean |error| of the spin-off-diagonal (up-down) quadrant, pure spin-orbit coupling
        on, ed = jax.jit(apply)(p, batch.graph)
        (t_on, t_ed), (m_on, m_ed) = batch.targets["hamiltonian"], batch.target_masks["hamiltonian"]
        err = np.concatenate([np.abs(np.asarray(on) - t_on)[:, 0, 1][m_on[:, 0, 1]],
                              np.abs(np.asarray(ed) - t_ed)[:, 0, 1][m_ed[:, 0, 1]]])
        return err.mean()

    losses = []
    for _ in range(40):
        state, metrics = step(state, batch, weights)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.3 * losses[0], losses
    assert spin_orbit_error(state.params) < 0.3 * spin_orbit_error(params)

"""Collinear-spin model (ModelConfig.spin = "collinear"), float64: spin-up and spin-down blocks from one ELCT with the
atoms' initial moments as input; each spin's blocks rotate like spinless ones (rotation, inversion), reversing every
moment swaps up and down exactly, zero moments give equal spins; supervised training on PySCF UKS labels of the O2
triplet through the same jitted step, and the spin kinds of model and data must agree."""
import jax
import numpy as np
import pytest
from pyscf import dft, gto
from scipy.spatial.transform import Rotation

from elct_jax.config import AttentionConfig, LossWeights, OptimConfig, preset
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.loader import collate, make_example
from elct_jax.data.spinful import collinear_blocks
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.graph import neighbor_graph
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dense_to_dict
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.init import fit_onsite_bias
from elct_jax.train.optim import make_optimizer
from elct_jax.train.step import init_state, make_train_step

SYMBOLS = ("O", "H", "H", "O", "H", "H")
POSITIONS = np.array([
    [0.00, 0.00, 0.12], [0.77, 0.05, -0.47], [-0.74, -0.08, -0.50],
    [0.30, 2.85, 0.20], [0.95, 3.40, -0.25], [-0.45, 3.45, 0.35],
])
MOMENTS = np.array([1.0, 0.2, -0.1, -0.8, 0.0, 0.3])
SMALL = dict(dtype="float64", channels=4, ffn_channels=4, attention=AttentionConfig(heads=2, alpha_dim=2))


@pytest.fixture(scope="module")
def basis():
    return OrbitalBasis.from_pyscf("def2-svp", ["O", "H"])  # O has a d shell: l_max 4


def _graph(basis, positions, moments):
    graph = neighbor_graph(Structure(SYMBOLS, positions), 5.0, {el: i for i, el in enumerate(basis.elements)})
    return graph._replace(nodes={**graph.nodes, "magmom": moments})


@pytest.fixture(scope="module")
def model(basis):
    """(params, jitted apply) with random parameters of the initialiser's shapes."""
    init, apply = make_predict_fn(preset("tiny", spin="collinear", **SMALL), basis)
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0), _graph(basis, POSITIONS, MOMENTS))
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [0.5 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])
    return params, jax.jit(apply)


def test_reversing_all_moments_swaps_up_and_down(basis, model):
    params, apply = model
    on, ed = (np.asarray(x) for x in apply(params, _graph(basis, POSITIONS, MOMENTS)))
    assert on.shape[1] == 2 and np.abs(ed[:, 0] - ed[:, 1]).max() > 1e-2 and np.abs(on[:, 0] - on[:, 1]).max() > 1e-2
    on_f, ed_f = (np.asarray(x) for x in apply(params, _graph(basis, POSITIONS, -MOMENTS)))
    np.testing.assert_allclose(on_f, on[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(ed_f, ed[:, ::-1], atol=1e-12)
    on_0, ed_0 = (np.asarray(x) for x in apply(params, _graph(basis, POSITIONS, np.zeros(len(SYMBOLS)))))
    np.testing.assert_array_equal(on_0[:, 0], on_0[:, 1])
    np.testing.assert_array_equal(ed_0[:, 0], ed_0[:, 1])


def test_each_spin_rotates_like_spinless_blocks_and_is_symmetric(basis, model):
    params, apply = model
    graph = _graph(basis, POSITIONS, MOMENTS)
    on, ed = (np.asarray(x) for x in apply(params, graph))
    n = [basis.n_orbitals(s) for s in SYMBOLS]
    np.testing.assert_allclose(on, np.swapaxes(on, -1, -2), atol=1e-13)
    np.testing.assert_allclose(ed, np.swapaxes(ed[np.asarray(graph.edges["reverse"])], -1, -2), atol=1e-13)
    rot = Rotation.random(random_state=5).as_matrix()
    for q in (rot, -rot, -np.eye(3)):
        on_q, ed_q = (np.asarray(x) for x in apply(params, _graph(basis, POSITIONS @ q.T, MOMENTS)))
        d = [basis.rotation_matrix([s], q) for s in SYMBOLS]
        for a in range(len(SYMBOLS)):
            want = np.einsum("ik,skl,jl->sij", d[a], on[a, :, : n[a], : n[a]], d[a])
            np.testing.assert_allclose(on_q[a, :, : n[a], : n[a]], want, atol=1e-10)
        for k, (i, j) in enumerate(zip(graph.senders, graph.receivers)):
            want = np.einsum("ik,skl,jl->sij", d[i], ed[k, :, : n[i], : n[j]], d[j])
            np.testing.assert_allclose(ed_q[k, :, : n[i], : n[j]], want, atol=1e-10)


def _o2_record(bond: float, basis: OrbitalBasis, rot: np.ndarray) -> DeepHRecord:
    """UKS (LDA, STO-3G) labels of the O2 triplet with initial moments of 1 Bohr magneton per atom."""
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, bond]]) @ rot.T
    mol = gto.M(atom=list(zip(("O", "O"), positions)), basis="sto-3g", spin=2, verbose=0)
    mf = dft.UKS(mol, xc="lda,vwn")
    mf.conv_tol = 1e-10
    mf.kernel()
    assert mf.converged
    up, down = (dense_to_dict(f, basis, ("O", "O")) for f in mf.get_fock())
    matrices = {"overlap": dense_to_dict(mf.get_ovlp(), basis, ("O", "O")), "hamiltonian": collinear_blocks(up, down)}
    return DeepHRecord(Structure(("O", "O"), positions), basis, matrices, dft={"magmom": [1.0, 1.0]}, spinful=True)


@pytest.mark.slow  # ~60 s of CPU (three UKS runs, compiling the step), minutes on a loaded machine
def test_supervised_fit_on_the_o2_triplet_and_spin_mismatch_refused():
    basis = OrbitalBasis.from_pyscf("sto-3g", ["O"])
    records = [_o2_record(b, basis, Rotation.random(random_state=k).as_matrix())
               for k, b in enumerate((1.18, 1.21, 1.25))]
    with pytest.raises(ValueError, match=r"spin = 'none' learns \(spinless.*collinear spin.*spin = 'collinear'"):
        make_example(records[0], basis, 5.0)
    examples = [make_example(r, basis, 5.0, spin="collinear") for r in records]
    batch = collate(examples, basis)
    on, _ = batch.targets["hamiltonian"]
    assert on.shape[1] == 2 and np.abs(on[:, 0] - on[:, 1]).max() > 1e-2  # exchange splitting of the triplet
    init, apply = make_predict_fn(preset("tiny", l_max=2, spin="collinear", **SMALL), basis)
    params = fit_onsite_bias(jax.jit(init)(jax.random.PRNGKey(0), batch.graph), jax.jit(apply), [batch], basis)
    optimizer = make_optimizer(OptimConfig(learning_rate=3e-3, clip_norm=0.0), 1)
    step = make_train_step(apply, optimizer)
    state, weights, losses = init_state(params, optimizer), LossWeights(mae=1.0).array(), []
    for _ in range(30):
        state, metrics = step(state, batch, weights)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses

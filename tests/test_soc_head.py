"""Spin-orbit head (ModelConfig.spin = "soc"), float64: spinor blocks rotate with D^l x D^(1/2) (orbitals and spin
together, U in SU(2) from the rotation), are unchanged in spin under inversion, and assemble into a Hermitian,
time-reversal symmetric matrix; the spinless part is the spinless model's output."""
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from elct_jax.config import AttentionConfig, preset
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.graph import neighbor_graph
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import block_layout
from elct_jax.hamiltonian.spinor import PAULI, spinor_to_dense
from elct_jax.nn.model import make_predict_fn

# a distorted water dimer in def2-SVP: s, p and d shells, so every (l1, l2) up to d-d appears (l1 + l2 + 1 = 5)
SYMBOLS = ("O", "H", "H", "O", "H", "H")
POSITIONS = np.array([
    [0.00, 0.00, 0.12], [0.77, 0.05, -0.47], [-0.74, -0.08, -0.50],
    [0.30, 2.85, 0.20], [0.95, 3.40, -0.25], [-0.45, 3.45, 0.35],
])
SMALL = dict(dtype="float64", l_max=5, channels=4, ffn_channels=4, attention=AttentionConfig(heads=2, alpha_dim=2))
CONFIG = preset("tiny", spin="soc", **SMALL)


@pytest.fixture(scope="module")
def basis():
    return OrbitalBasis.from_pyscf("def2-svp", ["O", "H"])


def _graph(basis, positions):
    return neighbor_graph(Structure(SYMBOLS, positions), 5.0, {el: i for i, el in enumerate(basis.elements)})


@pytest.fixture(scope="module")
def model(basis):
    """(params, jitted apply): random parameters of the initialiser's shapes (biases and gains included)."""
    init, apply = make_predict_fn(CONFIG, basis)
    leaves, tree = jax.tree_util.tree_flatten(jax.eval_shape(init, jax.random.PRNGKey(0), _graph(basis, POSITIONS)))
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [0.5 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])
    return params, jax.jit(apply)


def su2(rotation: np.ndarray) -> np.ndarray:
    """[2, 2] U = exp(-i theta n.sigma / 2) of a proper lab rotation (theta n its rotation vector)."""
    rotvec = Rotation.from_matrix(rotation).as_rotvec()
    theta = np.linalg.norm(rotvec)
    n_sigma = np.einsum("a,ast->st", rotvec / theta, PAULI)
    return np.cos(theta / 2) * np.eye(2) - 1j * np.sin(theta / 2) * n_sigma


def test_su2_rotates_the_pauli_vector():
    rot = Rotation.random(random_state=3).as_matrix()
    u = su2(rot)
    for a in range(3):
        np.testing.assert_allclose(u @ PAULI[a] @ u.conj().T, np.einsum("b,bst->st", rot[:, a], PAULI), atol=1e-14)


def _rotated(blocks, d_row, d_col, u):
    """(U x D_i) H (U x D_j)^+ of a spinor block [2, 2, n_i, n_j]."""
    return np.einsum("sa,ik,abkl,jl,tb->stij", u, d_row, blocks, d_col, u.conj())


def test_spinor_blocks_rotate_with_orbitals_and_spin_and_are_spin_even_under_inversion(basis, model):
    params, apply = model
    graph = _graph(basis, POSITIONS)
    on, ed = (np.asarray(x) for x in apply(params, graph))
    assert on.shape[1:3] == (2, 2) and np.iscomplexobj(on)
    assert np.abs(ed[:, 0, 1]).max() > 1e-2 and np.abs(on[:, 0, 0].imag).max() > 1e-2  # spin-orbit part present
    n = [basis.n_orbitals(s) for s in SYMBOLS]
    rot = Rotation.random(random_state=11).as_matrix()
    for q, u in ((rot, su2(rot)), (-rot, su2(rot)), (-np.eye(3), np.eye(2))):  # rotation, improper, inversion
        on_q, ed_q = (np.asarray(x) for x in apply(params, _graph(basis, POSITIONS @ q.T)))
        d = [basis.rotation_matrix([s], q) for s in SYMBOLS]
        for a in range(len(SYMBOLS)):
            want = _rotated(on[a, :, :, : n[a], : n[a]], d[a], d[a], u)
            np.testing.assert_allclose(on_q[a, :, :, : n[a], : n[a]], want, atol=1e-10)
        for k, (i, j) in enumerate(zip(graph.senders, graph.receivers)):
            want = _rotated(ed[k, :, :, : n[i], : n[j]], d[i], d[j], u)
            np.testing.assert_allclose(ed_q[k, :, :, : n[i], : n[j]], want, atol=1e-10)


def test_assembled_matrix_is_hermitian_and_time_reversal_symmetric(basis, model):
    params, apply = model
    graph = _graph(basis, POSITIONS)
    H = np.asarray(spinor_to_dense(*apply(params, graph), block_layout(basis, SYMBOLS, graph)))
    n_ao = H.shape[0] // 2
    assert np.abs(H[:n_ao, n_ao:]).max() > 1e-2
    np.testing.assert_allclose(H, H.conj().T, atol=1e-12)
    sigma_y = np.kron(PAULI[1], np.eye(n_ao))  # Theta = -i sigma_y K: Theta H Theta^-1 = sigma_y conj(H) sigma_y
    np.testing.assert_allclose(sigma_y @ H.conj() @ sigma_y, H, atol=1e-12)
    eps = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(eps[0::2], eps[1::2], atol=1e-9)  # Kramers pairs


def test_spin_independent_part_is_the_spinless_model(basis, model):
    """A of H = A x 1 + i B.sigma is what the spinless model with the same shared parameters predicts."""
    params, apply = model
    graph = _graph(basis, POSITIONS)
    on, ed = apply(params, graph)
    _, apply_none = make_predict_fn(preset("tiny", **SMALL), basis)
    spinless = {k: v for k, v in params.items() if "soc" not in k}
    on0, ed0 = jax.jit(apply_none)(spinless, graph)
    np.testing.assert_allclose(0.5 * (on[:, 0, 0] + on[:, 1, 1]), on0, atol=1e-13)
    np.testing.assert_allclose(0.5 * (ed[:, 0, 0] + ed[:, 1, 1]), ed0, atol=1e-13)

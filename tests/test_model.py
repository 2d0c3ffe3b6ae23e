"""ELCT network: O(3) equivariance with parity, invariances, jit, padding, Hermiticity (float64)."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.config import AttentionConfig, preset
from elct_jax.geometry.graph import neighbor_graph, pad_graph
from elct_jax.nn.model import make_predict_fn
from elct_jax.geometry.structure import Structure

CUTOFF = 5.0
# a distorted water dimer: O has 3s2p1d, H 2s1p in def2-SVP, so s, p and d blocks all appear
SYMBOLS = ("O", "H", "H", "O", "H", "H")
POSITIONS = np.array([
    [0.00, 0.00, 0.12], [0.77, 0.05, -0.47], [-0.74, -0.08, -0.50],
    [0.30, 2.85, 0.20], [0.95, 3.40, -0.25], [-0.45, 3.45, 0.35],
])


@pytest.fixture(scope="module")
def basis():
    return OrbitalBasis.from_pyscf("def2-svp", ["O", "H"])


def _graph(basis, positions, symbols=SYMBOLS, lattice=None):
    pbc = (False,) * 3 if lattice is None else (True,) * 3
    structure = Structure(symbols, positions, lattice, pbc)
    return neighbor_graph(structure, CUTOFF, {el: i for i, el in enumerate(basis.elements)})


def _perturbed(params, key, std=0.2):
    """Random offsets on every parameter, so zero-initialised gains and biases are exercised too."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def _model(basis, config, params=None):
    """(params, apply, jitted apply); without ``params``, the initialiser's values perturbed at random."""
    init, apply = make_predict_fn(config, basis)
    if params is None:
        params = _perturbed(jax.jit(init)(jax.random.PRNGKey(0), _graph(basis, POSITIONS)), jax.random.PRNGKey(1))
    return params, apply, jax.jit(apply)


def _random_params(basis, config):
    """Random parameters of the right shapes without compiling the initialiser (keeps the suite fast)."""
    init, _ = make_predict_fn(config, basis)
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0), _graph(basis, POSITIONS))
    return _perturbed(jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), jax.random.PRNGKey(2), 0.5)


@pytest.fixture(scope="module")
def model(basis):
    return _model(basis, preset("tiny", dtype="float64"))


def _equivariance_error(basis, symbols, graph, blocks, blocks_rot, q):
    """max |H'(Q) - D(Q) H D(Q)^T| over on-site and edge blocks (real orbital region)."""
    d = [basis.rotation_matrix([s], q) for s in symbols]
    n = [basis.n_orbitals(s) for s in symbols]
    (on, ed), (on2, ed2) = blocks, blocks_rot
    err = max(np.abs(on2[a, : n[a], : n[a]] - d[a] @ on[a, : n[a], : n[a]] @ d[a].T).max() for a in range(len(n)))
    for k, (i, j) in enumerate(zip(graph.senders, graph.receivers)):
        err = max(err, np.abs(ed2[k, : n[i], : n[j]] - d[i] @ ed[k, : n[i], : n[j]] @ d[j].T).max())
    return err


def _check_equivariance(basis, apply_jit, params, symbols=SYMBOLS, positions=POSITIONS, lattice=None, tol=1e-10):
    graph = _graph(basis, positions, symbols, lattice)
    blocks = apply_jit(params, graph)
    assert np.abs(blocks[1]).max() > 1e-2 and np.abs(blocks[0]).max() > 1e-2
    rot = Rotation.random(random_state=11).as_matrix()
    for q in (rot, -rot, -np.eye(3)):  # proper rotation, improper rotation, inversion
        lat = None if lattice is None else lattice @ q.T
        graph_q = _graph(basis, positions @ q.T, symbols, lat)
        np.testing.assert_array_equal(graph_q.senders, graph.senders)
        err = _equivariance_error(basis, symbols, graph, blocks, apply_jit(params, graph_q), q)
        assert err < tol, (q, err)


def test_rotation_and_inversion_equivariance(basis, model):
    params, _, apply_jit = model
    _check_equivariance(basis, apply_jit, params)


def test_equivariance_lmax6_with_m_truncation(basis):
    config = preset("tiny", dtype="float64", l_max=6, m_max=3, channels=4, ffn_channels=4,
                    attention=AttentionConfig(heads=2, alpha_dim=2))
    params, _, apply_jit = _model(basis, config, _random_params(basis, config))
    _check_equivariance(basis, apply_jit, params)


def test_periodic_equivariance_with_self_images(basis, model):
    """A crystal whose cell is smaller than the cutoff: edges (i, i, R != 0) and many images."""
    params, _, apply_jit = model
    lattice = np.array([[3.1, 0.2, 0.0], [0.4, 3.3, 0.1], [0.0, -0.3, 3.6]])
    positions = np.array([[0.1, 0.0, 0.2], [0.85, 0.1, -0.4], [-0.6, 0.2, 0.7]])
    graph = _graph(basis, positions, ("O", "H", "H"), lattice)
    assert np.any(graph.senders == graph.receivers)
    _check_equivariance(basis, apply_jit, params, ("O", "H", "H"), positions, lattice)


def test_translation_invariance(basis, model):
    params, _, apply_jit = model
    on, ed = apply_jit(params, _graph(basis, POSITIONS))
    on2, ed2 = apply_jit(params, _graph(basis, POSITIONS + np.array([3.7, -1.2, 8.9])))
    np.testing.assert_allclose(on2, on, atol=1e-10)
    np.testing.assert_allclose(ed2, ed, atol=1e-10)


def test_permutation_equivariance(basis, model):
    params, _, apply_jit = model
    perm = np.array([4, 0, 3, 5, 2, 1])  # new atom a is old atom perm[a]
    graph = _graph(basis, POSITIONS)
    graph_p = _graph(basis, POSITIONS[perm], tuple(SYMBOLS[p] for p in perm))
    on, ed = apply_jit(params, graph)
    on_p, ed_p = apply_jit(params, graph_p)
    np.testing.assert_allclose(on_p, on[perm], atol=1e-10)
    old_edge = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(graph.senders, graph.receivers))}
    index = [old_edge[(perm[i], perm[j])] for i, j in zip(graph_p.senders, graph_p.receivers)]
    np.testing.assert_allclose(ed_p, ed[np.array(index)], atol=1e-10)


@pytest.mark.slow  # 19 s of eager dispatch; every other model test runs the jitted function
def test_jit_equals_no_jit(basis, model):
    params, apply, apply_jit = model
    graph = _graph(basis, POSITIONS)
    for a, b in zip(apply(params, graph), apply_jit(params, graph)):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_padding_does_not_change_real_outputs(basis, model):
    params, _, apply_jit = model
    graph = _graph(basis, POSITIONS)
    n_node, n_edge = len(graph.nodes["species"]), len(graph.senders)
    padded = pad_graph(graph, n_node + 3, n_edge + 7)
    on, ed = apply_jit(params, graph)
    on_p, ed_p = apply_jit(params, padded)
    np.testing.assert_allclose(on_p[:n_node], on, atol=1e-12)
    np.testing.assert_allclose(ed_p[:n_edge], ed, atol=1e-12)
    assert np.all(np.isfinite(on_p)) and np.all(ed_p[n_edge:] == 0)

    def loss(p):  # real blocks only, as a training loss would do
        o, e = apply_jit(p, padded)
        return jnp.sum(o[:n_node] ** 2) + jnp.sum(e[:n_edge] ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_padding_edges_pointing_at_a_real_atom_are_masked(basis, model):
    """Another padding scheme: extra zero-length edges 0 -> 0 (into a real atom's softmax and sum)."""
    params, _, apply_jit = model
    graph = _graph(basis, POSITIONS)
    n_edge, extra = len(graph.senders), 5
    zeros = np.zeros(extra, np.int32)
    padded = graph._replace(
        senders=np.concatenate([graph.senders, zeros]), receivers=np.concatenate([graph.receivers, zeros]),
        edges={"shift": np.concatenate([graph.edges["shift"], np.zeros((extra, 3))]),
               "cell_shift": np.concatenate([graph.edges["cell_shift"], np.zeros((extra, 3), np.int32)]),
               "reverse": np.concatenate([graph.edges["reverse"], n_edge + np.arange(extra, dtype=np.int32)])},
        n_edge=np.array([n_edge + extra], np.int32))
    on, ed = apply_jit(params, graph)
    on_p, ed_p = apply_jit(params, padded)
    np.testing.assert_allclose(on_p, on, atol=1e-12)
    np.testing.assert_allclose(ed_p[:n_edge], ed, atol=1e-12)
    assert np.all(ed_p[n_edge:] == 0)


def test_hermiticity_and_block_layout(basis, model):
    params, _, apply_jit = model
    graph = _graph(basis, POSITIONS)
    on, ed = apply_jit(params, graph)
    n_max = max(basis.n_orbitals(el) for el in basis.elements)
    assert on.shape == (6, n_max, n_max) and ed.shape == (len(graph.senders), n_max, n_max)
    np.testing.assert_array_equal(ed[graph.edges["reverse"]], np.swapaxes(ed, 1, 2))
    np.testing.assert_array_equal(on, np.swapaxes(on, 1, 2))
    n = np.array([basis.n_orbitals(s) for s in SYMBOLS])
    outside = np.arange(n_max)[None, :] >= n[:, None]  # [atom, slot]
    assert np.all(on[outside] == 0) and np.all(np.swapaxes(on, 1, 2)[outside] == 0)
    assert np.all(ed[outside[graph.senders]] == 0)
    assert np.all(np.swapaxes(ed, 1, 2)[outside[graph.receivers]] == 0)


def test_float32(basis, model):
    params64 = model[0]
    cast = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params64)
    params, _, apply_jit = _model(basis, preset("tiny", dtype="float32"), cast)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    on, ed = apply_jit(params, _graph(basis, POSITIONS))
    assert on.dtype == jnp.float32 and ed.dtype == jnp.float32
    _check_equivariance(basis, apply_jit, params, tol=1e-4 * max(np.abs(on).max(), np.abs(ed).max()))


def test_lmax_too_small_for_the_basis_raises(basis):
    init, _ = make_predict_fn(preset("tiny", l_max=3), basis)
    with pytest.raises(ValueError, match="l_max"):
        jax.eval_shape(init, jax.random.PRNGKey(0), _graph(basis, POSITIONS))


@pytest.mark.slow
def test_fits_a_real_water_hamiltonian(basis):
    """Capacity and wiring: PBE/def2-SVP Fock matrix of one water (PySCF, internal order, blocks via
    the graph). End-to-end Adam must cut the error by > 100x; the output layer (linear in the head
    weights) solved exactly on the trained features must then reach MAE < 0.1 meV."""
    import optax
    from pyscf import dft, gto

    from elct_jax.hamiltonian.blocks import block_layout, dense_to_blocks

    symbols, positions = SYMBOLS[:3], POSITIONS[:3]
    mf = dft.RKS(gto.M(atom=list(zip(symbols, positions)), basis="def2-svp", unit="Angstrom", verbose=0), xc="pbe")
    mf.kernel()
    graph = _graph(basis, positions, symbols)
    target_on, target_ed = dense_to_blocks(mf.get_fock(), block_layout(basis, symbols, graph), "pyscf")
    n = np.array([basis.n_orbitals(s) for s in symbols])
    slots = np.arange(target_on.shape[-1])
    mask_on = (slots[None, :, None] < n[:, None, None]) & (slots[None, None, :] < n[:, None, None])
    mask_ed = (slots[None, :, None] < n[graph.senders, None, None]) & (slots[None, None, :] < n[graph.receivers, None, None])
    target = jnp.concatenate([target_on[mask_on], target_ed[mask_ed]])  # [n_entries] Hartree

    init, apply = make_predict_fn(preset("tiny", dtype="float64"), basis)
    params = jax.jit(init)(jax.random.PRNGKey(0), graph)

    def predict(p):
        on, ed = apply(p, graph)
        return jnp.concatenate([on[mask_on], ed[mask_ed]])

    def mae_mev(p):
        return float(jnp.mean(jnp.abs(predict(p) - target))) * 27211.386

    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, 400))
    state = optimizer.init(params)

    @jax.jit
    def step(p, s):
        grads = jax.grad(lambda q: jnp.mean((predict(q) - target) ** 2))(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    start = mae_mev(params)
    for _ in range(400):
        params, state = step(params, state)
    trained = mae_mev(params)
    assert trained < start / 100, (start, trained)

    heads = {k: params[k] for k in ("onsite_head", "edge_head")}
    flat, unravel = jax.flatten_util.ravel_pytree(heads)
    blocks_of = jax.jit(lambda x: predict({**params, **unravel(x)}))  # affine in the head weights
    jacobian = np.asarray(jax.jit(jax.jacfwd(blocks_of))(flat))
    delta, *_ = np.linalg.lstsq(jacobian, np.asarray(target - blocks_of(flat)), rcond=None)
    solved = float(jnp.mean(jnp.abs(blocks_of(flat + delta) - target))) * 27211.386
    print(f"water Fock MAE: init {start:.1f} meV, Adam x400 {trained:.3f} meV, output layer solved {solved:.2e} meV")
    assert solved < 0.1


def test_edge_init_scale_scales_the_initial_edge_blocks(basis):
    """ModelConfig.edge_init_scale multiplies the edge head's initial weights, hence its initial blocks
    (the head is linear and its bias starts at zero); the on-site head is untouched."""
    from elct_jax.nn.head import WignerEckartHead

    shells = tuple(tuple(basis.shells[el]) for el in basis.elements)
    rows = tuple(shells[a] for a in range(2) for _ in range(2))
    cols = tuple(shells[b] for _ in range(2) for b in range(2))
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 25, 2, 4), jnp.float64)  # l_max 4 features, 4 channels
    group = jnp.array([0, 1, 2, 3, 1])

    def blocks(scale):
        head = WignerEckartHead(rows, cols, 14, param_dtype=jnp.float64, init_scale=scale)
        params = head.init(jax.random.PRNGKey(0), x, group)
        return head.apply(params, x, group)

    full, small = blocks(1.0), blocks(0.05)
    assert float(jnp.max(jnp.abs(full))) > 0.1
    np.testing.assert_allclose(np.asarray(small), 0.05 * np.asarray(full), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="edge_init_scale"):
        preset("tiny", edge_init_scale=0.0)

"""Block <-> dense assembly on real PySCF matrices, orders, batching, and the Bloch sum against PySCF pbc."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto, scf
from pyscf.pbc import gto as pbcgto

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.graph import batch_graphs, neighbor_graph, pad_graph, pad_to_bucket
from ai2dft.units import PAD_LEVEL_HARTREE
from elct_jax.hamiltonian.blocks import (
    block_layout,
    blocks_from_dict,
    blocks_to_dense,
    blocks_to_dict,
    bloch_sum,
    dense_to_blocks,
    dense_to_dict,
    dict_to_dense,
    max_orbitals,
    symmetrize_edges,
    symmetrize_onsite,
)
from elct_jax.geometry.structure import Structure
from crystals import real_space_overlaps

WATER = (("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
AMMONIA = (("N", "H", "H", "H"), np.array([[0.0, 0.0, 0.1], [0.94, 0.0, -0.27], [-0.47, 0.81, -0.27], [-0.47, -0.81, -0.27]]))


def pyscf_matrices(symbols, pos):
    mol = gto.M(atom=list(zip(symbols, pos.tolist())), basis="def2-svp", verbose=0)
    mf = scf.RHF(mol).run()
    return mol.intor("int1e_ovlp"), mf.get_fock()


@pytest.fixture(scope="module")
def basis():
    return OrbitalBasis.from_pyscf("def2-svp", ["H", "N", "O"])


@pytest.fixture(scope="module")
def species(basis):
    return {el: i for i, el in enumerate(basis.elements)}


@pytest.fixture(scope="module")
def water(basis, species):
    structure = Structure(*WATER)
    S, F = pyscf_matrices(*WATER)
    return structure, neighbor_graph(structure, 5.0, species), S, F


def test_dense_blocks_round_trip_exact(basis, water):
    structure, graph, S, F = water
    layout = block_layout(basis, structure.symbols, graph)
    assert layout.gamma_only and layout.n_ao_pad == 24
    for M in (S, F):
        onsite, edges = dense_to_blocks(M, layout)
        assert onsite.shape == (3, max_orbitals(basis), max_orbitals(basis)) and edges.shape == (6, 14, 14)
        np.testing.assert_array_equal(np.asarray(blocks_to_dense(onsite, edges, layout)), M)
        # orders: internal = PySCF with p reordered (py, pz, px); O has p and d shells
        internal = np.asarray(blocks_to_dense(onsite, edges, layout, order="internal"))
        np.testing.assert_array_equal(internal, basis.to_internal(M, structure.symbols, "pyscf"))
        assert not np.array_equal(internal, M)
        openmx = np.asarray(blocks_to_dense(onsite, edges, layout, order="openmx"))
        np.testing.assert_array_equal(openmx, basis.from_internal(internal, structure.symbols, "openmx"))
    # the dict path gives the same blocks as the gather
    on_d, ed_d, found = blocks_from_dict(dense_to_dict(F, basis, structure.symbols), basis, structure.symbols, graph)
    on_g, ed_g = dense_to_blocks(F, layout)
    assert found.all()
    np.testing.assert_array_equal(on_d, on_g)
    np.testing.assert_array_equal(ed_d, ed_g)
    back = blocks_to_dict(on_d, ed_d, basis, structure.symbols, graph)
    np.testing.assert_array_equal(dict_to_dense(back, basis, structure.symbols), F)


def test_short_cutoff_drops_pairs_and_padding(basis, species, water):
    structure, full_graph, S, F = water
    graph = neighbor_graph(structure, 1.2, species)  # O-H only, no H-H edge
    padded = pad_graph(graph, n_node=6, n_edge=12)
    layout = block_layout(basis, structure.symbols, padded, n_ao_pad=30)
    onsite, edges = dense_to_blocks(F, layout)
    assert np.all(np.asarray(onsite)[3:] == 0) and np.all(np.asarray(edges)[4:] == 0)
    dense = np.asarray(blocks_to_dense(onsite + 7.0 * (np.arange(6) >= 3)[:, None, None], edges + 3.0 * (np.arange(12) >= 4)[:, None, None], layout))
    off = basis.ao_offsets(structure.symbols)
    expected = F.copy()
    expected[off[1] : off[2], off[2] : off[3]] = 0.0
    expected[off[2] : off[3], off[1] : off[2]] = 0.0
    np.testing.assert_array_equal(dense[:24, :24], expected)  # junk on padding never reaches H
    np.testing.assert_array_equal(dense[24:, 24:], PAD_LEVEL_HARTREE * np.eye(6))
    assert np.all(dense[:24, 24:] == 0)
    # the overlap, padded with unit diagonal, keeps its spectrum plus ones
    full = block_layout(basis, structure.symbols, pad_graph(full_graph, 6, 12), n_ao_pad=30)
    S_dense = np.asarray(blocks_to_dense(*dense_to_blocks(S, full), full, pad_diagonal=1.0))
    expected_eigs = np.sort(np.concatenate([np.linalg.eigvalsh(S), np.ones(6)]))
    np.testing.assert_allclose(np.linalg.eigvalsh(S_dense), expected_eigs, atol=1e-13)


def test_jit_and_adjoint_gradient(basis, water):
    structure, graph, _, F = water
    layout = block_layout(basis, structure.symbols, graph)
    onsite, edges = dense_to_blocks(F, layout)
    W = np.random.default_rng(0).normal(size=F.shape)
    dense_jit = jax.jit(blocks_to_dense, static_argnames="order")(onsite, edges, layout)
    np.testing.assert_array_equal(np.asarray(dense_jit), F)
    g_on, g_ed = jax.grad(lambda o, e: jnp.sum(blocks_to_dense(o, e, layout) * W), argnums=(0, 1))(onsite, edges)
    w_on, w_ed = dense_to_blocks(W, layout)  # the adjoint of a scatter is the gather
    np.testing.assert_allclose(g_on, w_on, atol=1e-14)
    np.testing.assert_allclose(g_ed, w_ed, atol=1e-14)


def test_batched_and_vmapped_molecules(basis, species, water):
    structure_w, graph_w, _, F_w = water
    structure_a = Structure(*AMMONIA)
    _, F_a = pyscf_matrices(*AMMONIA)
    graph_a = neighbor_graph(structure_a, 5.0, species)
    batch = pad_to_bucket(batch_graphs([graph_w, graph_a]))
    layout = block_layout(basis, [structure_w.symbols, structure_a.symbols], batch)
    assert layout.n_ao_pad == 29
    on_w, ed_w = dense_to_blocks(F_w, block_layout(basis, structure_w.symbols, graph_w))
    on_a, ed_a = dense_to_blocks(F_a, block_layout(basis, structure_a.symbols, graph_a))
    n_node, n_edge = batch.nodes["species"].shape[0], batch.senders.shape[0]
    onsite = np.zeros((n_node, 14, 14))
    onsite[:7] = np.concatenate([on_w, on_a])
    edges = np.zeros((n_edge, 14, 14))
    edges[: 6 + 12] = np.concatenate([ed_w, ed_a])
    dense = np.asarray(blocks_to_dense(onsite, edges, layout))
    np.testing.assert_array_equal(dense[0, :24, :24], F_w)
    np.testing.assert_array_equal(dense[1], F_a)
    np.testing.assert_array_equal(np.diag(dense[0])[24:], PAD_LEVEL_HARTREE)
    on_b, ed_b = dense_to_blocks(dense, layout)
    np.testing.assert_array_equal(on_b, onsite)
    np.testing.assert_array_equal(ed_b, edges)
    # vmap over stacked single-structure layouts of identical padded sizes
    singles = [(pad_graph(g, 8, 16), s) for g, s in [(graph_w, structure_w.symbols), (graph_a, structure_a.symbols)]]
    layouts = [block_layout(basis, s, g, n_ao_pad=29) for g, s in singles]
    stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *layouts)
    blocks = [dense_to_blocks(np.pad(F, (0, 29 - len(F))), l) for F, l in [(F_w, layouts[0]), (F_a, layouts[1])]]
    on_s, ed_s = (np.stack(x) for x in zip(*blocks))
    dense_v = np.asarray(jax.vmap(blocks_to_dense)(on_s, ed_s, stacked))
    np.testing.assert_array_equal(dense_v, dense)


def test_symmetrized_random_blocks_give_hermitian_bloch_matrices(crystal):
    """Network-like random blocks: after symmetrize_edges/onsite, H(k) is Hermitian at every k."""
    structure, basis = crystal
    graph = neighbor_graph(structure, 4.0, {"H": 0, "He": 1})
    rng = np.random.default_rng(1)
    edges = rng.normal(size=(len(graph.senders), 5, 5))
    onsite = rng.normal(size=(2, 5, 5))
    rev = graph.edges["reverse"]
    sym = np.asarray(symmetrize_edges(edges, rev))
    np.testing.assert_array_equal(sym[rev], np.swapaxes(sym, 1, 2))
    np.testing.assert_allclose(symmetrize_edges(sym, rev), sym, atol=1e-15)
    layout = block_layout(basis, structure.symbols, graph)
    kfrac = rng.uniform(-0.5, 0.5, size=(4, 3))
    Hk = np.asarray(bloch_sum(symmetrize_onsite(onsite), sym, layout, kfrac))
    np.testing.assert_allclose(Hk, np.conj(np.swapaxes(Hk, 1, 2)), atol=1e-13)
    raw = np.asarray(bloch_sum(onsite, edges, layout, kfrac))
    assert np.abs(raw - np.conj(np.swapaxes(raw, 1, 2))).max() > 0.1  # not Hermitian before


@pytest.fixture(scope="module")
def crystal():
    """H and He (6-31G**: s and p shells) in a small skewed cell, so the cutoff spans many images."""
    lattice = np.array([[2.6, 0.0, 0.0], [0.7, 2.4, 0.0], [0.3, -0.5, 2.8]])
    structure = Structure(("H", "He"), np.array([[0.1, 0.2, 0.0], [1.3, 1.1, 1.2]]), lattice, (True, True, True))
    basis = OrbitalBasis.from_pyscf("6-31g**", ["H", "He"])
    return structure, basis


def test_bloch_sum_matches_pyscf_pbc(crystal):
    structure, basis = crystal
    graph = neighbor_graph(structure, 10.0, {"H": 0, "He": 1})
    blocks = real_space_overlaps(structure, basis, graph)
    onsite, edges, found = blocks_from_dict(blocks, basis, structure.symbols, graph)
    assert found.all() and len(edges) > 500
    layout = block_layout(basis, structure.symbols, graph)
    assert not layout.gamma_only
    kfrac = np.array([[0.0, 0.0, 0.0], [0.25, -0.1, 0.4], [0.5, 0.5, 0.5]])
    Sk = np.asarray(bloch_sum(onsite, edges, layout, kfrac))
    cell = pbcgto.M(atom=list(zip(structure.symbols, structure.positions_ang.tolist())), a=structure.lattice_ang,
                    basis=basis.name, spin=1, precision=1e-12, verbose=0)
    ref = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=cell.get_abs_kpts(kfrac)))
    assert np.abs(ref[1].imag).max() > 1e-2  # a genuinely complex S(k)
    np.testing.assert_allclose(Sk, ref, atol=1e-10)  # measured 5e-12 at this 10 A cutoff
    np.testing.assert_allclose(Sk, np.conj(np.swapaxes(Sk, 1, 2)), atol=1e-12)
    # Gamma point equals the dense sum over R, and the internal order differs only by p permutations
    np.testing.assert_allclose(Sk[0].real, blocks_to_dense(onsite, edges, layout), atol=1e-14)
    internal = np.asarray(bloch_sum(onsite, edges, layout, kfrac, order="internal"))
    np.testing.assert_allclose(internal, basis.to_internal(Sk, structure.symbols, "pyscf"), atol=1e-14)
    with pytest.raises(ValueError, match="molecule"):
        dense_to_blocks(Sk[0].real, layout)
    # dict round trip keeps every block of the graph
    back = blocks_to_dict(onsite, edges, basis, structure.symbols, graph)
    assert set(back) <= set(blocks) and len(back) == len(edges) + structure.n_atoms
    assert all(np.array_equal(back[k], blocks[k]) for k in back)

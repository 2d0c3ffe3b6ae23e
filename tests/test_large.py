"""Large structures: chunked prediction equals whole-graph prediction, sparse H(R) store, CSR Bloch
sums, chunked PySCF overlaps, multi-device chunks."""
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell
from ai2dft.pyscf_bridge.realspace import direct_overlaps
from ai2dft.pyscf_bridge.overlap import pair_overlaps
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.config import preset
from elct_jax.data.loader import species_index
from elct_jax.geometry.graph import neighbor_graph, neighbor_pairs
from elct_jax.hamiltonian.blocks import block_layout, blocks_from_dict, bloch_sum
from elct_jax.inference.chunked import ChunkBuilder, partition, predict_sparse, receptive_hops
from elct_jax.hamiltonian.sparse import BlochMatrix, SparseBlocks, overlap_like
from elct_jax.nn.model import make_predict_fn
from elct_jax.inference.predict import predict_blocks
from elct_jax.train.saved_model import TrainedModel
from crystals import graphene_supercell

CUTOFF = 3.0  # first to third graphene neighbours: a dense enough graph, a small test


@pytest.fixture(scope="module")
def model():
    """float64 ELCT with random parameters (exactness needs no training); l_max 2 covers s/p blocks."""
    basis = OrbitalBasis.from_pyscf("gth-szv", ["C"])
    config = preset("tiny", dtype="float64", l_max=2)
    init, apply = make_predict_fn(config, basis)
    graph = neighbor_graph(graphene_supercell((1, 1, 1)), CUTOFF, species_index(basis))
    params = jax.jit(init)(jax.random.PRNGKey(0), graph)  # eager init of the network: several times slower
    return TrainedModel(config, basis, CUTOFF, params, apply)


@pytest.fixture(scope="module")
def supercell():
    return graphene_supercell((4, 4, 1))


@pytest.fixture(scope="module")
def whole(model, supercell):
    return predict_blocks(model, supercell)


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_chunked_prediction_equals_whole_graph(model, supercell, whole):
    chunks = partition(supercell.positions_ang, 6)
    assert len(chunks) >= 5
    h = predict_sparse(model, supercell, chunk_atoms=6)
    assert max_diff(h.to_dict(), whole) < 1e-10
    assert max(float(np.abs(b).max()) for b in whole.values()) > 0.1  # not trivially zero


def test_halo_of_one_hop_less_is_not_exact(model, supercell, whole):
    """The receptive field is tight: n_blocks hops (one less than receptive_hops) change the blocks."""
    assert receptive_hops(model.config) == model.config.n_blocks + 1
    h = predict_sparse(model, supercell, chunk_atoms=6, hops=receptive_hops(model.config) - 1)
    assert max_diff(h.to_dict(), whole) > 1e-4


def test_partition_covers_every_atom_once_in_compact_chunks():
    pos = graphene_supercell((6, 6, 1)).positions_ang
    chunks = partition(pos, 10)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(pos)))
    assert max(len(c) for c in chunks) <= 10
    spread = max(float(np.ptp(pos[c][:, :2], axis=0).max()) for c in chunks)
    assert spread < 0.5 * float(np.ptp(pos[:, :2], axis=0).max())  # compact, not strided


def test_chunk_halo_holds_exactly_the_atoms_within_hops(supercell):
    graph = neighbor_graph(supercell, CUTOFF, {"C": 0})
    builder = ChunkBuilder(graph, hops=2)
    core = np.array([0, 1])
    nodes = builder.halo(core)
    adjacency = np.zeros((supercell.n_atoms,) * 2, bool)
    adjacency[graph.senders, graph.receivers] = True
    reach = np.zeros(supercell.n_atoms, bool)
    reach[core] = True
    for _ in range(2):
        reach = reach | adjacency[reach].any(axis=0)
    assert sorted(nodes.tolist()) == np.flatnonzero(reach).tolist()
    assert nodes[:2].tolist() == [0, 1]


def test_bloch_matrix_equals_dense_bloch_sum(model, supercell, whole):
    graph = neighbor_graph(supercell, CUTOFF, species_index(model.basis))
    onsite, edges, found = blocks_from_dict(whole, model.basis, supercell.symbols, graph)
    assert found.all()
    layout = block_layout(model.basis, supercell.symbols, graph)
    h = SparseBlocks.from_dict(whole, [4] * supercell.n_atoms)
    bloch = BlochMatrix(h)
    for k in ([0.0, 0.0, 0.0], [0.13, -0.27, 0.0], [0.5, 1 / 3, 0.0]):
        dense = np.asarray(bloch_sum(onsite, edges, layout, np.array([k]), order="internal"))[0]
        assert np.abs(bloch.bloch(k).toarray() - dense).max() < 1e-12


def test_small_cell_images_of_the_same_pair_are_summed():
    """A primitive cell with a long cutoff: many images R of one pair (i, j) share one CSR block."""
    s = graphene_supercell((1, 1, 1), sigma=0.0)
    i, j, R = neighbor_pairs(s, 6.0)
    rng = np.random.default_rng(1)
    blocks = {(0, 0, 0, a, a): rng.normal(size=(4, 4)) for a in range(2)}
    for e in range(len(i)):
        blocks[(*R[e], i[e], j[e])] = rng.normal(size=(4, 4))
    m = SparseBlocks.from_dict(blocks, [4, 4])
    k = np.array([0.21, 0.37, 0.0])
    ref = np.zeros((8, 8), complex)
    for (r1, r2, r3, a, b), block in blocks.items():
        ref[4 * a:4 * a + 4, 4 * b:4 * b + 4] += np.exp(2j * np.pi * k @ [r1, r2, r3]) * block
    assert np.abs(BlochMatrix(m).bloch(k).toarray() - ref).max() < 1e-12
    assert m.to_dict().keys() == blocks.keys()


def test_sparse_blocks_refuse_missing_onsite_and_bad_shapes():
    with pytest.raises(KeyError, match="on-site block"):
        SparseBlocks.from_dict({(0, 0, 0, 0, 0): np.eye(4)}, [4, 4])
    with pytest.raises(ValueError, match="shape"):
        SparseBlocks.from_dict({(0, 0, 0, 0, 0): np.eye(3)}, [4])


def test_chunked_overlaps_equal_direct_real_space_overlaps():
    s = graphene_supercell((2, 2, 1))
    cell = build_cell(s, DFTSettings(basis="gth-szv", xc="lda", kmesh=(2, 2, 1)))
    direct = direct_overlaps(cell, 1e-10, s.pbc)
    i, j, R = neighbor_pairs(s, 7.0)
    onsite, blocks = pair_overlaps(s.symbols, s.positions_ang, s.lattice_ang, "gth-szv", i, j, R, chunk_atoms=3)
    off = cell.aoslice_by_atom()[:, 2:4]
    for e in range(len(i)):
        ref = direct[tuple(int(x) for x in R[e])][off[i[e], 0]:off[i[e], 1], off[j[e], 0]:off[j[e], 1]]
        assert np.abs(blocks[e] - ref).max() < 1e-12
    for a in range(s.n_atoms):
        assert np.abs(onsite[a] - direct[(0, 0, 0)][off[a, 0]:off[a, 1], off[a, 0]:off[a, 1]]).max() < 1e-12
    assert np.abs(blocks).max() > 0.1


def test_overlap_like_is_in_internal_order(supercell):
    """S(k) from overlap_like equals PySCF's lattice-summed S(k) reordered to internal order."""
    s = graphene_supercell((1, 1, 1))
    basis = OrbitalBasis.from_pyscf("gth-szv", ["C"])
    i, j, R = neighbor_pairs(s, 12.0)
    like = SparseBlocks.from_dict({**{(0, 0, 0, a, a): np.zeros((4, 4)) for a in range(2)},
                                   **{(*R[e], i[e], j[e]): np.zeros((4, 4)) for e in range(len(i))}}, [4, 4])
    S = overlap_like(like, s, basis)
    cell = build_cell(s, DFTSettings(basis="gth-szv", xc="lda", kmesh=(1, 1, 1)))
    k = np.array([0.1, 0.3, 0.0])
    ref = cell.pbc_intor("int1e_ovlp", hermi=1, kpts=cell.get_abs_kpts(k[None]))[0]
    ref = basis.to_internal(ref, s.symbols, "pyscf")
    assert np.abs(BlochMatrix(S).bloch(k).toarray() - ref).max() < 1e-7


@pytest.mark.slow
def test_chunks_on_two_host_devices_equal_one_device():
    """Chunks dealt to two (forced host) devices give the single-device blocks."""
    code = textwrap.dedent(f"""
        import jax, numpy as np
        import ai2dft; ai2dft.enable_float64()
        import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})
        from crystals import graphene_supercell
        from test_large import CUTOFF
        from elct_jax.geometry.basis import OrbitalBasis
        from elct_jax.config import preset
        from elct_jax.data.loader import species_index
        from elct_jax.geometry.graph import neighbor_graph
        from elct_jax.inference.chunked import predict_sparse
        from elct_jax.nn.model import make_predict_fn
        from elct_jax.train.saved_model import TrainedModel
        assert len(jax.local_devices()) == 2
        basis = OrbitalBasis.from_pyscf("gth-szv", ["C"])
        config = preset("tiny", dtype="float64", l_max=2)
        init, apply = make_predict_fn(config, basis)
        s = graphene_supercell((4, 4, 1))
        params = init(jax.random.PRNGKey(0), neighbor_graph(s, CUTOFF, species_index(basis)))
        model = TrainedModel(config, basis, CUTOFF, params, apply)
        two = predict_sparse(model, s, chunk_atoms=8)
        one = predict_sparse(model, s, chunk_atoms=8, devices=jax.local_devices()[:1])
        print("DIFF", max(np.abs(two.blocks - one.blocks).max(), np.abs(two.onsite - one.onsite).max()))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    diff = float(out.stdout.split("DIFF")[-1])
    assert diff < 1e-12


def test_molecule_overlap_equals_chunked_pair_overlaps():
    """Molecules: the dense mol.intor overlap and the chunked pair blocks (all pairs, R = 0) agree."""
    from ai2dft.pyscf_bridge.overlap import molecule_overlap

    symbols = ("O", "H", "H", "C")
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [0.3, -0.4, 2.1]])
    dense = molecule_overlap(symbols, pos, "def2-svp")
    n = len(symbols)
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    off_site = i != j
    onsite, blocks = pair_overlaps(symbols, pos, None, "def2-svp", i[off_site], j[off_site],
                                   np.zeros((off_site.sum(), 3), int), chunk_atoms=2)
    nao = [14, 5, 5, 14]
    off = np.concatenate([[0], np.cumsum(nao)])
    for e, (a, b) in enumerate(zip(i[off_site], j[off_site])):
        assert np.abs(blocks[e, :nao[a], :nao[b]] - dense[off[a]:off[a + 1], off[b]:off[b + 1]]).max() < 1e-13
    for a in range(n):
        assert np.abs(onsite[a, :nao[a], :nao[a]] - dense[off[a]:off[a + 1], off[a]:off[a + 1]]).max() < 1e-13

"""Structures and neighbour graphs: brute-force periodic images, reverse edges, padding, batching."""
import itertools

import numpy as np
import pytest

from elct_jax.geometry.graph import (
    batch_graphs,
    bucket_size,
    edge_mask,
    graph_mask,
    neighbor_graph,
    node_mask,
    pad_graph,
    pad_to_bucket,
)
from elct_jax.geometry.structure import Structure

SPECIES = {"H": 0, "O": 1, "C": 2, "N": 3}


def brute_force_pairs(structure, cutoff):
    """All (i, j, R) within cutoff by explicit enumeration of enough lattice images."""
    pos = structure.positions_ang
    if structure.lattice_ang is None:
        lattice, ranges = np.zeros((3, 3)), [range(1)] * 3
    else:
        lattice = structure.lattice_ang
        heights = 1.0 / np.linalg.norm(np.linalg.inv(lattice).T, axis=1)  # plane spacings
        extent = np.ptp(pos @ np.linalg.inv(lattice), axis=0)  # positions need not be wrapped
        n = np.ceil(cutoff / heights + extent).astype(int) + 1
        ranges = [range(-n[a], n[a] + 1) if structure.pbc[a] else range(1) for a in range(3)]
    out = set()
    for R in itertools.product(*ranges):
        d = pos[None, :, :] + np.array(R) @ lattice - pos[:, None, :]
        for i, j in zip(*np.nonzero(np.linalg.norm(d, axis=-1) < cutoff)):
            if i != j or any(R):
                out.add((int(i), int(j), *R))
    return out


def graph_pairs(g):
    return {(int(i), int(j), *map(int, R)) for i, j, R in zip(g.senders, g.receivers, g.edges["cell_shift"])}


def edge_vectors(g):
    pos = g.nodes["positions"]
    return pos[g.receivers] + g.edges["shift"] - pos[g.senders]


@pytest.fixture(scope="module")
def water():
    pos = [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]
    return Structure(("O", "H", "H"), np.array(pos))


@pytest.fixture(scope="module")
def skewed_crystal():
    """Two atoms in a small, strongly skewed triclinic cell; the cutoff spans several cells."""
    lattice = np.array([[2.1, 0.0, 0.0], [1.7, 1.3, 0.0], [0.4, -0.6, 1.9]])
    frac = np.array([[0.1, 0.2, 0.05], [0.6, 0.45, 1.7]])  # second atom deliberately outside the cell
    return Structure(("C", "N"), frac @ lattice, lattice, (True, True, True))


def test_periodic_images_match_brute_force(skewed_crystal):
    cutoff = 4.3
    g = neighbor_graph(skewed_crystal, cutoff, SPECIES)
    expected = brute_force_pairs(skewed_crystal, cutoff)
    assert len(expected) > 100  # many images of each atom, including of itself
    assert graph_pairs(g) == expected
    assert len(g.senders) == len(expected)  # no duplicates
    assert np.all(np.linalg.norm(edge_vectors(g), axis=1) < cutoff)
    assert any(i == j for i, j, *_ in expected)


def test_slab_and_molecule_match_brute_force(skewed_crystal, water):
    slab = Structure(skewed_crystal.symbols, skewed_crystal.positions_ang, skewed_crystal.lattice_ang, (True, True, False))
    g = neighbor_graph(slab, 3.7, SPECIES)
    assert graph_pairs(g) == brute_force_pairs(slab, 3.7)
    assert np.all(g.edges["cell_shift"][:, 2] == 0)
    gm = neighbor_graph(water, 1.2, SPECIES)
    assert graph_pairs(gm) == {(0, 1, 0, 0, 0), (0, 2, 0, 0, 0), (1, 0, 0, 0, 0), (2, 0, 0, 0, 0)}
    assert graph_pairs(neighbor_graph(water, 5.0, SPECIES)) == brute_force_pairs(water, 5.0)
    np.testing.assert_array_equal(gm.nodes["species"], [1, 0, 0])


def test_edges_sorted_and_reverse_consistent(skewed_crystal):
    g = neighbor_graph(skewed_crystal, 4.3, SPECIES)
    keys = np.column_stack([g.senders, g.receivers, g.edges["cell_shift"]])
    assert all(tuple(a) < tuple(b) for a, b in zip(keys[:-1], keys[1:]))
    rev = g.edges["reverse"]
    assert rev.dtype == np.int32 and g.edges["cell_shift"].dtype == np.int32
    np.testing.assert_array_equal(g.senders[rev], g.receivers)
    np.testing.assert_array_equal(g.receivers[rev], g.senders)
    np.testing.assert_array_equal(g.edges["cell_shift"][rev], -g.edges["cell_shift"])
    np.testing.assert_array_equal(rev[rev], np.arange(len(rev)))
    np.testing.assert_allclose(edge_vectors(g)[rev], -edge_vectors(g), atol=1e-12)
    np.testing.assert_allclose(g.edges["shift"], g.edges["cell_shift"] @ skewed_crystal.lattice_ang, atol=1e-12)


def test_translation_and_rewrapping_invariance(skewed_crystal):
    cutoff = 4.3
    base = neighbor_graph(skewed_crystal, cutoff, SPECIES)
    lattice = skewed_crystal.lattice_ang
    moved_pos = skewed_crystal.positions_ang + np.array([0.37, -1.21, 2.93])
    moved_pos[1] -= 2 * lattice[0] - lattice[2]  # the same crystal with atom 1 taken from another cell
    moved = Structure(skewed_crystal.symbols, moved_pos, lattice, skewed_crystal.pbc)
    g = neighbor_graph(moved, cutoff, SPECIES)

    def labelled(graph):
        rows = np.column_stack([graph.senders, graph.receivers, np.round(edge_vectors(graph), 9)])
        return rows[np.lexsort(rows.T[::-1])]

    np.testing.assert_allclose(labelled(g), labelled(base), atol=1e-9)
    # shifts of edges touching atom 1 change by exactly the re-wrapping lattice vector
    assert graph_pairs(g) != graph_pairs(base)


def test_pad_graph_masks_and_reverse(water, skewed_crystal):
    g = neighbor_graph(water, 5.0, SPECIES)
    p = pad_graph(g, n_node=8, n_edge=16, n_graph=3)
    assert p.nodes["positions"].shape == (8, 3) and p.edges["shift"].shape == (16, 3)
    np.testing.assert_array_equal(np.asarray(node_mask(p)), [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(edge_mask(p)), np.arange(16) < 6)
    np.testing.assert_array_equal(np.asarray(graph_mask(p)), [1, 0, 0])
    np.testing.assert_array_equal(p.edges["reverse"][6:], np.arange(6, 16))
    np.testing.assert_array_equal(p.edges["reverse"][:6], g.edges["reverse"])
    assert np.all(p.senders[6:] == 3) and np.all(p.receivers[6:] == 3)  # the first padding node
    with pytest.raises(RuntimeError):
        pad_graph(g, n_node=3, n_edge=16)  # no room for the padding node


def test_batch_offsets_reverse_and_bucket(water, skewed_crystal):
    gw = neighbor_graph(water, 5.0, SPECIES)
    gc = neighbor_graph(skewed_crystal, 4.3, SPECIES)
    b = batch_graphs([gc, gw, gc])
    rev = b.edges["reverse"]
    np.testing.assert_array_equal(b.senders[rev], b.receivers)
    np.testing.assert_array_equal(rev[rev], np.arange(len(rev)))
    ne = len(gc.senders)
    np.testing.assert_array_equal(rev[ne : ne + 6], gw.edges["reverse"] + ne)
    padded = pad_to_bucket(b)
    n_node, n_edge = padded.nodes["species"].shape[0], padded.senders.shape[0]
    assert n_node == bucket_size(2 + 3 + 2 + 1) and n_edge == bucket_size(int(b.n_edge.sum()))
    assert n_edge <= 1.25 * b.n_edge.sum() + 8
    assert int(np.asarray(graph_mask(padded)).sum()) == 3


def test_bucket_ladder_is_small_and_monotone():
    sizes = [bucket_size(n) for n in range(1, 5001)]
    assert all(s >= n for n, s in zip(range(1, 5001), sizes))
    assert all(a <= b for a, b in zip(sizes[:-1], sizes[1:]))
    assert len(set(sizes)) < 30
    assert all(s <= max(1.25 * n + 8, 8) for n, s in zip(range(1, 5001), sizes))


def test_structure_validation_and_io(tmp_path, water, skewed_crystal):
    with pytest.raises(ValueError, match="overlap"):
        Structure(("H", "H"), np.array([[0.0, 0, 0], [0.0, 0, 0.05]]))
    with pytest.raises(ValueError, match="overlap"):  # an atom and its own periodic image
        Structure(("H",), np.zeros((1, 3)), np.diag([0.05, 3.0, 3.0]), (True, True, True))
    with pytest.raises(ValueError, match="needs a lattice"):
        Structure(("H",), np.zeros((1, 3)), None, (True, False, False))
    with pytest.raises(ValueError, match="unknown chemical element"):
        Structure(("Xx",), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="singular"):
        Structure(("H",), np.zeros((1, 3)), np.diag([1.0, 1.0, 0.0]), (True, True, True))
    with pytest.raises(KeyError, match="species index"):
        neighbor_graph(water, 2.0, {"H": 0})
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_graph(water, -1.0, SPECIES)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Structure.read(tmp_path / "missing.xyz")
    for s, name in [(water, "w.xyz"), (skewed_crystal, "POSCAR")]:
        s.to_ase().write(tmp_path / name, format="vasp" if name == "POSCAR" else None)
        back = Structure.read(tmp_path / name)
        assert back.symbols == s.symbols and back.pbc == s.pbc
        np.testing.assert_allclose(back.positions_ang, s.positions_ang, atol=1e-6)
        assert (back.lattice_ang is None) == (s.lattice_ang is None)
    (tmp_path / "bad.xyz").write_text("2\n\nH 0 0\n")
    with pytest.raises(ValueError, match="bad.xyz"):
        Structure.read(tmp_path / "bad.xyz")

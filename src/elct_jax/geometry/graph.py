"""Neighbour graphs with periodic images, padding and batching into a few static shapes.

Edge convention (the whole project relies on it)
-----------------------------------------------
An edge ``e`` with ``senders[e] = i``, ``receivers[e] = j`` and ``cell_shift[e] = R`` (integers) is
the pair (atom i in the home cell, atom j in cell R). It carries the Hamiltonian block H_ij(R) and the
vector ``r_ij = pos[j] + shift - pos[i]`` with ``shift = R @ lattice`` (Angstrom). Both directions are
present and ``reverse[e]`` is the edge (j, i, -R). The on-site pair (i, i, R = 0) is never an edge;
(i, i, R != 0), an atom and its own periodic image, is. Edges are sorted by (i, j, R1, R2, R3).

Node features: ``positions`` [n_node, 3] float64 Angstrom, ``species`` [n_node] int32 (index into the
basis' element list). Edge features: ``shift`` [n_edge, 3] float64 Angstrom, ``cell_shift``
[n_edge, 3] int32, ``reverse`` [n_edge] int32. ``globals`` is None.
"""
from __future__ import annotations

import math
from typing import Sequence

import jraph
import numpy as np
from ase.neighborlist import primitive_neighbor_list

from elct_jax.geometry.structure import Structure

node_mask = jraph.get_node_padding_mask  # [n_node] bool, True for real nodes
edge_mask = jraph.get_edge_padding_mask  # [n_edge] bool, True for real edges
graph_mask = jraph.get_graph_padding_mask  # [n_graph] bool, True for real graphs


def neighbor_pairs(structure: Structure, cutoff_ang: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (i, j, R) with |pos[j] + R @ lattice - pos[i]| < cutoff_ang, minus (i, i, 0).

    O(n_atoms) cell-list search (ASE); correct also when the cutoff exceeds the cell (many images).
    Returns senders [n_edge] int32, receivers [n_edge] int32, cell shifts [n_edge, 3] int32,
    sorted by (i, j, R1, R2, R3).
    """
    if not (cutoff_ang > 0 and math.isfinite(cutoff_ang)):
        raise ValueError(f"cutoff_ang must be a positive finite number, got {cutoff_ang!r}")
    cell = np.zeros((3, 3)) if structure.lattice_ang is None else structure.lattice_ang
    i, j, shifts = primitive_neighbor_list(
        "ijS", structure.pbc, cell, structure.positions_ang, float(cutoff_ang), self_interaction=False
    )
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    return i[order].astype(np.int32), j[order].astype(np.int32), shifts[order].astype(np.int32)


def reverse_index(senders: np.ndarray, receivers: np.ndarray, cell_shift: np.ndarray) -> np.ndarray:
    """[n_edge] int32 index of the edge (j, i, -R) for each edge (i, j, R); raises if one is missing."""
    n_edge = len(senders)
    if n_edge == 0:
        return np.zeros(0, dtype=np.int32)
    keys = _edge_keys(senders, receivers, cell_shift)
    reverse_keys = _edge_keys(receivers, senders, -cell_shift)
    order = np.argsort(keys, kind="stable")
    pos = np.clip(np.searchsorted(keys[order], reverse_keys), 0, n_edge - 1)
    found = order[pos]
    if not np.array_equal(keys[found], reverse_keys):
        missing = int(np.argmax(keys[found] != reverse_keys))
        raise ValueError(f"edge {missing} (i, j, R) has no reverse edge (j, i, -R); the edge list is not symmetric")
    return found.astype(np.int32)


def _edge_keys(a, b, shifts) -> np.ndarray:
    """One int64 per (a, b, R); symmetric in its ranges, so (b, a, -R) keys are comparable."""
    n = int(max(a.max(), b.max())) + 1
    r = int(np.abs(shifts).max())
    width = 2 * r + 1
    if float(n) * n * width**3 > 2.0**62:
        raise ValueError("graph too large to index edges with 64-bit keys")
    s = shifts.astype(np.int64) + r
    return ((a.astype(np.int64) * n + b) * width + s[:, 0]) * width * width + s[:, 1] * width + s[:, 2]


def neighbor_graph(structure: Structure, cutoff_ang: float, species_index: dict[str, int]) -> jraph.GraphsTuple:
    """The graph of one structure (see the module docstring for the convention), not padded.

    ``species_index`` maps each chemical symbol to its integer species (e.g. its index in
    ``OrbitalBasis.elements``); an element missing from it raises ``KeyError``.
    """
    missing = sorted(set(structure.symbols) - set(species_index))
    if missing:
        raise KeyError(f"element(s) {missing} have no species index (known: {sorted(species_index)})")
    senders, receivers, cell_shift = neighbor_pairs(structure, cutoff_ang)
    lattice = np.zeros((3, 3)) if structure.lattice_ang is None else structure.lattice_ang
    species = np.array([species_index[s] for s in structure.symbols], dtype=np.int32)
    return jraph.GraphsTuple(
        nodes={"positions": np.array(structure.positions_ang), "species": species},
        edges={
            "shift": cell_shift.astype(np.float64) @ lattice,
            "cell_shift": cell_shift,
            "reverse": reverse_index(senders, receivers, cell_shift),
        },
        senders=senders,
        receivers=receivers,
        n_node=np.array([structure.n_atoms], dtype=np.int32),
        n_edge=np.array([len(senders)], dtype=np.int32),
        globals=None,
    )


def batch_graphs(graphs: Sequence[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    """Concatenate graphs (numpy); node indices and the edge feature ``reverse`` are offset."""
    graphs = list(graphs)
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph")
    edge_offsets = np.cumsum([0] + [int(np.sum(g.n_edge)) for g in graphs[:-1]])
    shifted = [
        g._replace(edges={**g.edges, "reverse": np.asarray(g.edges["reverse"]) + np.int32(o)})
        for g, o in zip(graphs, edge_offsets)
    ]
    return jraph.batch_np(shifted)


def pad_graph(graph: jraph.GraphsTuple, n_node: int, n_edge: int, n_graph: int = 2) -> jraph.GraphsTuple:
    """Pad to exactly n_node nodes, n_edge edges, n_graph graphs (``jraph.pad_with_graphs``).

    Needs n_node > real nodes and n_graph > real graphs (one padding graph holds the padding nodes).
    Padding edges connect the first padding node to itself, have zero features, and ``reverse``
    pointing to themselves, so gathers through ``reverse`` stay inside the padding.
    """
    n_real_edge = int(np.sum(graph.n_edge))
    padded = jraph.pad_with_graphs(graph, n_node, n_edge, n_graph)
    reverse = np.array(padded.edges["reverse"], dtype=np.int32)
    reverse[n_real_edge:] = np.arange(n_real_edge, n_edge, dtype=np.int32)
    return padded._replace(edges={**padded.edges, "reverse": reverse})


def bucket_size(n: int, minimum: int = 8, growth: float = 1.25, multiple: int = 8) -> int:
    """Smallest size >= n in the geometric ladder minimum * growth**k, each rung rounded up to
    ``multiple``. With growth 1.25 at most ~25% padding; the ladder is fixed, so jit sees few shapes."""
    if growth <= 1.0:
        raise ValueError(f"growth must be > 1, got {growth}")
    size = float(minimum)
    while True:
        rung = int(math.ceil(size / multiple) * multiple)
        if rung >= n:
            return rung
        size *= growth


def pad_to_bucket(graph: jraph.GraphsTuple, n_graph: int | None = None, growth: float = 1.25) -> jraph.GraphsTuple:
    """Pad a (batched) graph to bucket sizes: nodes to bucket(n_node + 1), edges to bucket(n_edge),
    graphs to ``n_graph`` (default: real graphs + 1)."""
    n_real_graph = len(graph.n_node)
    n_graph = n_real_graph + 1 if n_graph is None else n_graph
    if n_graph <= n_real_graph:
        raise ValueError(f"n_graph={n_graph} must exceed the {n_real_graph} real graph(s) (one padding graph)")
    n_node = bucket_size(int(np.sum(graph.n_node)) + 1, growth=growth)
    n_edge = bucket_size(int(np.sum(graph.n_edge)), growth=growth)
    return pad_graph(graph, n_node, n_edge, n_graph)

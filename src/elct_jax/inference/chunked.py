"""Prediction for structures of any size in bounded memory: the network runs over chunks of atoms
with their halos, and each chunk's blocks go straight into a :class:`SparseBlocks` H(R).

Receptive field of the ELCT (derived from ``elct_jax.nn.model`` / ``elct_jax.nn.attention``; checked
exactly in tests/test_large.py). With d(x) the number of graph hops from atom x to the chunk:
  * embedding: e_ij^0 depends on atoms i, j only; v_j^0 on j's incoming edges (1 hop);
  * block b: e_ij^b needs v^(b-1) of i and j and e_ij^(b-1); v_j^b needs v^(b-1) of j and of its
    neighbours, e^(b-1) of its incoming edges and all of them for the softmax.
On the subgraph induced by the atoms within H hops of the chunk, v^0 is exact for d <= H - 1, and
by induction v^b is exact for d <= H - 1 - b and e^b for edges with both ends at d <= H - b.
The heads read v^B (on-site blocks, d = 0) and e^B of an edge and its reverse (edge blocks of the
chunk's atoms, ends at d <= 1), so H = n_blocks + 1 hops are needed and suffice:
:func:`receptive_hops`. In space that is a halo of (n_blocks + 1) * cutoff.

Chunks are compact groups of atoms from recursive coordinate bisection; their halos are found by
breadth-first search on the periodic neighbour graph (the subgraph keeps each edge's cell shift, so
periodic images need no unfolding). Chunk graphs are padded to the bucket sizes of
``elct_jax.geometry.graph.pad_to_bucket``: jit compiles a handful of shapes. With several local devices the
chunks are dealt round-robin to them; dispatch is asynchronous, so the host builds the next chunks
while the devices compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import jax
import jraph
import numpy as np

from elct_jax.config import ModelConfig
from elct_jax.data.loader import species_index
from elct_jax.geometry.graph import neighbor_graph, pad_to_bucket
from elct_jax.hamiltonian.blocks import max_orbitals
from elct_jax.hamiltonian.sparse import SparseBlocks, sparse_from_basis
from elct_jax.inference.predict import apply_model, with_moments
from elct_jax.geometry.structure import Structure


def receptive_hops(config: ModelConfig) -> int:
    """Graph hops around a chunk whose atoms the network needs: n_blocks + 1 (module docstring)."""
    return config.n_blocks + 1


def partition(positions: np.ndarray, chunk_atoms: int) -> list[np.ndarray]:
    """Split atoms [n, 3] into compact groups of at most ``chunk_atoms`` by recursive coordinate
    bisection (cut the widest axis at the median). Returns sorted index arrays covering 0..n-1."""
    if chunk_atoms < 1:
        raise ValueError(f"chunk_atoms must be >= 1, got {chunk_atoms}")
    out, stack = [], [np.arange(len(positions))]
    while stack:
        idx = stack.pop()
        if len(idx) <= chunk_atoms:
            out.append(np.sort(idx))
            continue
        p = positions[idx]
        axis = int(np.argmax(np.ptp(p, axis=0)))
        n_left = (len(idx) + 1) // 2 if len(idx) <= 2 * chunk_atoms else _aligned_half(len(idx), chunk_atoms)
        order = np.argsort(p[:, axis], kind="stable")
        stack += [idx[order[n_left:]], idx[order[:n_left]]]
    return sorted(out, key=lambda a: int(a[0]))


def _aligned_half(n: int, chunk: int) -> int:
    """A cut near n/2 that is a multiple of ``chunk`` (few undersized chunks)."""
    return max(chunk, int(round(n / 2 / chunk)) * chunk)


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``graph`` (padded) whose first ``n_core`` nodes are the chunk's atoms ``core``;
    ``edge_ids`` [n] global edges with a core sender and ``local_edges`` [n] their rows in ``graph``."""

    graph: jraph.GraphsTuple
    core: np.ndarray
    n_core: int
    edge_ids: np.ndarray
    local_edges: np.ndarray


class ChunkBuilder:
    """Chunk graphs of one neighbour graph (numpy, ``elct_jax.geometry.graph`` convention, not padded)."""

    def __init__(self, graph: jraph.GraphsTuple, hops: int):
        self.graph, self.hops = graph, hops
        self.n_node = int(graph.n_node[0])
        self.ptr = np.searchsorted(graph.senders, np.arange(self.n_node + 1))  # edges are sorted by sender
        self._local = np.full(self.n_node, -1, dtype=np.int64)  # scratch: global node -> local index

    def edges_of(self, nodes: np.ndarray) -> np.ndarray:
        """Indices of all edges whose sender is in ``nodes``."""
        start, count = self.ptr[nodes], self.ptr[nodes + 1] - self.ptr[nodes]
        return np.repeat(start - np.cumsum(count) + count, count) + np.arange(int(count.sum()))

    def halo(self, core: np.ndarray) -> np.ndarray:
        """Nodes within ``hops`` hops of ``core``, core first (in its order), then the rest sorted."""
        seen = np.zeros(self.n_node, dtype=bool)
        seen[core] = True
        frontier = core
        for _ in range(self.hops):
            nxt = np.unique(self.graph.receivers[self.edges_of(frontier)])
            frontier = nxt[~seen[nxt]]
            seen[frontier] = True
        seen[core] = False
        return np.concatenate([core, np.flatnonzero(seen)])

    def chunk(self, core: np.ndarray) -> Chunk:
        g = self.graph
        nodes = self.halo(core)
        self._local[nodes] = np.arange(len(nodes))
        try:
            cand = self.edges_of(nodes)
            edges = cand[self._local[g.receivers[cand]] >= 0]  # both ends inside: the induced subgraph
            senders, receivers = self._local[g.senders[edges]], self._local[g.receivers[edges]]
        finally:
            self._local[nodes] = -1
        order = np.argsort(edges)
        reverse = order[np.searchsorted(edges[order], g.edges["reverse"][edges])]
        sub = jraph.GraphsTuple(
            nodes={k: v[nodes] for k, v in g.nodes.items()},
            edges={"shift": g.edges["shift"][edges], "cell_shift": g.edges["cell_shift"][edges],
                   "reverse": reverse.astype(np.int32)},
            senders=senders.astype(np.int32), receivers=receivers.astype(np.int32),
            n_node=np.array([len(nodes)], np.int32), n_edge=np.array([len(edges)], np.int32), globals=None)
        own = np.flatnonzero(senders < len(core))
        return Chunk(pad_to_bucket(sub), core, len(core), edges[own], own)

    def chunks(self, chunk_atoms: int) -> Iterator[Chunk]:
        for core in partition(np.asarray(self.graph.nodes["positions"]), chunk_atoms):
            yield self.chunk(core)


def predict_sparse(model, structure: Structure, chunk_atoms: int = 256, devices=None,
                   hops: int | None = None, dtype=None) -> SparseBlocks:
    """Predicted H(R) of ``structure`` (any size) by a spinless model as SparseBlocks (internal order, Hartree);
    the arguments as :func:`predict_sparse_parts`, which also takes spinful models."""
    if model.config.spin != "none":
        raise ValueError(f"{model.name} predicts spinful H (spin = {model.config.spin!r}): predict_sparse_parts "
                         "gives its spin parts")
    return predict_sparse_parts(model, structure, chunk_atoms=chunk_atoms, devices=devices, hops=hops, dtype=dtype)[0]


def predict_sparse_parts(model, structure: Structure, magmom=None, chunk_atoms: int = 256, devices=None,
                         hops: int | None = None, dtype=None) -> tuple[SparseBlocks, ...]:
    """Predicted H(R) of ``structure`` (any size) by a model of any spin kind, one SparseBlocks (internal order,
    Hartree, [n_orb] blocks, all on the same pairs) per spin part (``elct_jax.data.spinful.SPIN_PARTS``): (H,)
    spinless, (H_up, H_down) collinear (real), the spin quadrants (H_uu, H_ud, H_du, H_dd) of a spin-orbit model
    (complex).

    model        an ``elct_jax.train.saved_model.TrainedModel`` (config, basis, cutoff_ang, params, apply)
    magmom       [n_atoms] initial moments (Bohr magnetons), the input of a collinear model (required by it only)
    chunk_atoms  atoms per chunk (each runs with its halo of ``hops`` graph hops); peak memory of the
                 network grows with it, the halo overhead shrinks
    devices      devices to deal the chunks to; default ``jax.local_devices()``
    hops         halo depth; default :func:`receptive_hops` (exact). Fewer hops is an approximation.
    dtype        storage dtype of the blocks; default the network's output dtype (complex for spin-orbit)
    """
    model.check_elements(structure.symbols)
    if model.baseline is not None:
        raise ValueError("this model learned H - H0 (the zeroth-step baseline, one PySCF Fock build of the whole "
                         "structure): chunked prediction has no H0 to add; use predict_blocks, or a model trained "
                         "with baseline='none'")
    hops = receptive_hops(model.config) if hops is None else int(hops)
    devices = list(jax.local_devices() if devices is None else devices)
    graph = with_moments(model, neighbor_graph(structure, model.cutoff_ang, species_index(model.basis)), magmom)
    n_max, n_edge, spin = max_orbitals(model.basis), len(graph.senders), model.config.spin
    dtype = np.dtype(model.config.dtype if dtype is None else dtype)
    dtype = np.result_type(dtype, np.complex64) if spin == "soc" else dtype
    spin_axes = {"none": (), "collinear": (2,), "soc": (2, 2)}[spin]
    onsite = np.zeros((structure.n_atoms, *spin_axes, n_max, n_max), dtype)
    blocks = np.zeros((n_edge, *spin_axes, n_max, n_max), dtype)
    params = [jax.device_put(model.params, d) for d in devices]
    pending: list[tuple[Chunk, tuple]] = []

    def collect(chunk: Chunk, out) -> None:
        on, ed = (np.asarray(x) for x in out)
        onsite[chunk.core] = on[: chunk.n_core]
        blocks[chunk.edge_ids] = ed[chunk.local_edges]

    for n, chunk in enumerate(ChunkBuilder(graph, hops).chunks(chunk_atoms)):
        slot = n % len(devices)
        pending.append((chunk, apply_model(model.apply, params[slot], jax.device_put(chunk.graph, devices[slot]))))
        if len(pending) > len(devices):  # keep every device busy while the host builds the next chunk
            collect(*pending.pop(0))
    for item in pending:
        collect(*item)
    onsite, blocks = (x.reshape(len(x), -1, n_max, n_max) for x in (onsite, blocks))  # spin axes flattened
    return tuple(sparse_from_basis(model.basis, structure.symbols, onsite[:, q], graph.senders, graph.receivers,
                                   graph.edges["cell_shift"], blocks[:, q]) for q in range(onsite.shape[1]))

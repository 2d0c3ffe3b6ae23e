"""Hamiltonian blocks <-> dense matrices (molecules, Gamma point) and H(R) -> H(k) (crystals).

Block format used by the whole project (INTERNAL orbital order, atomic units):
  onsite      [n_node, n_max, n_max]  block H_ii(R = 0) of each atom
  edge_blocks [n_edge, n_max, n_max]  block H_ij(R) of each graph edge (i -> j, cell shift R)
The species' orbitals occupy the leading n_orb(species) rows/columns; n_max = ``max_orbitals(basis)``.
Entries outside that leading square, and padding nodes/edges, are ignored by every assembly below.

A :class:`BlockLayout` holds the static index maps of one structure (or one jraph batch of
structures) computed in numpy once; the assembly functions are pure jnp, jittable and
differentiable, and vmappable over stacked layouts of the same padded sizes.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from ai2dft.bloch import phases
from ai2dft.hermitian import hermitian_part
from ai2dft.units import PAD_LEVEL_HARTREE
from elct_jax.geometry.basis import OrbitalBasis

ORDERS = ("internal", "pyscf", "openmx")
BlockKey = tuple[int, int, int, int, int]  # (R1, R2, R3, i, j), i and j 0-based


def max_orbitals(basis: OrbitalBasis) -> int:
    """n_max: the largest number of orbitals of one atom over the basis' elements."""
    return max(basis.n_orbitals(el) for el in basis.elements)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["onsite_dest", "edge_dest", "cell_shift", "ao_mask"],
    meta_fields=["n_graph", "n_ao_pad", "batched", "gamma_only"],
)
@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """Static index maps from blocks to dense AO matrices.

    onsite_dest[order] [n_node, n_max, n_max] int32  flat index g * n_ao_pad**2 + row * n_ao_pad + col
    edge_dest[order]   [n_edge, n_max, n_max] int32  of each block entry in the dense matrix of its
                       structure g in ``order``; ignored entries point at a dump slot n_graph * n_ao_pad**2
    cell_shift         [n_edge, 3] int32              lattice shift R of each edge
    ao_mask            [n_graph, n_ao_pad] bool       True for real AOs (padded AOs come last)
    """

    onsite_dest: dict[str, np.ndarray]
    edge_dest: dict[str, np.ndarray]
    cell_shift: np.ndarray
    ao_mask: np.ndarray
    n_graph: int
    n_ao_pad: int
    batched: bool
    gamma_only: bool


def block_layout(
    basis: OrbitalBasis,
    symbols: Sequence[str] | Sequence[Sequence[str]],
    graph: jraph.GraphsTuple,
    n_ao_pad: int | None = None,
    orders: Sequence[str] = ORDERS,
    n_slots: int | None = None,
) -> BlockLayout:
    """Index maps for ``graph`` (from :func:`elct_jax.geometry.graph.neighbor_graph`, optionally batched with
    :func:`batch_graphs` and/or padded).

    symbols   one structure's symbols (dense output [n_ao_pad, n_ao_pad]), or a list with one tuple of
              symbols per real graph of a batch (dense output [n_graph, n_ao_pad, n_ao_pad]).
              Nodes beyond the real atoms are padding.
    n_ao_pad  dense size; default the largest AO count of the structures.
    orders    orbital orders to build maps for (each costs n_edge * n_max**2 int32); "internal" is always
              included; "openmx" is skipped silently when the basis has l > 3.
    n_slots   batched only: structures of the dense output (n_graph = n_slots; default one per tuple of
              ``symbols``); slots beyond the tuples are empty (no atoms, every AO padded), so a batch of fewer
              structures has the static shapes of a full one.
    """
    unknown = sorted(set(orders) - set(ORDERS))
    if unknown:
        raise ValueError(f"unknown orbital order(s) {unknown}; expected some of {ORDERS}")
    batched = len(symbols) > 0 and not isinstance(symbols[0], str)
    groups = [tuple(s) for s in symbols] if batched else [tuple(symbols)]
    sizes = [len(g) for g in groups]
    if list(np.asarray(graph.n_node[: len(groups)])) != sizes:
        raise ValueError(f"graph n_node {list(graph.n_node)} does not start with the structures' sizes {sizes}")
    n_ao = [int(basis.ao_offsets(g)[-1]) for g in groups]
    n_ao_pad = max(n_ao) if n_ao_pad is None else int(n_ao_pad)
    if n_ao_pad < max(n_ao):
        raise ValueError(f"n_ao_pad={n_ao_pad} is smaller than a structure's {max(n_ao)} AOs")
    n_slots = len(groups) if n_slots is None else int(n_slots)
    if n_slots < len(groups) or (n_slots != len(groups) and not batched):
        raise ValueError(f"n_slots={n_slots} needs a batch of at most that many structures, got {symbols!r}")
    n_real = sum(sizes)
    senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
    real_edge = (senders < n_real) & (receivers < n_real)
    cell_shift = np.asarray(graph.edges["cell_shift"], dtype=np.int32)
    n_node = len(graph.nodes["species"])
    node_graph = np.concatenate([np.repeat(np.arange(len(groups)), sizes), np.zeros(n_node - n_real, dtype=int)])
    if np.any(node_graph[senders[real_edge]] != node_graph[receivers[real_edge]]):
        raise ValueError("an edge connects atoms of two different structures")
    onsite_dest, edge_dest = {}, {}
    for order in dict.fromkeys(("internal", *orders)):
        pos = _node_positions(basis, groups, max_orbitals(basis), order, n_node)
        if pos is None:
            continue
        onsite_dest[order] = _dest(node_graph, pos, pos, n_ao_pad, n_slots)
        edge_dest[order] = _dest(node_graph[senders], pos[senders], pos[receivers], n_ao_pad, n_slots)
    return BlockLayout(
        onsite_dest=onsite_dest,
        edge_dest=edge_dest,
        cell_shift=cell_shift,
        ao_mask=np.arange(n_ao_pad)[None, :] < np.array(n_ao + [0] * (n_slots - len(groups)))[:, None],
        n_graph=n_slots,
        n_ao_pad=n_ao_pad,
        batched=batched,
        gamma_only=bool(np.all(cell_shift[real_edge] == 0)),
    )


def _node_positions(basis, groups, n_max, order, n_node) -> np.ndarray | None:
    """[n_node, n_max] position in ``order`` (within its structure's dense matrix) of each node's
    orbital slot; -1 for unused slots and padding nodes. None if ``order`` cannot express the basis."""
    pos = np.full((n_node, n_max), -1, dtype=np.int64)
    node = 0
    for syms in groups:
        try:
            position = basis.permutation(syms, order)  # internal AO k sits at position[k] in ``order``
        except ValueError:  # OpenMX order is defined only up to l = 3
            return None
        offsets = basis.ao_offsets(syms)
        for a in range(len(syms)):
            pos[node, : offsets[a + 1] - offsets[a]] = position[offsets[a] : offsets[a + 1]]
            node += 1
    return pos


def _dest(graph_index, pos_row, pos_col, n_ao_pad: int, n_graph: int) -> np.ndarray:
    """[n, n_max, n_max] flat index g * P**2 + row * P + col (P = n_ao_pad) of each block entry;
    entries with an unused row or column slot point at the dump slot n_graph * P**2."""
    dump = n_graph * n_ao_pad**2
    row, col = pos_row[:, :, None], pos_col[:, None, :]
    flat = graph_index[:, None, None] * n_ao_pad**2 + row * n_ao_pad + col
    return np.where((row >= 0) & (col >= 0), flat, dump).astype(np.int32)


def _order_maps(layout: BlockLayout, order: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    if order not in layout.onsite_dest:
        raise ValueError(f"orbital order {order!r} is not available for this layout (has {sorted(layout.onsite_dest)})")
    return layout.onsite_dest[order], layout.edge_dest[order]


def _check_shapes(onsite, edge_blocks, layout: BlockLayout) -> None:
    on, ed = layout.onsite_dest["internal"].shape, layout.edge_dest["internal"].shape
    if onsite.shape[-3:] != on or edge_blocks.shape[-3:] != ed:
        raise ValueError(f"blocks of shapes {onsite.shape}, {edge_blocks.shape} do not match the layout's {on}, {ed}")


def _pad_diagonal(layout: BlockLayout, value) -> jnp.ndarray:
    """[n_graph, P, P] value on the diagonal of padded AO slots."""
    return value * jnp.eye(layout.n_ao_pad) * (~jnp.asarray(layout.ao_mask))[:, :, None]


@functools.partial(jax.jit, static_argnames="order")
def blocks_to_dense(onsite, edge_blocks, layout: BlockLayout, order: str = "pyscf", pad_diagonal=PAD_LEVEL_HARTREE):
    """Dense AO matrix [n_ao_pad, n_ao_pad] ([n_graph, n_ao_pad, n_ao_pad] for a batched layout) in ``order``.

    onsite [n_node, n_max, n_max], edge_blocks [n_edge, n_max, n_max] in internal order. Pairs without
    an edge are zero. Padded AO slots get ``pad_diagonal`` (PAD_LEVEL_HARTREE for H; pass 1.0 for S).
    For a periodic graph the blocks of all R are summed: the Gamma-point matrix H(k = 0).
    """
    _check_shapes(onsite, edge_blocks, layout)
    on_dest, edge_dest = _order_maps(layout, order)
    size = layout.n_graph * layout.n_ao_pad**2
    dtype = jnp.result_type(onsite, edge_blocks)
    flat = jnp.zeros(size + 1, dtype).at[on_dest.reshape(-1)].add(onsite.reshape(-1))
    flat = flat.at[edge_dest.reshape(-1)].add(edge_blocks.reshape(-1))
    dense = flat[:size].reshape(layout.n_graph, layout.n_ao_pad, layout.n_ao_pad) + _pad_diagonal(layout, pad_diagonal)
    return dense if layout.batched else dense[0]


@functools.partial(jax.jit, static_argnames="order")
def dense_to_blocks(dense, layout: BlockLayout, order: str = "pyscf"):
    """Inverse gather of :func:`blocks_to_dense` for molecules (every edge has R = 0).

    dense [n_ao_pad, n_ao_pad] (or [n_graph, n_ao_pad, n_ao_pad] for a batched layout) in ``order``;
    a smaller unpadded [n_ao, n_ao] is accepted for a single structure. Returns (onsite
    [n_node, n_max, n_max], edge_blocks [n_edge, n_max, n_max]) in internal order, zero outside each
    block's leading n_i x n_j square and on padding nodes/edges.
    """
    if not layout.gamma_only:
        raise ValueError("dense_to_blocks needs a molecule (all edges R = 0); periodic blocks are not "
                         "determined by one dense matrix, use blocks_from_dict with real-space blocks")
    on_dest, edge_dest = _order_maps(layout, order)
    dense = jnp.asarray(dense)
    if not layout.batched:
        n = dense.shape[-1]
        if dense.shape != (n, n) or n > layout.n_ao_pad:
            raise ValueError(f"dense matrix of shape {dense.shape} does not fit the layout ({layout.n_ao_pad} AOs)")
        dense = jnp.pad(dense, ((0, layout.n_ao_pad - n), (0, layout.n_ao_pad - n)))[None]
    if dense.shape != (layout.n_graph, layout.n_ao_pad, layout.n_ao_pad):
        raise ValueError(f"dense matrices of shape {dense.shape} do not fit the layout")
    flat = jnp.concatenate([dense.reshape(-1), jnp.zeros(1, dense.dtype)])
    return flat[on_dest], flat[edge_dest]


def structure_layout(layout: BlockLayout, g) -> BlockLayout:
    """The single-structure layout of structure ``g`` (int, may be traced) of a batched ``layout``:
    the same blocks, with every block of another structure sent to the dump slot."""
    if not layout.batched:
        return layout
    size = layout.n_ao_pad**2

    def own(dest):  # flat index g' * size + row * P + col -> row * P + col if g' == g, else the dump slot
        dest = jnp.asarray(dest)
        return jnp.where(dest // size == g, dest - g * size, size).astype(dest.dtype)

    return dataclasses.replace(
        layout,
        onsite_dest={k: own(v) for k, v in layout.onsite_dest.items()},
        edge_dest={k: own(v) for k, v in layout.edge_dest.items()},
        ao_mask=jnp.asarray(layout.ao_mask)[g][None],
        n_graph=1,
        batched=False,
    )


@functools.partial(jax.jit, static_argnames="order")
def bloch_sum(onsite, edge_blocks, layout: BlockLayout, kpts_frac, order: str = "pyscf", pad_diagonal=PAD_LEVEL_HARTREE):
    """H(k) = sum_R H(R) exp(2 pi i k.R), [n_k, n_ao_pad, n_ao_pad] complex, for one crystal.

    kpts_frac [n_k, 3] in units of the reciprocal lattice vectors (k.R = sum_a kfrac_a R_a); H_ij(R)
    couples atom i in the home cell with atom j in cell R, as PySCF's ``cell.pbc_intor(..., kpts)``.
    """
    if layout.batched:
        raise ValueError("bloch_sum takes the layout of one crystal")
    _check_shapes(onsite, edge_blocks, layout)
    on_dest, edge_dest = _order_maps(layout, order)
    size = layout.n_ao_pad**2
    kpts_frac = jnp.atleast_2d(jnp.asarray(kpts_frac))
    phase = phases(kpts_frac, layout.cell_shift)  # [n_k, n_edge]
    values = (phase[:, :, None, None] * edge_blocks[None]).reshape(len(kpts_frac), -1)
    flat = jnp.zeros((len(kpts_frac), size + 1), phase.dtype).at[:, edge_dest.reshape(-1)].add(values)
    flat = flat.at[:, on_dest.reshape(-1)].add(onsite.reshape(-1).astype(phase.dtype))
    dense = flat[:, :size].reshape(-1, layout.n_ao_pad, layout.n_ao_pad)
    return dense + _pad_diagonal(layout, pad_diagonal)


@jax.jit
def symmetrize_edges(edge_blocks, reverse):
    """(B + B[reverse]^T) / 2, so that H_ji(-R) = H_ij(R)^T exactly. [n_edge, n_max, n_max]."""
    return 0.5 * (edge_blocks + jnp.swapaxes(edge_blocks[reverse], -1, -2))


@jax.jit
def symmetrize_onsite(onsite):
    """(B + B^T) / 2 of each (real) on-site block. [n_node, n_max, n_max]."""
    return hermitian_part(onsite)


def blocks_from_dict(
    blocks: Mapping[BlockKey, np.ndarray], basis: OrbitalBasis, symbols: Sequence[str], graph: jraph.GraphsTuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real-space blocks keyed (R1, R2, R3, i, j) (internal order, n_i x n_j) -> padded arrays on ``graph``.

    Returns onsite [n_node, n_max, n_max], edge_blocks [n_edge, n_max, n_max] and found [n_edge] bool
    (False where the dict has no block for an edge; that block is zero). Every on-site block (0,0,0,i,i)
    must be present. Keys that are not graph edges are ignored.
    """
    n_orb = [basis.n_orbitals(s) for s in symbols]
    n_max = max_orbitals(basis)
    n_node, n_edge = len(graph.nodes["species"]), len(graph.senders)
    onsite = np.zeros((n_node, n_max, n_max))
    edges = np.zeros((n_edge, n_max, n_max))
    found = np.zeros(n_edge, dtype=bool)
    for a, n in enumerate(n_orb):
        if (0, 0, 0, a, a) not in blocks:
            raise KeyError(f"on-site block (0, 0, 0, {a}, {a}) is missing")
        onsite[a, :n, :n] = _checked(blocks[(0, 0, 0, a, a)], (n, n), (0, 0, 0, a, a))
    for e, (i, j, R) in enumerate(zip(graph.senders, graph.receivers, np.asarray(graph.edges["cell_shift"]))):
        key = (int(R[0]), int(R[1]), int(R[2]), int(i), int(j))
        if i < len(n_orb) and key in blocks:
            edges[e, : n_orb[i], : n_orb[j]] = _checked(blocks[key], (n_orb[i], n_orb[j]), key)
            found[e] = True
    return onsite, edges, found


def _checked(block, shape, key) -> np.ndarray:
    block = np.asarray(block)
    if block.shape != shape:
        raise ValueError(f"block {key} has shape {block.shape}, expected {shape} from the basis")
    return block


def blocks_to_dict(
    onsite, edge_blocks, basis: OrbitalBasis, symbols: Sequence[str], graph: jraph.GraphsTuple
) -> dict[BlockKey, np.ndarray]:
    """Inverse of :func:`blocks_from_dict`: {(R1, R2, R3, i, j): n_i x n_j block}, on-site blocks included."""
    n_orb = [basis.n_orbitals(s) for s in symbols]
    onsite, edge_blocks = np.asarray(onsite), np.asarray(edge_blocks)
    out = {(0, 0, 0, a, a): onsite[a, :n, :n].copy() for a, n in enumerate(n_orb)}
    for e, (i, j, R) in enumerate(zip(graph.senders, graph.receivers, np.asarray(graph.edges["cell_shift"]))):
        if i < len(n_orb):
            out[(int(R[0]), int(R[1]), int(R[2]), int(i), int(j))] = edge_blocks[e, : n_orb[i], : n_orb[j]].copy()
    return out


def dense_to_dict(dense: np.ndarray, basis: OrbitalBasis, symbols: Sequence[str], order: str = "pyscf") -> dict[BlockKey, np.ndarray]:
    """All atom-pair blocks (0, 0, 0, i, j) of a molecule's dense [n_ao, n_ao] matrix, internal order."""
    m = basis.to_internal(np.asarray(dense), symbols, order)
    off = basis.ao_offsets(symbols)
    n = len(symbols)
    return {(0, 0, 0, i, j): m[off[i] : off[i + 1], off[j] : off[j + 1]].copy() for i in range(n) for j in range(n)}


def dict_to_dense(blocks: Mapping[BlockKey, np.ndarray], basis: OrbitalBasis, symbols: Sequence[str], order: str = "pyscf") -> np.ndarray:
    """Molecule's dense [n_ao, n_ao] matrix in ``order`` from blocks keyed (0, 0, 0, i, j); missing pairs are zero.
    Complex when the blocks are."""
    off = basis.ao_offsets(symbols)
    m = np.zeros((off[-1], off[-1]), dtype=np.result_type(np.float64, *blocks.values()))
    for (r1, r2, r3, i, j), block in blocks.items():
        if (r1, r2, r3) != (0, 0, 0):
            raise ValueError(f"block {(r1, r2, r3, i, j)} has R != 0; a dense molecular matrix takes R = 0 only")
        m[off[i] : off[i + 1], off[j] : off[j + 1]] = _checked(block, (off[i + 1] - off[i], off[j + 1] - off[j]), (r1, r2, r3, i, j))
    return basis.from_internal(m, symbols, order)


def reorder_blocks(
    blocks: Mapping[BlockKey, np.ndarray], basis: OrbitalBasis, symbols: Sequence[str], order: str, to_internal: bool = True
) -> dict[BlockKey, np.ndarray]:
    """Convert every n_i x n_j block from ``order`` to internal order (or back with ``to_internal=False``)."""
    perms = {}
    for el in set(symbols):
        p = basis.permutation([el], order)
        perms[el] = p if to_internal else np.argsort(p)
    out = {}
    for key, block in blocks.items():
        i, j = key[3], key[4]
        if not (0 <= i < len(symbols) and 0 <= j < len(symbols)):
            raise ValueError(f"block {key} refers to an atom outside 0..{len(symbols) - 1}")
        pi, pj = perms[symbols[i]], perms[symbols[j]]
        out[key] = _checked(block, (len(pi), len(pj)), key)[pi][:, pj]
    return out

"""Records -> graph examples with block targets -> padded batches, with seeded splits, shuffling and prefetch.

    records  = read_dataset("data/dft")                       # elct_jax.data.dataset_dir: DeepH-dock or legacy folders
    basis    = merged_basis(records)
    examples = [make_example(r, basis, cutoff_ang=6.0) for r in records]
    train, val, test = split_indices(len(examples), seed=0)   # 6:2:2
    loader   = Loader([examples[i] for i in train], basis, batch_size=4, seed=0)
    for batch in loader.epoch(0): ...                          # Batch of padded numpy arrays

Every batch has batch_size + 1 graphs (one padding graph); node, edge and AO counts are padded to the
``graph.bucket_size`` ladder, so a jitted step sees a handful of shapes.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from ai2dft.crystal import CrystalSystem
from ai2dft.spin_crystal import SpinCrystalSystem
from ai2dft.spin_system import SpinPolarized, SpinSystem
from ai2dft.spinor_system import SpinorSystem
from ai2dft.system import System
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.data.baseline import BASELINE, subtract_baseline
from elct_jax.data.batch_systems import grid_and_aux_sizes, padded_system
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.spinful import SPIN_MATRICES, check_spin, initial_moments, padded_spin_blocks
from elct_jax.geometry.graph import batch_graphs, bucket_size, neighbor_graph, pad_graph
from elct_jax.hamiltonian.blocks import BlockLayout, block_layout, blocks_from_dict


@dataclass(frozen=True, eq=False)
class Example:
    """One structure. targets[name] = (onsite [n_atoms, n_max, n_max], edges [n_edges, n_max, n_max]),
    internal order, Hartree (the spin matrices of spinful data: [n, 2, 2, n_max, n_max] complex for spin-orbit,
    [n, 2, n_max, n_max] for collinear spin, ``elct_jax.hamiltonian.spinor``); edge_found [n_edges] is False where the record has no block for an edge
    (that target is zero and masked out). An unlabelled structure has no "hamiltonian" target.
    system: the ai2dft System (molecule), SpinSystem (spin-polarized molecule), SpinorSystem (spin-orbit molecule),
    CrystalSystem (crystal) or SpinCrystalSystem (spin-polarized crystal) of the structure for label-free (Omega, self-consistency) training,
    or None."""

    symbols: tuple[str, ...]
    graph: jraph.GraphsTuple
    targets: dict[str, tuple[np.ndarray, np.ndarray]]
    edge_found: np.ndarray
    system: System | SpinSystem | SpinorSystem | CrystalSystem | SpinCrystalSystem | None = None

    def __post_init__(self):
        n_node, n_edge = int(np.sum(self.graph.n_node)), len(self.graph.senders)
        if n_node != len(self.symbols) or len(self.edge_found) != n_edge:
            raise ValueError(f"graph ({n_node} nodes, {n_edge} edges) does not match {len(self.symbols)} symbols "
                             f"and {len(self.edge_found)} edge flags")
        for name, (onsite, edges) in self.targets.items():
            if len(onsite) != n_node or len(edges) != n_edge:
                raise ValueError(f"target {name!r} has {len(onsite)} on-site and {len(edges)} edge blocks, "
                                 f"the graph {n_node} nodes and {n_edge} edges")


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class Batch:
    """Padded batch of B structures (numpy arrays; a JAX pytree, so it goes straight into a jitted step).

    graph        jraph batch padded to bucket sizes, n_graph graphs (B structures, then padding)
    layout       batched BlockLayout for dense [S, n_ao_pad, n_ao_pad] matrices: S = B slots for batches with
                 systems, else S = n_graph - 1 (slots past the B structures are empty), so that every batch of
                 a split, the last short one included, has the same shapes (one compilation of a step)
    targets      name -> (onsite [n_node, n_max, n_max], edges [n_edge, n_max, n_max]), zero on padding
                 and on structures without that target (spin matrices of spinful data: spin axes after the first)
    target_masks name -> (onsite, edge) bool masks of the same shapes: entries that carry a label
    onsite_mask  [n_node, n_max, n_max] bool: a real orbital pair of a real atom
    edge_mask    [n_edge, n_max, n_max] bool: a real orbital pair of a real edge whose block is known
    systems      ai2dft System stacked over the B structures, padded to n_ao_pad AOs; for crystals a
                 CrystalSystem stacked over B, unpadded (all of one shape: nk, nao, mesh, xc); None
                 when the examples carry no systems (supervised-only data)
    has_system   [S] float, 1 where a structure takes part in the label-free terms
    """

    graph: jraph.GraphsTuple
    layout: BlockLayout
    targets: dict[str, tuple[np.ndarray, np.ndarray]]
    target_masks: dict[str, tuple[np.ndarray, np.ndarray]]
    onsite_mask: np.ndarray
    edge_mask: np.ndarray
    systems: System | CrystalSystem | None
    has_system: np.ndarray


def species_index(basis: OrbitalBasis) -> dict[str, int]:
    """Element -> species integer: its index in ``basis.elements`` (sorted symbols)."""
    return {el: i for i, el in enumerate(basis.elements)}


def merged_basis(records: Sequence[DeepHRecord], names: Sequence[str] | None = None) -> OrbitalBasis:
    """One basis covering every record; raises naming the two records (``names``, default their indices)
    that disagree on an element's shells."""
    if not records:
        raise ValueError("no records")
    names = [f"record {i}" for i in range(len(records))] if names is None else names
    shells: dict[str, tuple[int, ...]] = {}
    first: dict[str, str] = {}  # element -> "name (basis)" of the record that fixed its shells
    for name, r in zip(names, records):
        for el in sorted(set(r.structure.symbols)):
            if shells.setdefault(el, r.basis.shells[el]) != r.basis.shells[el]:
                raise ValueError(f"records disagree on the shells of {el}: {shells[el]} in {first[el]} vs "
                                 f"{r.basis.shells[el]} in {name} ({r.basis.name})")
            first.setdefault(el, f"{name} ({r.basis.name})")
    basis_names = sorted({r.basis.name for r in records})
    return OrbitalBasis(basis_names[0] if len(basis_names) == 1 else "+".join(basis_names), shells)


THEORY_KEYS = ("xc", "grid_level", "density_fit", "smearing", "pseudopotential", "kmesh", "ke_cutoff_Ha", "spin")


def check_level_of_theory(records: Sequence[DeepHRecord], names: Sequence[str]) -> None:
    """Raise naming the records whose level of theory (xc, basis, grid, smearing, pseudopotential,
    k-mesh, cutoff, spin 2S; from the ``elct`` info.json entry) differs from the first record's."""
    theories = [{"basis": r.basis.name, **{k: r.dft.get(k) for k in THEORY_KEYS}} for r in records]
    ref = theories[0]
    odd = [(n, t) for n, t in zip(names, theories) if t != ref]
    if odd:
        name, other = odd[0]
        diff = {k: (ref[k], other[k]) for k in ref if ref[k] != other[k]}
        raise ValueError(f"labels of {len(odd)} record(s) have another level of theory than {names[0]}: "
                         f"{[n for n, _ in odd][:10]}; e.g. {name}: {diff} ({names[0]} vs {name})")


def make_example(record: DeepHRecord, basis: OrbitalBasis, cutoff_ang: float, system: System | None = None,
                 baseline: bool = False, spin: str = "none") -> Example:
    """Graph of the record's structure (``cutoff_ang``) with its blocks as targets (and an optional System).
    With ``baseline`` the record's H0 is kept as target "hamiltonian_0" and "hamiltonian" becomes H - H0
    (what the network learns, ``elct_jax.data.baseline``); without it H0 is dropped. ``spin``: the model's
    ``ModelConfig.spin``, which the record must match (``spinful.check_spin``); spinful matrices become targets
    in the network's spin layout (``spinful.padded_spin_blocks``), without an H0 baseline; a collinear record's
    system is an ``ai2dft.SpinSystem`` or ``SpinCrystalSystem`` (label-free terms), a spin-orbit record's an
    ``ai2dft.SpinorSystem``; collinear records give their atoms' initial moments as ``graph.nodes["magmom"]``
    (``spinful.initial_moments``)."""
    symbols = record.structure.symbols
    check_spin([record], [f"the record of {symbols}"], spin)
    if spin != "none" and baseline:
        raise ValueError(f"the record of {symbols}: spinful data train without an H0 baseline (H0 is spinless)")
    wanted = {"collinear": (SpinPolarized, "an ai2dft.SpinSystem or SpinCrystalSystem"),
              "soc": (SpinorSystem, "an ai2dft.SpinorSystem")}.get(spin, ((System, CrystalSystem), "a spinless system"))
    if system is not None and not isinstance(system, wanted[0]):
        raise ValueError(f"the record of {symbols}: a model with spin = {spin!r} takes {wanted[1]}, got "
                         f"{type(system).__name__}")
    graph = neighbor_graph(record.structure, cutoff_ang, species_index(basis))
    if spin == "collinear":
        graph = graph._replace(nodes={**graph.nodes, "magmom": initial_moments(record)})
    if baseline and BASELINE not in record.matrices:
        raise ValueError(f"record of {symbols} has no {BASELINE} (H0) blocks; run `elct data add-h0` on the dataset")
    targets, found = {}, np.ones(len(graph.senders), dtype=bool)
    for name, blocks in record.matrices.items():
        if name == BASELINE and not baseline:
            continue
        if record.spinful and name in SPIN_MATRICES:
            onsite, edges, present = padded_spin_blocks(blocks, basis, symbols, graph, spin)
        else:
            onsite, edges, present = blocks_from_dict(blocks, basis, symbols, graph)
        targets[name] = (onsite, edges)
        found &= present
    return Example(symbols, graph, subtract_baseline(targets), found, system)


@dataclass(frozen=True)
class PadSizes:
    """Static sizes of a padded batch: nodes, edges, AOs, grid points and auxiliary functions."""

    n_node: int
    n_edge: int
    n_ao: int
    n_grid: int = 0
    n_aux: int = 0

    def union(self, other: "PadSizes") -> "PadSizes":
        return PadSizes(*(max(a, b) for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def pad_sizes(examples: Sequence[Example], basis: OrbitalBasis) -> PadSizes:
    """The bucketed sizes ``collate`` pads ``examples`` to (grid and auxiliary sizes: those of the systems'
    ``grid_and_aux_sizes``, 0 for kinds stacked unpadded)."""
    grid, aux = np.max([grid_and_aux_sizes(ex.system) for ex in examples if ex.system is not None] or [(0, 0)],
                       axis=0)
    return PadSizes(
        n_node=bucket_size(sum(len(ex.symbols) for ex in examples) + 1),
        n_edge=bucket_size(sum(len(ex.graph.senders) for ex in examples)),
        n_ao=bucket_size(max(int(basis.ao_offsets(ex.symbols)[-1]) for ex in examples)),
        n_grid=bucket_size(int(grid), multiple=256) if grid else 0,
        n_aux=bucket_size(int(aux)) if aux else 0,
    )


def common_pad_sizes(groups: Sequence[Sequence[Example]], basis: OrbitalBasis) -> PadSizes:
    """One set of padded sizes for every group (batch), so a jitted step compiles once for all of them.
    Grid and auxiliary sizes of molecular systems vary slightly between geometries; padding alike costs little."""
    sizes = pad_sizes(groups[0], basis)
    for group in groups[1:]:
        sizes = sizes.union(pad_sizes(group, basis))
    return sizes


def pack_groups(examples: Sequence[Example], batch_size: int) -> list[list[Example]]:
    """Consecutive examples packed into groups (batches) of about ``batch_size`` average examples.

    A group is closed when the next example would take its nodes or edges past ``batch_size`` times
    the mean (at least the largest single example), or its length to 2 * batch_size. Structures of
    one size give groups of exactly ``batch_size``; mixed sizes (molecules of 2 to 14 atoms) fill
    every group to about the same padded size instead of padding small ones to the largest."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    nodes = np.array([len(ex.symbols) for ex in examples])
    edges = np.array([len(ex.graph.senders) for ex in examples])
    if not len(nodes):
        return []
    node_cap = max(batch_size * nodes.mean(), nodes.max())
    edge_cap = max(batch_size * edges.mean(), edges.max())
    groups, start, n_node, n_edge = [], 0, 0, 0
    for k in range(len(examples)):
        if k > start and (n_node + nodes[k] > node_cap or n_edge + edges[k] > edge_cap or k - start == 2 * batch_size):
            groups.append(list(examples[start:k]))
            start, n_node, n_edge = k, 0, 0
        n_node, n_edge = n_node + nodes[k], n_edge + edges[k]
    return groups + [list(examples[start:])]


def collate(examples: Sequence[Example], basis: OrbitalBasis, n_graph: int | None = None,
            sizes: PadSizes | None = None) -> Batch:
    """Pad a list of examples into one Batch with ``n_graph`` graphs (default len(examples) + 1), to
    ``sizes`` (default :func:`pad_sizes`; give common sizes to stack batches, e.g. one per device)."""
    n_graph = len(examples) + 1 if n_graph is None else n_graph
    sizes = pad_sizes(examples, basis) if sizes is None else sizes
    graph = pad_graph(batch_graphs([ex.graph for ex in examples]), sizes.n_node, sizes.n_edge, n_graph)
    n_slots = len(examples) if any(ex.system is not None for ex in examples) else n_graph - 1
    layout = block_layout(basis, [ex.symbols for ex in examples], graph, n_ao_pad=sizes.n_ao, n_slots=n_slots)
    dump = layout.n_graph * layout.n_ao_pad**2
    onsite_mask = layout.onsite_dest["internal"] != dump
    found = np.zeros(len(graph.senders), dtype=bool)
    edge_found = np.concatenate([ex.edge_found for ex in examples])
    found[: len(edge_found)] = edge_found
    edge_mask = (layout.edge_dest["internal"] != dump) & found[:, None, None]
    targets, target_masks = {}, {}
    for name in sorted(set.union(*(set(ex.targets) for ex in examples))):
        like = next(ex.targets[name][0] for ex in examples if name in ex.targets)
        onsite = [_target_or_zeros(ex, name, 0, len(ex.symbols), like) for ex in examples]
        edges = [_target_or_zeros(ex, name, 1, len(ex.graph.senders), like) for ex in examples]
        present = [np.full(len(ex.symbols), name in ex.targets) for ex in examples]
        present_edge = [np.full(len(ex.graph.senders), name in ex.targets) for ex in examples]
        targets[name] = (_stack(onsite, len(onsite_mask)), _stack(edges, len(edge_mask)))
        target_masks[name] = (_spread(onsite_mask & _stack(present, len(onsite_mask))[:, None, None], like.shape),
                              _spread(edge_mask & _stack(present_edge, len(edge_mask))[:, None, None], like.shape))
    systems, has_system = _stack_systems(examples, sizes, n_slots)
    return Batch(graph, layout, targets, target_masks, onsite_mask, edge_mask, systems, has_system)


def _target_or_zeros(ex: Example, name: str, part: int, n: int, like: np.ndarray) -> np.ndarray:
    """The example's target blocks (part 0 on-site, 1 edges), or zeros [n, *like.shape[1:]] if it has none."""
    return ex.targets[name][part] if name in ex.targets else np.zeros((n,) + like.shape[1:], like.dtype)


def _spread(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """mask [n, n_max, n_max] broadcast over the spin axes of targets of ``shape`` [n, *spin, n_max, n_max]."""
    return np.broadcast_to(mask.reshape(mask.shape[:1] + (1,) * (len(shape) - 3) + mask.shape[1:]),
                           mask.shape[:1] + shape[1:])


def _stack_systems(examples: Sequence[Example], sizes: PadSizes,
                   n_slots: int) -> tuple[System | CrystalSystem | None, np.ndarray]:
    """Systems padded to ``sizes`` (``padded_system``; crystals as they are), checked to share one shape
    and stacked over the batch, with the [B] presence flags; no systems: None and [n_slots] zeros."""
    if all(ex.system is None for ex in examples):
        return None, np.zeros(n_slots)
    if any(ex.system is None for ex in examples):
        raise ValueError("either every example of a batch has a DFT system or none has")
    if len({type(ex.system) for ex in examples}) > 1:
        raise ValueError("a batch mixes molecules and crystals; batch them separately")
    systems = [padded_system(ex.system, sizes.n_ao, sizes.n_grid, sizes.n_aux) for ex in examples]
    first = systems[0]
    for n, s in enumerate(systems[1:], start=1):
        same = jax.tree.structure(s) == jax.tree.structure(first) and all(
            a.shape == b.shape for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(first)))
        if not same:
            raise ValueError(f"system {n} of the batch has another shape than system 0 ({s!r} vs {first!r}); "
                             f"a batch needs one xc and smearing kind, and crystals one k-mesh, AO count and "
                             f"FFT mesh (use batch_size 1 for mixed crystals)")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *systems), np.ones(len(examples))


def _stack(arrays: list[np.ndarray], n_total: int) -> np.ndarray:
    """Concatenate along axis 0 and zero-pad to n_total rows."""
    out = np.concatenate(arrays)
    return np.concatenate([out, np.zeros((n_total - len(out),) + out.shape[1:], out.dtype)])


def split_indices(n: int, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)):
    """Deterministic (train, val, test) index arrays: a seeded permutation cut by ``fractions``."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round((fractions[0] + fractions[1]) * n)) - n_train
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


class Loader:
    """Batches of ``examples``; the order of epoch e depends only on (seed, e). A background thread
    collates up to ``prefetch`` batches ahead; errors in it are raised in the consumer."""

    def __init__(self, examples: Sequence[Example], basis: OrbitalBasis, batch_size: int, seed: int,
                 shuffle: bool = True, drop_last: bool = False, prefetch: int = 2):
        if batch_size < 1 or not examples:
            raise ValueError(f"need batch_size >= 1 and at least one example (got {batch_size}, {len(examples)})")
        self.examples, self.basis = list(examples), basis
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.drop_last, self.prefetch = drop_last, max(1, prefetch)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        n = len(self.examples)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        return [b for b in batches if len(b) == self.batch_size] if self.drop_last else batches

    def __len__(self) -> int:
        return len(self.batch_indices(0))

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """Iterate the batches of ``epoch``; every batch has batch_size + 1 graphs."""
        jobs = self.batch_indices(epoch)
        results: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    results.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for idx in jobs:
                    if not put(collate([self.examples[i] for i in idx], self.basis, n_graph=self.batch_size + 1)):
                        return
            except BaseException as err:  # handed to the consumer
                put(err)

        worker = threading.Thread(target=produce, daemon=True, name="elct-prefetch")
        worker.start()
        try:
            for _ in jobs:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

"""Sparse real-space matrices M_ij(R) in atom blocks, and their Bloch sums M(k) as scipy.sparse CSR.

A :class:`SparseBlocks` holds one matrix (H or S) of a structure of any size in the block format of
``elct_jax.hamiltonian.blocks`` (internal orbital order, atomic units), without padding:
  onsite    [n_atom, n_max, n_max]  M_ii(R = 0)
  senders, receivers [n_pair] int32, cell_shift [n_pair, 3] int32: the pairs (i, j, R) != (i, i, 0),
            sorted by (i, j, R1, R2, R3) (the edge convention of ``elct_jax.geometry.graph``)
  blocks    [n_pair, n_max, n_max]  M_ij(R)
Only the leading n_orb[i] x n_orb[j] entries of a block are used. H and S may have different pairs.

:class:`BlochMatrix` precomputes the CSR pattern once; ``bloch(k_frac)`` then costs one pass over the
blocks: M(k) = sum_R exp(2 pi i k.R) M(R) with k in units of the reciprocal lattice vectors
(PySCF's and DeepH's convention, as ``elct_jax.hamiltonian.blocks.bloch_sum``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse

from ai2dft.bloch import phases
from elct_jax.geometry.basis import OrbitalBasis

BlockKey = tuple[int, int, int, int, int]
_PAIR_CHUNK = 65536  # pairs per slice of the Bloch sum: bounds its temporary memory


@dataclass(frozen=True, eq=False)
class SparseBlocks:
    """One real-space matrix of a structure in atom blocks (see the module docstring)."""

    n_orb: np.ndarray
    onsite: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    cell_shift: np.ndarray
    blocks: np.ndarray

    def __post_init__(self):
        n_atom, n_pair = len(self.n_orb), len(self.senders)
        n_max = self.onsite.shape[-1] if self.onsite.ndim == 3 else 0
        if self.onsite.shape != (n_atom, n_max, n_max) or int(np.max(self.n_orb, initial=0)) > n_max:
            raise ValueError(f"onsite has shape {self.onsite.shape}; expected ({n_atom}, n_max, n_max) with "
                             f"n_max >= the largest orbital count {int(np.max(self.n_orb, initial=0))}")
        if (self.receivers.shape != (n_pair,) or self.cell_shift.shape != (n_pair, 3)
                or self.blocks.shape != (n_pair, n_max, n_max)):
            raise ValueError(f"pair arrays disagree: senders {self.senders.shape}, receivers "
                             f"{self.receivers.shape}, cell_shift {self.cell_shift.shape}, blocks {self.blocks.shape}")
        if n_pair and (min(self.senders.min(), self.receivers.min()) < 0
                       or max(self.senders.max(), self.receivers.max()) >= n_atom):
            raise ValueError(f"pair atom indices must lie in 0..{n_atom - 1}")

    @property
    def n_atom(self) -> int:
        return len(self.n_orb)

    @property
    def n_ao(self) -> int:
        return int(np.sum(self.n_orb))

    @property
    def ao_offsets(self) -> np.ndarray:
        """[n_atom + 1] first AO of each atom (last entry n_ao)."""
        return np.concatenate([[0], np.cumsum(self.n_orb)]).astype(np.int64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.onsite, self.senders, self.receivers, self.cell_shift, self.blocks))

    def key_index(self) -> dict[BlockKey, int]:
        """{(R1, R2, R3, i, j): pair index} of the off-site pairs."""
        return {(int(R[0]), int(R[1]), int(R[2]), int(i), int(j)): e
                for e, (i, j, R) in enumerate(zip(self.senders, self.receivers, self.cell_shift))}

    def to_dict(self) -> dict[BlockKey, np.ndarray]:
        """{(R1, R2, R3, i, j): n_i x n_j block}, on-site blocks included (the DeepH-dock record form)."""
        n = self.n_orb
        out = {(0, 0, 0, a, a): self.onsite[a, : n[a], : n[a]].copy() for a in range(self.n_atom)}
        for key, e in self.key_index().items():
            out[key] = self.blocks[e, : n[key[3]], : n[key[4]]].copy()
        return out

    @classmethod
    def from_dict(cls, blocks: Mapping[BlockKey, np.ndarray], n_orb: Sequence[int]) -> "SparseBlocks":
        """From {(R1, R2, R3, i, j): n_i x n_j block} (real, or complex for spin-orbit spinor blocks); every on-site
        block (0, 0, 0, i, i) must be present."""
        n_orb = np.asarray(n_orb, dtype=np.int64)
        n_max = int(n_orb.max())
        dtype = np.result_type(np.float64, *(np.asarray(b).dtype for b in blocks.values()))
        onsite = np.zeros((len(n_orb), n_max, n_max), dtype)
        for a, n in enumerate(n_orb):
            if (0, 0, 0, a, a) not in blocks:
                raise KeyError(f"on-site block (0, 0, 0, {a}, {a}) is missing")
            onsite[a, :n, :n] = _checked(blocks[(0, 0, 0, a, a)], (n, n), (0, 0, 0, a, a))
        keys = sorted((k[3], k[4], k[0], k[1], k[2]) for k in blocks if k[:3] != (0, 0, 0) or k[3] != k[4])
        arr = np.array(keys, dtype=np.int32).reshape(-1, 5)
        out = np.zeros((len(keys), n_max, n_max), dtype)
        for e, (i, j, r1, r2, r3) in enumerate(keys):
            if not (0 <= i < len(n_orb) and 0 <= j < len(n_orb)):
                raise ValueError(f"block {(r1, r2, r3, i, j)} refers to an atom outside 0..{len(n_orb) - 1}")
            out[e, : n_orb[i], : n_orb[j]] = _checked(blocks[(r1, r2, r3, i, j)], (n_orb[i], n_orb[j]), (r1, r2, r3, i, j))
        return cls(n_orb, onsite, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2:].copy(), out)

    def restricted_to(self, other: "SparseBlocks") -> "SparseBlocks":
        """This matrix keeping only the pairs that ``other`` has (e.g. a reference H cut to a model's
        neighbour list); pairs of ``other`` missing here are left out."""
        index = self.key_index()
        keep = [index[k] for k in other.key_index() if k in index]
        keep = np.array(sorted(keep), dtype=np.int64)
        return SparseBlocks(self.n_orb, self.onsite, self.senders[keep], self.receivers[keep],
                            self.cell_shift[keep], self.blocks[keep])


def sparse_from_basis(basis: OrbitalBasis, symbols: Sequence[str], onsite, senders, receivers, cell_shift,
                      blocks) -> SparseBlocks:
    """A SparseBlocks with the orbital counts of ``basis`` for ``symbols``."""
    n_orb = np.array([basis.n_orbitals(s) for s in symbols], dtype=np.int64)
    return SparseBlocks(n_orb, np.asarray(onsite), np.asarray(senders, np.int32), np.asarray(receivers, np.int32),
                        np.asarray(cell_shift, np.int32), np.asarray(blocks))


def spinor_sparse(uu: SparseBlocks, ud: SparseBlocks | None = None, du: SparseBlocks | None = None,
                  dd: SparseBlocks | None = None) -> SparseBlocks:
    """The spin-orbital matrix of four spin quadrants on the same pairs (each [n_orb] blocks; ud, du None: zero; dd
    None: uu, so that ``spinor_sparse(S)`` is S x 1_2), with 2 n_orb per atom in the spin-INNER layout: entry
    (2 a + s, 2 b + t) of a block is quadrant (s, t)'s entry (a, b), so the leading [2 n_i, 2 n_j] hold the atom
    pair's spin-orbitals however the blocks are padded. It differs from the spin-outer layout of the DeepH formats
    (``elct_jax.data.spinful``) by a permutation within each atom: the same eigenvalues."""
    zero = SparseBlocks(uu.n_orb, np.zeros_like(uu.onsite), uu.senders, uu.receivers, uu.cell_shift,
                        np.zeros_like(uu.blocks))
    parts = [uu, zero if ud is None else ud, zero if du is None else du, uu if dd is None else dd]
    if any(not np.array_equal(p.cell_shift, uu.cell_shift) or not np.array_equal(p.senders, uu.senders)
           or not np.array_equal(p.receivers, uu.receivers) for p in parts):
        raise ValueError("the spin quadrants of a spinor matrix must hold the same atom pairs")

    def interleave(blocks: list[np.ndarray]) -> np.ndarray:  # 4 x [n, m, m] -> [n, 2 m, 2 m]
        x = np.stack(blocks, axis=1).reshape(len(blocks[0]), 2, 2, *blocks[0].shape[1:])
        return x.transpose(0, 3, 1, 4, 2).reshape(len(x), 2 * x.shape[3], 2 * x.shape[4])

    return SparseBlocks(2 * uu.n_orb, interleave([p.onsite for p in parts]), uu.senders, uu.receivers,
                        uu.cell_shift, interleave([p.blocks for p in parts]))


def _checked(block, shape, key) -> np.ndarray:
    block, shape = np.asarray(block), tuple(int(n) for n in shape)
    if block.shape == (2 * shape[0], 2 * shape[1]):
        raise ValueError(f"block {key} has shape {block.shape}, twice the expected {shape}: a spinful (spin-outer) "
                         "block given to a spinless path; spinful records go through elct_jax.analysis.spin_bands")
    if block.shape != shape:
        raise ValueError(f"block {key} has shape {block.shape}, expected {shape}")
    return block


class BlochMatrix:
    """M(k) of one SparseBlocks as scipy.sparse CSR [n_ao, n_ao] complex128, pattern built once.

    The on-site blocks and all images R of an atom pair (i, j) fall into one CSR block, so the
    pattern is that of the unique pairs; ``bloch(k)`` sums the phases per pair and gathers the
    block entries into CSR order (columns sorted within each row).
    """

    def __init__(self, m: SparseBlocks):
        self.m = m
        n_max = m.onsite.shape[-1]
        atoms = np.arange(m.n_atom, dtype=np.int64)
        si = np.concatenate([atoms, m.senders.astype(np.int64)])
        sj = np.concatenate([atoms, m.receivers.astype(np.int64)])
        order = np.lexsort((sj, si))  # all blocks of one pair (i, j) contiguous, pairs in (i, j) order
        self._order = order
        si, sj = si[order], sj[order]
        new_pair = np.concatenate([[True], (si[1:] != si[:-1]) | (sj[1:] != sj[:-1])])
        self._pair_start = np.flatnonzero(new_pair)  # [n_unique] first block of each pair
        self._shift = np.concatenate([np.zeros((m.n_atom, 3), np.int64), m.cell_shift])[order]
        self._indptr, self._indices, self._gather = _csr_pattern(
            si[self._pair_start], sj[self._pair_start], m.n_orb, m.ao_offsets, n_max)
        self.shape = (m.n_ao, m.n_ao)

    @property
    def nnz(self) -> int:
        return len(self._indices)

    def bloch(self, k_frac) -> scipy.sparse.csr_matrix:
        """[n_ao, n_ao] complex128 CSR M(k) for one k [3] in reciprocal-lattice units."""
        k = np.asarray(k_frac, dtype=np.float64).reshape(3)
        m, n_max = self.m, self.m.onsite.shape[-1]
        n_on = m.n_atom
        pair_sum = np.empty((len(self._pair_start), n_max, n_max), np.complex128)
        starts = self._pair_start
        for lo in range(0, len(starts), _PAIR_CHUNK):  # slices of whole pairs: bounded temporaries
            hi = min(lo + _PAIR_CHUNK, len(starts))
            b0, b1 = starts[lo], (starts[hi] if hi < len(starts) else len(self._order))
            src = self._order[b0:b1]
            phase = phases(k[None], self._shift[b0:b1])[0]
            on = src < n_on
            data = np.empty((len(src), n_max, n_max), np.result_type(m.onsite, m.blocks))
            data[on] = m.onsite[src[on]]
            data[~on] = m.blocks[src[~on] - n_on]
            pair_sum[lo:hi] = np.add.reduceat(phase[:, None, None] * data, starts[lo:hi] - b0, axis=0)
        values = pair_sum.reshape(-1)[self._gather]
        return scipy.sparse.csr_matrix((values, self._indices, self._indptr), shape=self.shape)


def _csr_pattern(pi, pj, n_orb, offsets, n_max):
    """CSR indptr [n_ao + 1], column indices [nnz] int32 and gather [nnz] (flat index into the
    per-pair sums [n_unique, n_max, n_max]) for unique pairs (pi, pj) sorted by (i, j)."""
    n_ao = int(offsets[-1])
    g = np.arange(len(pi), dtype=np.int64)
    # one segment per (pair g, row a < n_orb[i]): n_orb[j] consecutive entries
    seg_g = np.repeat(g, n_orb[pi])
    seg_a = np.arange(len(seg_g)) - np.repeat(np.cumsum(n_orb[pi]) - n_orb[pi], n_orb[pi])
    seg_row = offsets[pi][seg_g] + seg_a
    order = np.lexsort((seg_g, seg_row))  # rows ascending; within a row pairs by j (columns sorted)
    seg_g, seg_a, seg_row = seg_g[order], seg_a[order], seg_row[order]
    length = n_orb[pj][seg_g]
    first = np.repeat(np.cumsum(length) - length, length)
    within = np.arange(int(length.sum()), dtype=np.int64) - first
    seg_of = np.repeat(np.arange(len(seg_g)), length)
    indices = (offsets[pj][seg_g][seg_of] + within).astype(np.int32)
    gather = seg_g[seg_of] * n_max * n_max + seg_a[seg_of] * n_max + within
    indptr = np.zeros(n_ao + 1, dtype=np.int64)
    np.add.at(indptr, seg_row + 1, length)
    return np.cumsum(indptr), indices, gather


def pyscf_to_internal(basis: OrbitalBasis, symbols: Sequence[str], m: SparseBlocks) -> SparseBlocks:
    """The same matrix with every block reordered from PySCF's AO order to the internal order."""
    n_max = m.onsite.shape[-1]
    perm = {el: basis.permutation([el], "pyscf") for el in set(symbols)}
    table = np.tile(np.arange(n_max), (len(symbols), 1))  # [n_atom, n_max] internal slot -> source slot
    for a, el in enumerate(symbols):
        table[a, : len(perm[el])] = perm[el]

    def reorder(blocks, rows, cols):
        out = np.take_along_axis(blocks, table[rows][:, :, None], axis=1)
        return np.take_along_axis(out, table[cols][:, None, :], axis=2)

    atoms = np.arange(len(symbols))
    return SparseBlocks(m.n_orb, reorder(m.onsite, atoms, atoms), m.senders, m.receivers, m.cell_shift,
                        reorder(m.blocks, m.senders, m.receivers))


def overlap_like(m: SparseBlocks, structure, basis: OrbitalBasis, chunk_atoms: int = 32) -> SparseBlocks:
    """S(R) on the pairs of ``m`` (e.g. a predicted H) from PySCF integrals of ``basis.name``, in
    chunks of atoms (``ai2dft.pyscf_bridge.overlap.pair_overlaps``); internal order."""
    from ai2dft.pyscf_bridge.overlap import pair_overlaps

    onsite, blocks = pair_overlaps(structure.symbols, structure.positions_ang, structure.lattice_ang, basis.name,
                                   m.senders, m.receivers, m.cell_shift, chunk_atoms=chunk_atoms)
    n_max = m.onsite.shape[-1]
    if onsite.shape[-1] != n_max:
        raise ValueError(f"basis {basis.name!r} gives {onsite.shape[-1]} orbitals per atom at most, the matrix {n_max}")
    raw = SparseBlocks(m.n_orb, onsite, m.senders, m.receivers, m.cell_shift, blocks)
    return pyscf_to_internal(basis, structure.symbols, raw)

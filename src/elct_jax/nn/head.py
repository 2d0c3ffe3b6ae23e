"""Wigner-Eckart head: equivariant features -> Hamiltonian blocks in internal orbital order.

An (l1, l2) sub-block carries the irreps L = |l1-l2| .. l1+l2 of parity (-1)^(l1+l2):
  H[i, j] = sum_L sqrt(2L+1) sum_M CG(l1, l2, L)[i, j, M] x_L[M]
(``e3nn.clebsch_gordan`` has Frobenius norm 1, so the map (L, M) -> (i, j) is orthogonal). Each x_L is
a linear combination of the feature channels of irrep (L, parity), with weights indexed by the
block's group: the species pair (i, j) for edge blocks, the species for on-site blocks.

With ``spin_rank`` 1 the head builds a vector of blocks B[i, j, a] in l1 x l2 x 1e (the spin-orbit part of
``elct_jax.hamiltonian.spinor``; a is the e3nn l = 1 component, lab (y, z, x)): each L of l1 x l2 is coupled
once more with 1e to K = |L-1| .. L+1 of parity (-1)^(l1+l2),
  B[i, j, a] = sum_{L, K} sqrt(2L+1) sqrt(2K+1) sum_{M, N} CG(l1, l2, L)[i, j, M] CG(L, 1, K)[M, a, N] x_K[N],
so a block needs features up to l1 + l2 + 1.

Layout of the computation (static tables built once per basis, :func:`head_tables`):
  1. per irrep (L, p): y [n, 2L+1, T] = x_Lp [n, 2L+1, C] @ W[group] [C, T] (+ bias on 0e);
  2. per shell-pair type (l1, l2) with S slots: the coupled vectors [n, S, d1 d2 w] -> uncoupled
     sub-blocks by the orthogonal CG matrix U [d1 d2 w, d1 d2 w] (w = 2 spin_rank + 1);
  3. one gather places each group's sub-blocks into its [n_max, n_max, w] block (zeros elsewhere).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import e3nn_jax as e3nn
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

Shells = tuple[int, ...]


@dataclass(frozen=True)
class HeadTables:
    """irreps  ((L, parity index, T), ...): output columns per irrep
    types   ((l1, l2, n_slots, ((L, first column in that irrep's T), ...)), ...): one (L, column) per coupled
            irrep of the type, in :func:`coupling_matrix` order
    gather  [n_groups, n_max * n_max * w] index into the concatenated uncoupled sub-blocks (+ a zero),
            w = 2 spin_rank + 1 entries per orbital pair
    """

    irreps: tuple[tuple[int, int, int], ...]
    types: tuple[tuple[int, int, int, tuple[tuple[int, int], ...]], ...]
    gather: np.ndarray
    n_max: int


def _shell_offsets(shells: Shells) -> list[int]:
    return list(np.concatenate([[0], np.cumsum([2 * l + 1 for l in shells])])[:-1])


def coupled_irreps(l1: int, l2: int, spin_rank: int = 0) -> list[int]:
    """Degrees of the coupled irreps of an (l1, l2) sub-block (x 1e for ``spin_rank`` 1), in column order of
    :func:`coupling_matrix`; all of parity (-1)^(l1+l2)."""
    ls = list(range(abs(l1 - l2), l1 + l2 + 1))
    return ls if spin_rank == 0 else [k for big_l in ls for k in range(abs(big_l - 1), big_l + 2)]


@functools.lru_cache(maxsize=None)
def head_tables(rows: tuple[Shells, ...], cols: tuple[Shells, ...], n_max: int, spin_rank: int = 0) -> HeadTables:
    """Tables for groups g whose blocks have row shells ``rows[g]`` and column shells ``cols[g]``."""
    w = 2 * spin_rank + 1
    pairs = [[(l1, l2, r0, c0) for l1, r0 in zip(r, _shell_offsets(r)) for l2, c0 in zip(c, _shell_offsets(c))]
             for r, c in zip(rows, cols)]
    type_list = sorted({(l1, l2) for p in pairs for l1, l2, _, _ in p})
    n_slots = {t: max(sum((l1, l2) == t for l1, l2, _, _ in p) for p in pairs) for t in type_list}
    columns: dict[tuple[int, int], int] = {}
    types = []
    for l1, l2 in type_list:
        par = (l1 + l2) % 2
        bases = []
        for big_l in coupled_irreps(l1, l2, spin_rank):
            bases.append((big_l, columns.get((big_l, par), 0)))
            columns[(big_l, par)] = columns.get((big_l, par), 0) + n_slots[(l1, l2)]
        types.append((l1, l2, n_slots[(l1, l2)], tuple(bases)))
    size = {t: n_slots[t] * (2 * t[0] + 1) * (2 * t[1] + 1) * w for t in type_list}
    type_offset = dict(zip(type_list, np.cumsum([0] + [size[t] for t in type_list])))
    sentinel = int(sum(size.values()))
    gather = np.full((len(rows), n_max, n_max, w), sentinel, dtype=np.int32)
    for g, p in enumerate(pairs):
        used: dict[tuple[int, int], int] = {}
        for l1, l2, r0, c0 in p:
            s = used.get((l1, l2), 0)
            used[(l1, l2)] = s + 1
            d1, d2 = 2 * l1 + 1, 2 * l2 + 1
            start = type_offset[(l1, l2)] + s * d1 * d2 * w
            gather[g, r0 : r0 + d1, c0 : c0 + d2] = start + np.arange(d1 * d2 * w).reshape(d1, d2, w)
    irreps = tuple((big_l, par, t) for (big_l, par), t in sorted(columns.items()))
    return HeadTables(irreps=irreps, types=tuple(types), gather=gather.reshape(len(rows), -1), n_max=n_max)


@functools.lru_cache(maxsize=None)
def coupling_matrix(l1: int, l2: int, spin_rank: int = 0) -> np.ndarray:
    """Orthogonal U[(i, j), (L, M)] = sqrt(2L+1) CG(l1, l2, L)[i, j, M], [d1 d2, d1 d2]; for ``spin_rank`` 1
    U[(i, j, a), (L, K, N)] = sqrt(2L+1) sqrt(2K+1) sum_M CG(l1, l2, L)[i, j, M] CG(L, 1, K)[M, a, N], [3 d1 d2, 3 d1 d2]."""
    cols = []
    for big_l in range(abs(l1 - l2), l1 + l2 + 1):
        cg = np.sqrt(2 * big_l + 1) * np.asarray(e3nn.clebsch_gordan(l1, l2, big_l))  # [d1, d2, 2L+1]
        if spin_rank == 0:
            cols.append(cg.reshape((2 * l1 + 1) * (2 * l2 + 1), -1))
            continue
        for k in range(abs(big_l - 1), big_l + 2):
            vec = np.sqrt(2 * k + 1) * np.asarray(e3nn.clebsch_gordan(big_l, 1, k))  # [2L+1, 3, 2K+1]
            cols.append(np.einsum("ijm,man->ijan", cg, vec).reshape(3 * (2 * l1 + 1) * (2 * l2 + 1), -1))
    return np.concatenate(cols, axis=1)


class WignerEckartHead(nn.Module):
    """Blocks [n, n_max, n_max] from lab-layout features x [n, (L+1)**2, 2, C] and groups [n] int; with
    ``spin_rank`` 1 vectors of blocks [n, 3, n_max, n_max] in l1 x l2 x 1e (vector index: e3nn's l = 1
    components, lab (y, z, x)).

    rows/cols: shells of the row/column atom of each group (e.g. species pairs for edges).
    init_scale: multiplies the standard deviation c**-0.5 of the initial weights (the blocks' initial size).
    """

    rows: tuple[Shells, ...]
    cols: tuple[Shells, ...]
    n_max: int
    param_dtype: jnp.dtype = jnp.float32
    init_scale: float = 1.0
    spin_rank: int = 0

    @nn.compact
    def __call__(self, x: jnp.ndarray, group: jnp.ndarray) -> jnp.ndarray:
        tables = head_tables(self.rows, self.cols, self.n_max, self.spin_rank)
        l_feat, c = int(round(np.sqrt(x.shape[-3]))) - 1, x.shape[-1]
        need = max(big_l for big_l, _, _ in tables.irreps)
        if need > l_feat:
            what = "l1 + l2 + 1 for spin-orbit blocks" if self.spin_rank else "l1 + l2"
            raise ValueError(f"the orbital basis needs features up to l = {need} ({what}), the network has "
                             f"l_max = {l_feat}; raise ModelConfig.l_max")
        n_groups, n_cols = len(self.rows), sum(t for _, _, t in tables.irreps)
        weight = self.param("weight", nn.initializers.normal(self.init_scale * c**-0.5), (n_groups, c, n_cols),
                            self.param_dtype)
        weight = weight[group]  # [n, C, n_cols]
        y, col = {}, 0
        for big_l, par, t in tables.irreps:
            y[(big_l, par)] = jnp.einsum("nmc,nct->nmt", x[:, big_l * big_l : (big_l + 1) ** 2, par, :],
                                         weight[:, :, col : col + t])
            col += t
        if (0, 0) in y:
            n_scalar = y[(0, 0)].shape[-1]
            bias = self.param("bias_0e", nn.initializers.zeros, (n_groups, n_scalar), self.param_dtype)
            y[(0, 0)] = y[(0, 0)] + bias[group][:, None, :]
        pieces = []
        for l1, l2, slots, bases in tables.types:
            par = (l1 + l2) % 2
            coupled = jnp.concatenate(
                [jnp.swapaxes(y[(big_l, par)][:, :, base : base + slots], 1, 2) for big_l, base in bases], axis=-1
            )  # [n, slots, d1 d2]
            u = jnp.asarray(coupling_matrix(l1, l2, self.spin_rank), x.dtype)
            pieces.append(jnp.einsum("nsk,ak->nsa", coupled, u).reshape(x.shape[0], slots * u.shape[0]))
        flat = jnp.concatenate(pieces + [jnp.zeros((x.shape[0], 1), x.dtype)], axis=-1)
        blocks = jnp.take_along_axis(flat, jnp.asarray(tables.gather)[group], axis=1)
        if self.spin_rank == 0:
            return blocks.reshape(-1, self.n_max, self.n_max)
        return jnp.moveaxis(blocks.reshape(-1, self.n_max, self.n_max, 3), -1, 1)

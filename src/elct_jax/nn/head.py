"""Wigner-Eckart head: equivariant features -> Hamiltonian blocks in internal orbital order.

An (l1, l2) sub-block carries the irreps L = |l1-l2| .. l1+l2 of parity (-1)^(l1+l2):
  H[i, j] = sum_L sqrt(2L+1) sum_M CG(l1, l2, L)[i, j, M] x_L[M]
(``e3nn.clebsch_gordan`` has Frobenius norm 1, so the map (L, M) -> (i, j) is orthogonal). Each x_L is
a linear combination of the feature channels of irrep (L, parity), with weights indexed by the
block's group: the species pair (i, j) for edge blocks, the species for on-site blocks.

Layout of the computation (static tables built once per basis, :func:`head_tables`):
  1. per irrep (L, p): y [n, 2L+1, T] = x_Lp [n, 2L+1, C] @ W[group] [C, T] (+ bias on 0e);
  2. per shell-pair type (l1, l2) with S slots: the coupled vectors [n, S, d1 d2] -> uncoupled
     sub-blocks by the orthogonal CG matrix U [d1 d2, d1 d2];
  3. one gather places each group's sub-blocks into its [n_max, n_max] block (zeros elsewhere).
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
    types   ((l1, l2, n_slots, ((L, first column in that irrep's T), ...)), ...)
    gather  [n_groups, n_max * n_max] index into the concatenated uncoupled sub-blocks (+ a zero)
    """

    irreps: tuple[tuple[int, int, int], ...]
    types: tuple[tuple[int, int, int, tuple[tuple[int, int], ...]], ...]
    gather: np.ndarray
    n_max: int


def _shell_offsets(shells: Shells) -> list[int]:
    return list(np.concatenate([[0], np.cumsum([2 * l + 1 for l in shells])])[:-1])


@functools.lru_cache(maxsize=None)
def head_tables(rows: tuple[Shells, ...], cols: tuple[Shells, ...], n_max: int) -> HeadTables:
    """Tables for groups g whose blocks have row shells ``rows[g]`` and column shells ``cols[g]``."""
    pairs = [[(l1, l2, r0, c0) for l1, r0 in zip(r, _shell_offsets(r)) for l2, c0 in zip(c, _shell_offsets(c))]
             for r, c in zip(rows, cols)]
    type_list = sorted({(l1, l2) for p in pairs for l1, l2, _, _ in p})
    n_slots = {t: max(sum((l1, l2) == t for l1, l2, _, _ in p) for p in pairs) for t in type_list}
    columns: dict[tuple[int, int], int] = {}
    types = []
    for l1, l2 in type_list:
        par = (l1 + l2) % 2
        bases = []
        for big_l in range(abs(l1 - l2), l1 + l2 + 1):
            bases.append((big_l, columns.get((big_l, par), 0)))
            columns[(big_l, par)] = columns.get((big_l, par), 0) + n_slots[(l1, l2)]
        types.append((l1, l2, n_slots[(l1, l2)], tuple(bases)))
    type_offset = dict(zip(type_list, np.cumsum([0] + [n_slots[t] * (2 * t[0] + 1) * (2 * t[1] + 1) for t in type_list])))
    sentinel = int(sum(n_slots[t] * (2 * t[0] + 1) * (2 * t[1] + 1) for t in type_list))
    gather = np.full((len(rows), n_max, n_max), sentinel, dtype=np.int32)
    for g, p in enumerate(pairs):
        used: dict[tuple[int, int], int] = {}
        for l1, l2, r0, c0 in p:
            s = used.get((l1, l2), 0)
            used[(l1, l2)] = s + 1
            d1, d2 = 2 * l1 + 1, 2 * l2 + 1
            start = type_offset[(l1, l2)] + s * d1 * d2
            gather[g, r0 : r0 + d1, c0 : c0 + d2] = start + np.arange(d1 * d2).reshape(d1, d2)
    irreps = tuple((big_l, par, t) for (big_l, par), t in sorted(columns.items()))
    return HeadTables(irreps=irreps, types=tuple(types), gather=gather.reshape(len(rows), -1), n_max=n_max)


@functools.lru_cache(maxsize=None)
def coupling_matrix(l1: int, l2: int) -> np.ndarray:
    """[(2l1+1)(2l2+1), (2l1+1)(2l2+1)] orthogonal U[(i, j), (L, M)] = sqrt(2L+1) CG(l1, l2, L)[i, j, M]."""
    cols = [np.sqrt(2 * L + 1) * e3nn.clebsch_gordan(l1, l2, L).reshape((2 * l1 + 1) * (2 * l2 + 1), -1)
            for L in range(abs(l1 - l2), l1 + l2 + 1)]
    return np.concatenate(cols, axis=1)


class WignerEckartHead(nn.Module):
    """Blocks [n, n_max, n_max] from lab-layout features x [n, (L+1)**2, 2, C] and groups [n] int.

    rows/cols: shells of the row/column atom of each group (e.g. species pairs for edges).
    init_scale: multiplies the standard deviation c**-0.5 of the initial weights (the blocks' initial size).
    """

    rows: tuple[Shells, ...]
    cols: tuple[Shells, ...]
    n_max: int
    param_dtype: jnp.dtype = jnp.float32
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, group: jnp.ndarray) -> jnp.ndarray:
        tables = head_tables(self.rows, self.cols, self.n_max)
        l_feat, c = int(round(np.sqrt(x.shape[-3]))) - 1, x.shape[-1]
        need = max(big_l for big_l, _, _ in tables.irreps)
        if need > l_feat:
            raise ValueError(f"the orbital basis needs features up to l = {need} (l1 + l2), the network has "
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
            u = jnp.asarray(coupling_matrix(l1, l2), x.dtype)
            pieces.append(jnp.einsum("nsk,ak->nsa", coupled, u).reshape(x.shape[0], slots * u.shape[0]))
        flat = jnp.concatenate(pieces + [jnp.zeros((x.shape[0], 1), x.dtype)], axis=-1)
        blocks = jnp.take_along_axis(flat, jnp.asarray(tables.gather)[group], axis=1)
        return blocks.reshape(-1, self.n_max, self.n_max)

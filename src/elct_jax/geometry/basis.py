"""Atomic-orbital bases and orbital-ordering conventions: the ONE place they live.

Orders used in the project
--------------------------
* ``internal`` = Wikipedia real spherical harmonics, m = -l..l, for every l. This is the order
  of the DeepH-dock files and of every block the network predicts. p is (py, pz, px).
* ``pyscf``: identical to ``internal`` for l != 1; p is (px, py, pz).
* ``openmx`` (legacy DeepH): p (px, py, pz); d (z2, x2-y2, xy, xz, yz); f see ``_OPENMX_TO_INTERNAL``.

Geometry convention (e3nn-jax uses y as the polar axis): a lab vector r = (x, y, z) enters e3nn as
``r[..., LAB_TO_E3NN] = (y, z, x)``. With that permutation e3nn's irrep-l components equal the
``internal`` orbital order, and a lab rotation R acts on an l block as
``e3nn.Irrep(l, (-1)**l).D_from_matrix(P @ R @ P.T)`` with ``P = lab_to_e3nn_matrix()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import e3nn_jax as e3nn
import numpy as np

LAB_TO_E3NN = np.array([1, 2, 0])  # r_e3nn = r_lab[LAB_TO_E3NN]

# perm[l] such that internal_block = source_block[perm[l]] for one shell of angular momentum l.
_PYSCF_TO_INTERNAL = {1: np.array([1, 2, 0])}
_OPENMX_TO_INTERNAL = {
    1: np.array([1, 2, 0]),
    2: np.array([2, 4, 0, 3, 1]),
    3: np.array([6, 4, 2, 0, 1, 3, 5]),
}
_ORDERS = {"pyscf": _PYSCF_TO_INTERNAL, "openmx": _OPENMX_TO_INTERNAL, "internal": {}}


def lab_to_e3nn_matrix() -> np.ndarray:
    """[3, 3] permutation matrix P with ``P @ r_lab = r_e3nn``."""
    return np.eye(3)[LAB_TO_E3NN]


def shell_permutation(shells: Sequence[int], order: str) -> np.ndarray:
    """Index array p with ``internal = source[p]`` for an AO vector whose shells have angular momenta
    ``shells`` (in sequence) and whose m-order within each shell follows ``order``.

    The inverse map is ``np.argsort(p)``: ``source = internal[np.argsort(p)]``.
    """
    if order not in _ORDERS:
        raise ValueError(f"unknown orbital order {order!r}; expected one of {sorted(_ORDERS)}")
    table = _ORDERS[order]
    pieces, offset = [], 0
    for l in shells:
        local = table.get(l, np.arange(2 * l + 1))
        if order == "openmx" and l > 3:
            raise ValueError(f"OpenMX order is defined here up to l = 3, got a shell with l = {l}")
        pieces.append(offset + local)
        offset += 2 * l + 1
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=int)


@dataclass(frozen=True)
class OrbitalBasis:
    """Shells per element. ``shells[symbol]`` lists the angular momentum of each shell in AO order.

    Example: def2-SVP oxygen is ``(0, 0, 0, 1, 1, 2)`` (3s2p1d, 14 AOs).
    """

    name: str
    shells: dict[str, tuple[int, ...]]

    def __hash__(self) -> int:  # hashable, so a basis can be a static argument of jitted functions
        return hash((self.name, tuple(sorted(self.shells.items()))))

    @classmethod
    def from_pyscf(cls, basis: str, elements: Sequence[str]) -> "OrbitalBasis":
        """Shells of a named PySCF basis (e.g. ``"def2-svp"``, ``"gth-dzvp"``) for ``elements``."""
        from ai2dft.pyscf_bridge import element_shells

        return cls(basis, {el: element_shells(basis, el) for el in sorted(set(elements))})

    def _shells_of(self, symbol: str) -> tuple[int, ...]:
        if symbol not in self.shells:
            raise KeyError(f"element {symbol!r} is not in basis {self.name!r} (has {sorted(self.shells)})")
        return self.shells[symbol]

    def n_orbitals(self, symbol: str) -> int:
        return sum(2 * l + 1 for l in self._shells_of(symbol))

    def irreps(self, symbol: str) -> e3nn.Irreps:
        """Irreps of one atom's AO vector in internal order: one ``1x l p`` per shell, p = (-1)^l."""
        return e3nn.Irreps([(1, (l, (-1) ** l)) for l in self._shells_of(symbol)])

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(sorted(self.shells))

    @property
    def l_max(self) -> int:
        return max(max(s) for s in self.shells.values())

    def ao_offsets(self, symbols: Sequence[str]) -> np.ndarray:
        """[n_atoms + 1] start of each atom's AOs in a structure's AO vector (last entry: n_ao)."""
        return np.concatenate([[0], np.cumsum([self.n_orbitals(s) for s in symbols])]).astype(int)

    def permutation(self, symbols: Sequence[str], order: str) -> np.ndarray:
        """[n_ao] index array p with ``internal = source[p]`` for a whole structure's AO vector."""
        offsets = self.ao_offsets(symbols)
        return np.concatenate(
            [offsets[a] + shell_permutation(self._shells_of(s), order) for a, s in enumerate(symbols)]
        )

    def to_internal(self, matrix: np.ndarray, symbols: Sequence[str], order: str) -> np.ndarray:
        """Reorder the last two AO axes of ``matrix`` [..., n_ao, n_ao] from ``order`` to internal."""
        p = self.permutation(symbols, order)
        return matrix[..., p, :][..., :, p]

    def from_internal(self, matrix: np.ndarray, symbols: Sequence[str], order: str) -> np.ndarray:
        """Inverse of :meth:`to_internal`."""
        q = np.argsort(self.permutation(symbols, order))
        return matrix[..., q, :][..., :, q]

    def rotation_matrix(self, symbols: Sequence[str], rotation: np.ndarray) -> np.ndarray:
        """[n_ao, n_ao] block-diagonal D such that a lab rotation/inversion ``rotation`` [3, 3] maps an
        internal-order matrix M of the structure to ``D @ M @ D.T``."""
        P = lab_to_e3nn_matrix()
        q = P @ np.asarray(rotation, dtype=np.float64) @ P.T
        blocks = [np.asarray(self.irreps(s).D_from_matrix(q)) for s in symbols]
        n = sum(b.shape[0] for b in blocks)
        out, i = np.zeros((n, n)), 0
        for b in blocks:
            out[i : i + b.shape[0], i : i + b.shape[0]] = b
            i += b.shape[0]
        return out

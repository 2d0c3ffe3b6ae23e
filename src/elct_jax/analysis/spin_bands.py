"""Band channels of a record: spinless, collinear spin (up and down bands) or spin-orbit (spinor bands).

A record's H(R), S(R) (``elct_jax.data.deeph_dock.DeepHRecord``, internal order, Hartree) become one or two
``BandSolver`` s, by the record's spin treatment (``elct_jax.data.spinful.spin_treatment``):

* spinless: one solver of H, S; every level holds 2 electrons;
* collinear: the up-up and down-down quadrants of the spinful blocks, each with the spinless S: two solvers
  ("up", "down") whose levels hold one electron each and share one Fermi level;
* non-collinear (spin-orbit): the spinor blocks [2 n_i, 2 n_j] as they are (spin outer per atom pair) with S x 1_2,
  [[S_ij, 0], [0, S_ij]] in the same layout: one solver of the 2 n_ao spinor bands, one electron per level.
  The atom-by-atom spin-outer order differs from the dense [[M_uu, M_ud], [M_du, M_dd]] order of a whole structure
  only by a permutation, so the eigenvalues are the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elct_jax.analysis.bands import BandSolver
from elct_jax.data.deeph_dock import atom_orbital_counts
from elct_jax.data.spinful import quadrants, spin_treatment
from elct_jax.hamiltonian.sparse import SparseBlocks


@dataclass(frozen=True)
class BandChannels:
    """treatment "none" | "collinear" | "noncollinear"; names and solvers, one per channel ("" spinless, "up" and
    "down", "spinor"); electrons_per_level 2 (spinless) or 1."""

    treatment: str
    names: tuple[str, ...]
    solvers: tuple[BandSolver, ...]
    electrons_per_level: int


def band_channels(record, where: str = "the record", spin: str | None = None) -> BandChannels:
    """The band solvers of ``record``'s "hamiltonian" and "overlap" matrices. ``spin``: the treatment the caller
    expects ("none", "collinear", "noncollinear"; None: any), checked against the record's, naming ``where``."""
    H, S = record.matrices["hamiltonian"], record.matrices["overlap"]
    treatment = spin_treatment(record.spinful, H)
    if spin is not None and spin != treatment:
        raise ValueError(f"{where} holds {_DESCRIBE[treatment]}, but {_DESCRIBE[spin]} was expected")
    n_orb = atom_orbital_counts(record.basis, record.structure.symbols)
    s = SparseBlocks.from_dict(S, n_orb)
    if treatment == "none":
        return BandChannels(treatment, ("",), (BandSolver(SparseBlocks.from_dict(H, n_orb), s),), 2)
    if treatment == "collinear":
        parts = [{key: quadrants(np.asarray(b))[q] for key, b in H.items()} for q in (0, 3)]
        return BandChannels(treatment, ("up", "down"), tuple(BandSolver(SparseBlocks.from_dict(p, n_orb), s)
                                                             for p in parts), 1)
    spinor_s = {key: np.kron(np.eye(2), np.asarray(b)) for key, b in S.items()}
    n2 = [2 * n for n in n_orb]
    return BandChannels(treatment, ("spinor",),
                        (BandSolver(SparseBlocks.from_dict(H, n2), SparseBlocks.from_dict(spinor_s, n2)),), 1)


_DESCRIBE = {"none": "spinless data (blocks [n_i, n_j])",
             "collinear": "collinear spin data (spinful blocks [2 n_i, 2 n_j], zero up-down quadrants, real)",
             "noncollinear": "spin-orbit data (complex spinful blocks [2 n_i, 2 n_j])"}

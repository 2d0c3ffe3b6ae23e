"""Band channels of a record: spinless, collinear spin (up and down bands) or spin-orbit (spinor bands).

A record's H(R), S(R) (``elct_jax.data.deeph_dock.DeepHRecord``, internal order, Hartree) become one or two
``BandSolver`` s, by the record's spin treatment (``elct_jax.data.spinful.spin_treatment``):

* spinless: one solver of H, S; every level holds 2 electrons;
* collinear: the up-up and down-down quadrants of the spinful blocks, each with the spinless S: two solvers
  ("up", "down") whose levels hold one electron each and share one Fermi level;
* non-collinear (spin-orbit): the four spin quadrants of the spinor blocks [2 n_i, 2 n_j] reassembled, with
  S x 1_2, in the spin-inner layout of ``elct_jax.hamiltonian.sparse.spinor_sparse``: one solver of the 2 n_ao
  spinor bands, one electron per level. That order differs from the dense [[M_uu, M_ud], [M_du, M_dd]] order of a
  whole structure only by a permutation, so the eigenvalues are the same.

A model's predicted H(R) (``elct_jax.inference.chunked.predict_sparse_parts``) comes as the same spin parts:
:func:`parts_channels`.
"""
from __future__ import annotations

from dataclasses import dataclass

from elct_jax.analysis.bands import BandSolver
from elct_jax.data.deeph_dock import atom_orbital_counts
from elct_jax.data.spinful import SPIN_PARTS, spin_parts, spin_treatment
from elct_jax.hamiltonian.sparse import SparseBlocks, spinor_sparse


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
    return parts_channels(treatment, [SparseBlocks.from_dict(p, n_orb) for p in spin_parts(H, treatment)],
                          SparseBlocks.from_dict(S, n_orb))


def parts_channels(treatment: str, parts, s: SparseBlocks) -> BandChannels:
    """The band solvers of H(R) given by its spin parts (SparseBlocks, [n_orb] blocks, internal order, one per
    ``elct_jax.data.spinful.SPIN_PARTS[treatment]``, as ``elct_jax.inference.chunked.predict_sparse_parts`` gives
    them) and the spinless S(R): "none" (H,), "collinear" (H_up, H_down), "noncollinear" (H_uu, H_ud, H_du, H_dd),
    assembled into the spinor matrix with S x 1_2 (``elct_jax.hamiltonian.sparse.spinor_sparse``)."""
    if len(parts) != len(SPIN_PARTS[treatment]):
        raise ValueError(f"{len(parts)} spin parts of H for {_DESCRIBE[treatment]}")
    if treatment == "none":
        return BandChannels(treatment, ("",), (BandSolver(parts[0], s),), 2)
    if treatment == "collinear":
        return BandChannels(treatment, ("up", "down"), tuple(BandSolver(h, s) for h in parts), 1)
    return BandChannels(treatment, ("spinor",), (BandSolver(spinor_sparse(*parts), spinor_sparse(s)),), 1)


_DESCRIBE = {"none": "spinless data (blocks [n_i, n_j])",
             "collinear": "collinear spin data (spinful blocks [2 n_i, 2 n_j], zero up-down quadrants, real)",
             "noncollinear": "spin-orbit data (complex spinful blocks [2 n_i, 2 n_j])"}

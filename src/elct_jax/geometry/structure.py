"""Atomic structures (molecules and crystals) in Angstrom, validated once at construction."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

MIN_DISTANCE_ANG = 0.1  # two atoms closer than this are treated as a construction error


@dataclass(frozen=True, eq=False)
class Structure:
    """An atomic structure. Lengths in Angstrom.

    symbols       chemical symbols, one per atom
    positions_ang [n_atoms, 3] Cartesian positions
    lattice_ang   [3, 3] lattice, ROWS are the lattice vectors a1, a2, a3; ``None`` for a molecule
    pbc           periodicity along a1, a2, a3; must be all False when ``lattice_ang`` is None
    """

    symbols: tuple[str, ...]
    positions_ang: np.ndarray
    lattice_ang: np.ndarray | None = None
    pbc: tuple[bool, bool, bool] = (False, False, False)

    def __post_init__(self):
        symbols = tuple(str(s) for s in self.symbols)
        unknown = sorted({s for s in symbols if s not in chemical_symbols[1:]})
        if unknown:
            raise ValueError(f"unknown chemical element(s) {unknown}")
        positions = np.array(self.positions_ang, dtype=np.float64)
        if positions.shape != (len(symbols), 3):
            raise ValueError(f"positions_ang must have shape ({len(symbols)}, 3), got {positions.shape}")
        if not np.all(np.isfinite(positions)):
            raise ValueError("positions_ang contains non-finite values")
        pbc = tuple(bool(p) for p in np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)))
        lattice = None if self.lattice_ang is None else np.array(self.lattice_ang, dtype=np.float64)
        if lattice is None and any(pbc):
            raise ValueError(f"pbc={pbc} needs a lattice, but lattice_ang is None")
        if lattice is not None:
            _check_lattice(lattice)
        positions.flags.writeable = False
        if lattice is not None:
            lattice.flags.writeable = False
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "positions_ang", positions)
        object.__setattr__(self, "lattice_ang", lattice)
        object.__setattr__(self, "pbc", pbc)
        _check_no_overlap(self)

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def is_periodic(self) -> bool:
        return any(self.pbc)

    def wrapped(self) -> "Structure":
        """The same crystal with every atom moved into the home cell along the periodic directions
        (fractional coordinates in [0, 1)); a molecule unchanged. Stored data keep atoms in the home cell, so
        the lattice shifts R of their blocks mean the same to every DeepH tool."""
        if not self.is_periodic:
            return self
        frac = self.positions_ang @ np.linalg.inv(self.lattice_ang)
        periodic = np.array(self.pbc)
        frac[:, periodic] -= np.floor(frac[:, periodic])
        return Structure(self.symbols, frac @ self.lattice_ang, self.lattice_ang, self.pbc)

    @classmethod
    def from_ase(cls, atoms) -> "Structure":
        """From an ``ase.Atoms``. A zero cell (typical for .xyz molecules) becomes ``lattice_ang=None``."""
        cell = np.asarray(atoms.cell, dtype=np.float64)
        pbc = tuple(bool(p) for p in atoms.pbc)
        lattice = None if (not any(pbc) and not np.any(cell)) else cell
        return cls(tuple(atoms.get_chemical_symbols()), atoms.positions, lattice, pbc)

    def to_ase(self):
        """An ``ase.Atoms`` with the same symbols, positions, cell and pbc."""
        from ase import Atoms

        cell = np.zeros((3, 3)) if self.lattice_ang is None else self.lattice_ang
        return Atoms(symbols=list(self.symbols), positions=self.positions_ang, cell=cell, pbc=self.pbc)

    @classmethod
    def read(cls, path: str | Path, index: int | str = -1) -> "Structure":
        """Read any format ``ase.io.read`` knows (xyz, extxyz, POSCAR, cif, ...); ``index`` picks the frame."""
        import ase.io

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
        try:
            atoms = ase.io.read(path, index=index)
        except Exception as err:  # ase raises many types depending on the format
            raise ValueError(f"could not read a structure from {str(path)!r}: {err}") from err
        if not hasattr(atoms, "positions"):
            raise ValueError(f"{str(path)!r}: index={index!r} selected several frames; give one integer")
        try:
            return cls.from_ase(atoms)
        except ValueError as err:
            raise ValueError(f"{str(path)!r}: {err}") from err


def _check_lattice(lattice: np.ndarray) -> None:
    if lattice.shape != (3, 3) or not np.all(np.isfinite(lattice)):
        raise ValueError(f"lattice_ang must be a finite (3, 3) array, got shape {lattice.shape}")
    volume = abs(np.linalg.det(lattice))
    if volume < 1e-6 * max(np.linalg.norm(lattice, axis=1).prod(), 1e-300):
        raise ValueError(f"lattice_ang is singular (volume {volume:.3g} A^3); rows must be independent vectors")


def _check_no_overlap(structure: Structure) -> None:
    """Raise when two atoms (or an atom and a periodic image) are closer than MIN_DISTANCE_ANG."""
    from ase.neighborlist import primitive_neighbor_list

    if structure.n_atoms == 0:
        return
    cell = np.zeros((3, 3)) if structure.lattice_ang is None else structure.lattice_ang
    i, j, d = primitive_neighbor_list(
        "ijd", structure.pbc, cell, structure.positions_ang, MIN_DISTANCE_ANG, self_interaction=False
    )
    if len(i):
        k = int(np.argmin(d))
        raise ValueError(
            f"atoms {i[k]} ({structure.symbols[i[k]]}) and {j[k]} ({structure.symbols[j[k]]}) overlap: "
            f"distance {d[k]:.4f} A < {MIN_DISTANCE_ANG} A"
        )

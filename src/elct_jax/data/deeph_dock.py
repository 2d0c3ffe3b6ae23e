"""The DeepH-dock folder format (current DeepH tools) and the in-memory record shared by all formats.

Layout (checked against github.com/kYangLi/DeepH-dock: docs/key_concepts.md, compute/pyscf/pyscf_hooker.py,
convert/deeph/translate_old_dataset_to_new.py)::

    <dir>/POSCAR              structure, VASP 5 format, Cartesian, Angstrom; atom order = atom indices
    <dir>/info.json           atoms_quantity, orbits_quantity, orthogonal_basis, spinful, fermi_energy_eV,
                              elements_orbital_map {element: [l of each shell, in orbital order]},
                              occupation (electrons per cell: DeepH-dock's Fermi search needs it),
                              basis (the PySCF basis name, as DeepH-dock's PySCF hook writes it),
                              and (ours) "elct": {pbc, basis, xc, charge, pseudopotential, n_electrons, smearing, ...}
    <dir>/overlap.h5, hamiltonian.h5, density_matrix.h5
        atom_pairs       (N, 5) int   [R1, R2, R3, i, j], atoms 0-based; the block couples atom i of
                                      the home cell with atom j of cell R; on-site blocks (0,0,0,i,i) included
        chunk_boundaries (N + 1,) int start of each block in ``entries`` (0, ..., len(entries))
        chunk_shapes     (N, 2) int   (n_orb(i), n_orb(j)) of each block
        entries          (M,) float   row-major flattened blocks, concatenated
Orbital order: Wikipedia real spherical harmonics (= ``internal``); H in eV, S and D dimensionless.
Spinful folders (``"spinful": true``: spin-orbit, non-collinear or collinear spin; deepx-dock's reader
``compute/eigen/hamiltonian.py``): hamiltonian.h5 and density_matrix.h5 hold [2 n_i, 2 n_j] blocks, spin outer
([[uu, ud], [du, dd]]), complex128 entries (real float64 for collinear spin, whose ud and du are zero); overlap.h5
stays [n_i, n_j] real. Layout and the collinear convention: ``elct_jax.data.spinful``.
A molecule is stored in a pseudo-cell (bounding box + MOLECULE_VACUUM_ANG, as DeepH-dock's PySCF hook
does) with only R = 0 blocks; ``elct.pbc`` records that it is not periodic. DeepH's formats have no molecule
flag, so a folder from another tool (no ``elct`` entry) is read as a molecule when it looks like one in those
terms (:func:`infer_pbc`), and as a 3D-periodic crystal otherwise.

Units: energies are written in eV with the project's CODATA constant (``ai2dft.units.HARTREE_TO_EV``,
27.211386245981 for CODATA 2022); DeepH-dock uses 27.2113845 (6.4e-8 relative less), so a Hamiltonian written here and
converted to Hartree by DeepH-dock (or the reverse) differs by that factor, 1.7e-6 eV on a 27 eV entry;
reading back what this module writes is exact to round-off (1 ulp).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from ai2dft.units import HARTREE_TO_EV
from elct_jax.data.spinful import spin_factor
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.hamiltonian.blocks import BlockKey
from elct_jax.geometry.structure import Structure

MATRIX_NAMES = ("overlap", "hamiltonian", "density_matrix", "hamiltonian_0")
ENERGY_MATRICES = ("hamiltonian", "hamiltonian_0")  # stored in eV on disk, Hartree in memory
# hamiltonian_0: the zeroth-step Hamiltonian H0 = F[D0] of the initial (superposition-of-atoms) density,
# the project's own addition (DeepH tools ignore the extra file); see elct_jax.data.baseline
MOLECULE_VACUUM_ANG = 30.0
MOLECULE_MIN_VACUUM_ANG = 10.0  # a folder without ``elct.pbc``, only R = 0 blocks and this much vacuum is a molecule
_DFT_KEYS = ("xc", "charge", "pseudopotential", "n_electrons", "smearing")


class DeepHFormatError(ValueError):
    """A DeepH file or folder is missing, corrupt or inconsistent; the message names the file."""


@dataclass(frozen=True, eq=False)
class DeepHRecord:
    """One structure with its real-space matrices.

    structure             atoms, Angstrom
    basis                 shells per element (DeepH ``elements_orbital_map``); ``basis.name`` is the PySCF
                          basis name when known
    matrices              {"overlap" | "hamiltonian" | "density_matrix": {(R1, R2, R3, i, j): block [n_i, n_j]}},
                          internal orbital order, atoms 0-based, atomic units (Hartree)
    fermi_energy_hartree  chemical potential, or None when unknown
    dft                   JSON-serializable level of theory needed to rebuild the DFT system: xc, charge,
                          pseudopotential, n_electrons, smearing ([method, width_hartree] or None), ...
    spinful               the spin matrices (``spinful.SPIN_MATRICES``) have spin-outer [2 n_i, 2 n_j] blocks,
                          complex or real (``elct_jax.data.spinful``); the overlap stays [n_i, n_j]
    """

    structure: Structure
    basis: OrbitalBasis
    matrices: dict[str, dict[BlockKey, np.ndarray]]
    fermi_energy_hartree: float | None = None
    dft: dict = field(default_factory=dict)
    spinful: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.matrices) - set(MATRIX_NAMES))
        if unknown:
            raise ValueError(f"unknown matrix name(s) {unknown}; expected a subset of {MATRIX_NAMES}")
        n_orb = atom_orbital_counts(self.basis, self.structure.symbols)
        for name, blocks in self.matrices.items():
            spin = spin_factor(name, self.spinful)
            for key, block in blocks.items():
                check_block(key, np.shape(block), n_orb, where=f"matrix {name!r}", spin=spin)
                if spin == 1 and np.iscomplexobj(block):
                    raise ValueError(f"matrix {name!r}: block {key} is complex; only the spin matrices of a "
                                     "spinful record may be")
        object.__setattr__(self, "dft", dict(self.dft))

    def pair_keys(self) -> list[BlockKey]:
        """The common sorted (R1, R2, R3, i, j) keys of all matrices; raises if they differ."""
        key_sets = {name: set(blocks) for name, blocks in self.matrices.items()}
        first = next(iter(key_sets.values()), set())
        for name, keys in key_sets.items():
            if keys != first:
                raise ValueError(f"matrix {name!r} has {len(keys)} blocks, others {len(first)}: the DeepH formats "
                                 "need the same atom pairs in every matrix")
        return sorted(first)


def atom_orbital_counts(basis: OrbitalBasis, symbols) -> list[int]:
    """n_orb per atom; raises naming the element when the basis lacks it."""
    try:
        return [basis.n_orbitals(s) for s in symbols]
    except KeyError as err:
        raise ValueError(f"unknown element: {err.args[0]}") from None


def check_block(key, shape, n_orb: list[int], where: str, spin: int = 1) -> None:
    """Raise if ``key`` is not (R1, R2, R3, i, j) with valid atoms or ``shape`` is not spin * (n_orb[i], n_orb[j])
    (``spin`` 2 for the spin matrices of spinful data)."""
    if len(key) != 5:
        raise ValueError(f"{where}: block key {key} is not (R1, R2, R3, i, j)")
    i, j = int(key[3]), int(key[4])
    if not (0 <= i < len(n_orb) and 0 <= j < len(n_orb)):
        raise ValueError(f"{where}: block {tuple(key)} refers to an atom outside 0..{len(n_orb) - 1}")
    if tuple(shape) != (spin * n_orb[i], spin * n_orb[j]):
        spinful = f"spinful data need 2 x ({n_orb[i]}, {n_orb[j]}) = " if spin == 2 else ""
        raise ValueError(f"{where}: block {tuple(int(k) for k in key)} has shape {tuple(int(n) for n in shape)}, "
                         f"but the orbital map gives {spinful}"
                         f"({spin * n_orb[i]}, {spin * n_orb[j]}): orbital counts inconsistent with the element map"
                         + (" (spin-up and spin-down orbitals of each atom)" if spin == 2 else ""))


def pseudo_lattice(structure: Structure) -> np.ndarray:
    """[3, 3] lattice for the file: the structure's, or a vacuum box around a molecule."""
    if structure.lattice_ang is not None:
        return structure.lattice_ang
    extent = np.ptp(structure.positions_ang, axis=0) if structure.n_atoms else np.zeros(3)
    return np.diag(extent + MOLECULE_VACUUM_ANG)


def infer_pbc(lattice: np.ndarray, positions: np.ndarray, keys) -> tuple[bool, bool, bool]:
    """pbc of a folder that does not record it (no ``elct`` entry: written by another DeepH tool).

    DeepH formats store a molecule in a box with only R = 0 blocks (DeepH-dock's PySCF hook leaves 30 A of
    vacuum): when every block key in ``keys`` has R = 0 and the atoms leave at least
    ``MOLECULE_MIN_VACUUM_ANG`` of vacuum between periodic images along each lattice direction, the folder
    is a molecule (all False); otherwise a 3D-periodic crystal (all True). lattice: [3, 3] rows a_i (A);
    positions: [n, 3] Cartesian (A).
    """
    if any(tuple(k[:3]) != (0, 0, 0) for k in keys):
        return (True, True, True)
    reciprocal = np.linalg.inv(lattice)  # columns b_j with a_i . b_j = delta_ij
    frac = np.asarray(positions) @ reciprocal
    spacing = 1.0 / np.linalg.norm(reciprocal, axis=0)  # distance between lattice planes (A)
    vacuum = spacing * (1.0 - np.ptp(frac, axis=0)) if len(frac) else spacing
    return (False, False, False) if np.all(vacuum >= MOLECULE_MIN_VACUUM_ANG) else (True, True, True)


def elct_metadata(record: DeepHRecord) -> dict:
    """The ``elct`` entry of info.json."""
    return {"pbc": list(record.structure.pbc), "basis": record.basis.name, **record.dft}


def split_elct_metadata(meta: dict, path: Path) -> tuple[tuple[bool, bool, bool] | None, str | None, dict]:
    """(pbc, basis name, dft dict) from an ``elct`` entry; pbc and basis are None when it does not give them
    (a folder written by another tool: see :func:`infer_pbc`)."""
    if not isinstance(meta, dict):
        raise DeepHFormatError(f"{path}: 'elct' must be a JSON object")
    meta = dict(meta)
    pbc = meta.pop("pbc", None)
    if pbc is None:
        return None, meta.pop("basis", None), meta
    if not (isinstance(pbc, list) and len(pbc) == 3 and all(isinstance(p, bool) for p in pbc)):
        raise DeepHFormatError(f"{path}: elct.pbc must be three booleans, got {pbc!r}")
    return tuple(pbc), meta.pop("basis", None), meta


def write_deeph_dock(directory: str | Path, record: DeepHRecord) -> Path:
    """Write ``record`` as a DeepH-dock folder (created if needed); returns the folder."""
    keys = record.pair_keys()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbols = record.structure.symbols
    n_orb = atom_orbital_counts(record.basis, symbols)
    _warn_outside_cell(record.structure, directory)
    _write_poscar(directory / "POSCAR", symbols, record.structure.positions_ang, pseudo_lattice(record.structure))
    fermi = record.fermi_energy_hartree
    info = {
        "atoms_quantity": len(symbols),
        "orbits_quantity": int(sum(n_orb)),
        "orthogonal_basis": False,
        "spinful": record.spinful,
        "fermi_energy_eV": None if fermi is None else float(fermi) * HARTREE_TO_EV,
        "elements_orbital_map": {el: list(record.basis.shells[el]) for el in sorted(set(symbols))},
        **({"occupation": int(record.dft["n_electrons"])} if "n_electrons" in record.dft else {}),
        **({"basis": record.basis.name} if record.basis.name not in ("", "unknown") else {}),
        "elct": elct_metadata(record),
    }
    try:
        text = json.dumps(info, indent=2)
    except TypeError as err:
        raise ValueError(f"record.dft is not JSON-serializable: {err}") from err
    (directory / "info.json").write_text(text)
    for name, blocks in record.matrices.items():
        write_matrix_file(directory, name, keys, blocks)
    return directory


def _warn_outside_cell(structure: Structure, directory: Path) -> None:
    """Warn when atoms of a crystal lie outside the home cell (fractional coordinates outside [0, 1) along a
    periodic direction): they are written as given, with block R relative to those positions."""
    if not structure.is_periodic:
        return
    frac = structure.positions_ang @ np.linalg.inv(structure.lattice_ang)
    outside = np.flatnonzero(np.any(((frac < -1e-9) | (frac >= 1.0)) & np.array(structure.pbc), axis=1))
    if len(outside):
        warnings.warn(f"{directory}: {len(outside)} atom(s) (first: atom {outside[0]}) lie outside the home cell; "
                      "written as given, with the R of their blocks relative to these positions (tools that wrap "
                      "atoms into the cell would need R relabelled; Structure.wrapped() before labelling avoids it)",
                      stacklevel=3)


def write_matrix_file(directory: Path, name: str, keys: list[BlockKey], blocks: Mapping) -> None:
    """``<directory>/<name>.h5`` of matrix ``name`` (blocks on ``keys``, Hartree for the energy matrices),
    written to a temporary file and renamed into place (an interrupted write leaves no partial file)."""
    path = Path(directory) / f"{name}.h5"
    tmp = path.with_name(f".tmp-{path.name}")
    _write_block_file(tmp, keys, blocks, HARTREE_TO_EV if name in ENERGY_MATRICES else 1.0)
    tmp.replace(path)


def _write_poscar(path: Path, symbols, positions: np.ndarray, lattice: np.ndarray) -> None:
    """VASP 5 POSCAR, Cartesian, full float precision; consecutive equal symbols form one group."""
    groups: list[list] = []
    for s in symbols:
        if groups and groups[-1][0] == s:
            groups[-1][1] += 1
        else:
            groups.append([s, 1])
    lines = ["POSCAR written by elct-jax", "1.0"]
    lines += ["  " + "  ".join(repr(float(x)) for x in row) for row in lattice]
    lines += [" ".join(g[0] for g in groups), " ".join(str(g[1]) for g in groups), "Cartesian"]
    lines += ["  " + "  ".join(repr(float(x)) for x in row) for row in positions]
    path.write_text("\n".join(lines) + "\n")


def _write_block_file(path: Path, keys: list[BlockKey], blocks: Mapping, scale: float) -> None:
    shapes = np.array([np.shape(blocks[k]) for k in keys], dtype=np.int64).reshape(-1, 2)
    boundaries = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])]).astype(np.int64)
    dtype = np.result_type(np.float64, *(blocks[k] for k in keys))  # complex128 for spin-orbit blocks
    entries = np.concatenate([np.asarray(blocks[k], dtype=dtype).reshape(-1) for k in keys]) if keys else np.zeros(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("atom_pairs", data=np.array(keys, dtype=np.int64).reshape(-1, 5))
        f.create_dataset("chunk_boundaries", data=boundaries)
        f.create_dataset("chunk_shapes", data=shapes)
        f.create_dataset("entries", data=entries * scale)


def read_deeph_dock(directory: str | Path) -> DeepHRecord:
    """Read a DeepH-dock folder written by this module or by DeepH-dock (spinless or spinful data)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DeepHFormatError(f"{directory}: not a directory")
    info_path = directory / "info.json"
    info = read_json(info_path)
    for name in ("atoms_quantity", "orbits_quantity", "elements_orbital_map"):
        if name not in info:
            raise DeepHFormatError(f"{info_path}: missing field {name!r}")
    spinful = info.get("spinful", False)
    if not isinstance(spinful, bool):
        raise DeepHFormatError(f"{info_path}: 'spinful' must be true or false, got {spinful!r}")
    pbc, basis_name, dft = split_elct_metadata(info.get("elct", {}), info_path)
    basis_name = basis_name or (info["basis"] if isinstance(info.get("basis"), str) else None)
    if "n_electrons" not in dft and isinstance(info.get("occupation"), (int, float)):
        dft["n_electrons"] = int(info["occupation"])
    basis = parse_orbital_map(info["elements_orbital_map"], basis_name or "unknown", info_path)
    symbols, positions, lattice = _read_poscar(directory / "POSCAR")
    if info["atoms_quantity"] != len(symbols):
        raise DeepHFormatError(f"{info_path}: atoms_quantity={info['atoms_quantity']} but POSCAR has {len(symbols)} atoms")
    n_orb = orbital_counts_or_error(basis, symbols, info_path)
    if info["orbits_quantity"] != sum(n_orb):
        raise DeepHFormatError(f"{info_path}: orbits_quantity={info['orbits_quantity']} but elements_orbital_map "
                               f"gives {sum(n_orb)} orbitals: orbital counts inconsistent with the element map")
    matrices = {}
    for name in MATRIX_NAMES:
        path = directory / f"{name}.h5"
        if path.exists():
            scale = HARTREE_TO_EV if name in ENERGY_MATRICES else 1.0
            matrices[name] = _read_block_file(path, n_orb, scale, spin_factor(name, spinful))
    if pbc is None:
        pbc = infer_pbc(lattice, positions, [k for blocks in matrices.values() for k in blocks])
    structure = make_structure(symbols, positions, lattice, pbc, directory / "POSCAR")
    fermi = info.get("fermi_energy_eV")
    return DeepHRecord(structure, basis, matrices, None if fermi is None else float(fermi) / HARTREE_TO_EV, dft,
                       spinful)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise DeepHFormatError(f"{path}: file is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DeepHFormatError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DeepHFormatError(f"{path}: expected a JSON object")
    return data


def parse_orbital_map(orbital_map, name: str, path: Path) -> OrbitalBasis:
    """OrbitalBasis from {element: [l, ...]}; raises naming ``path`` on malformed content."""
    if not isinstance(orbital_map, dict) or not orbital_map:
        raise DeepHFormatError(f"{path}: elements_orbital_map must be a non-empty object")
    shells = {}
    for el, ls in orbital_map.items():
        if not (isinstance(ls, list) and ls and all(isinstance(l, int) and l >= 0 for l in ls)):
            raise DeepHFormatError(f"{path}: orbital list of {el!r} must be non-negative integers, got {ls!r}")
        shells[str(el)] = tuple(ls)
    return OrbitalBasis(name, shells)


def orbital_counts_or_error(basis: OrbitalBasis, symbols, path: Path) -> list[int]:
    missing = sorted(set(symbols) - set(basis.shells))
    if missing:
        raise DeepHFormatError(f"{path}: unknown element(s) {missing}: not in the element orbital map {sorted(basis.shells)}")
    return atom_orbital_counts(basis, symbols)


def make_structure(symbols, positions, lattice, pbc, path: Path) -> Structure:
    try:
        return Structure(tuple(symbols), positions, lattice if any(pbc) else None, pbc)
    except ValueError as err:
        raise DeepHFormatError(f"{path}: {err}") from err


def _read_poscar(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    import ase.io

    if not path.is_file():
        raise DeepHFormatError(f"{path}: file is missing")
    try:
        atoms = ase.io.read(path, format="vasp")
    except Exception as err:  # ase raises assorted types on malformed POSCARs
        raise DeepHFormatError(f"{path}: not a readable POSCAR ({err})") from err
    return atoms.get_chemical_symbols(), np.array(atoms.positions), np.array(atoms.cell)


def _read_block_file(path: Path, n_orb: list[int], scale: float, spin: int = 1) -> dict[BlockKey, np.ndarray]:
    """Blocks of one matrix file, divided by ``scale``; ``spin`` 2 for the spin matrices of spinful data."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes", "entries") if k not in f]
            if missing:
                raise DeepHFormatError(f"{path}: missing dataset(s) {missing}")
            pairs, bounds = f["atom_pairs"][()], f["chunk_boundaries"][()]
            shapes, entries = f["chunk_shapes"][()], f["entries"][()]
    except (OSError, KeyError, ValueError) as err:
        if isinstance(err, DeepHFormatError):
            raise
        raise DeepHFormatError(f"{path}: corrupt or unreadable HDF5 file ({err})") from err
    n = len(pairs)
    if pairs.shape != (n, 5) or bounds.shape != (n + 1,) or shapes.shape != (n, 2) or entries.ndim != 1:
        raise DeepHFormatError(f"{path}: inconsistent dataset shapes atom_pairs {pairs.shape}, chunk_boundaries "
                               f"{bounds.shape}, chunk_shapes {shapes.shape}, entries {entries.shape}")
    if np.iscomplexobj(entries) and spin == 1:
        raise DeepHFormatError(f"{path}: complex entries, but info.json does not mark the data spinful "
                               "(or this is the overlap, which is real)")
    if bounds[0] != 0 or np.any(np.diff(bounds) != shapes[:, 0] * shapes[:, 1]) or bounds[-1] != len(entries):
        raise DeepHFormatError(f"{path}: chunk_boundaries do not match chunk_shapes and {len(entries)} entries")
    bad = ~np.isfinite(entries)
    if bad.any():
        first = pairs[np.searchsorted(bounds, np.argmax(bad), side="right") - 1]
        raise DeepHFormatError(f"{path}: {int(bad.sum())} non-finite (NaN/Inf) entries, the first in block "
                               f"{tuple(int(v) for v in first)}")
    blocks = {}
    for pair, start, shape in zip(pairs.tolist(), bounds[:-1], shapes):
        key = tuple(int(v) for v in pair)
        try:
            check_block(key, shape, n_orb, where=str(path), spin=spin)
        except ValueError as err:
            raise DeepHFormatError(str(err)) from None
        if key in blocks:
            raise DeepHFormatError(f"{path}: atom pair {key} appears twice")
        blocks[key] = entries[start : start + shape[0] * shape[1]].reshape(shape) / scale
    return blocks

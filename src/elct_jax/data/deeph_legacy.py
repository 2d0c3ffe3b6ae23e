"""Legacy DeepH-pack processed folders (DeepH, DeepH-E3), read and write.

Checked against github.com/mzjb/DeepH-pack (deeph/preprocess/openmx_get_data.jl, deeph/graph.py,
deeph/data.py) and DeepH-dock's converter (convert/deeph/translate_old_dataset_to_new.py)::

    lat.dat             3 x 3, COLUMNS are the lattice vectors, Angstrom
    rlat.dat            3 x 3, columns are the reciprocal vectors 2 pi inv(lat)^T, 1/Angstrom (written only)
    site_positions.dat  3 x N Cartesian positions (one column per atom), Angstrom
    element.dat         N atomic numbers, one per line
    orbital_types.dat   one line per atom: the l of each shell
    R_list.dat          the distinct lattice shifts R, one "R1 R2 R3" per line (written only)
    info.json           {"nsites", "isorthogonal", "isspinful", "fermi_level" (eV)} (+ our "elct" entry)
    overlaps.h5, hamiltonians.h5, density_matrices.h5 (DeepH-dock's converter's name; DeepH-pack's
        openmx_get_data.jl writes density_matrixs.h5, which is read too)
        one dataset per block, named "[R1, R2, R3, i, j]" with 1-based atoms (Julia's ``string([...])``,
        parsed with json.loads), value the n_i x n_j block in OpenMX orbital order; H in eV.
        With "isspinful": true (DeepH-pack's OpenMX converter, SpinP_switch = 3) the Hamiltonian and density
        blocks are complex [2 n_i, 2 n_j], spin outer ([[uu, ud], [du, dd]]), each quadrant in OpenMX order;
        overlaps stay n_i x n_j real (``elct_jax.data.spinful``). DeepH-pack has no collinear-spin format.
A folder without our ``elct`` entry is read as a molecule or a crystal by ``deeph_dock.infer_pbc``.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from ai2dft.units import HARTREE_TO_EV
from elct_jax.data.deeph_dock import (
    ENERGY_MATRICES,
    DeepHFormatError,
    DeepHRecord,
    check_block,
    elct_metadata,
    infer_pbc,
    make_structure,
    orbital_counts_or_error,
    pseudo_lattice,
    read_json,
    split_elct_metadata,
)
from elct_jax.data.spinful import map_quadrants, spin_factor
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.hamiltonian.blocks import reorder_blocks

LEGACY_FILES = {"overlap": "overlaps.h5", "hamiltonian": "hamiltonians.h5", "density_matrix": "density_matrices.h5",
                "hamiltonian_0": "hamiltonians_0.h5"}
_LEGACY_ALIASES = {"density_matrix": ("density_matrices.h5", "density_matrixs.h5")}


def write_deeph_legacy(directory: str | Path, record: DeepHRecord) -> Path:
    """Write ``record`` as a legacy DeepH processed folder (created if needed); returns the folder."""
    keys = record.pair_keys()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    structure, basis = record.structure, record.basis
    symbols = structure.symbols
    lat = pseudo_lattice(structure).T  # columns are lattice vectors
    np.savetxt(directory / "lat.dat", lat, fmt="%.17g")
    np.savetxt(directory / "rlat.dat", 2 * np.pi * np.linalg.inv(lat).T, fmt="%.17g")
    np.savetxt(directory / "site_positions.dat", structure.positions_ang.T.reshape(3, -1), fmt="%.17g")
    np.savetxt(directory / "element.dat", [atomic_numbers[s] for s in symbols], fmt="%d")
    (directory / "orbital_types.dat").write_text("".join("  ".join(map(str, basis.shells[s])) + "\n" for s in symbols))
    shifts = sorted({k[:3] for k in keys})
    np.savetxt(directory / "R_list.dat", np.array(shifts, dtype=int).reshape(-1, 3), fmt="%d", delimiter="\t")
    fermi = record.fermi_energy_hartree
    info = {
        "nsites": len(symbols),
        "isorthogonal": False,
        "isspinful": record.spinful,
        "fermi_level": None if fermi is None else float(fermi) * HARTREE_TO_EV,
        "elct": elct_metadata(record),
    }
    (directory / "info.json").write_text(json.dumps(info, indent=2))
    for name, blocks in record.matrices.items():
        scale = HARTREE_TO_EV if name in ENERGY_MATRICES else 1.0
        openmx = _reorder(blocks, basis, symbols, spin_factor(name, record.spinful), to_internal=False)
        with h5py.File(directory / LEGACY_FILES[name], "w") as f:
            for R1, R2, R3, i, j in keys:
                f.create_dataset(f"[{R1}, {R2}, {R3}, {i + 1}, {j + 1}]", data=openmx[(R1, R2, R3, i, j)] * scale)
    return directory


def read_deeph_legacy(directory: str | Path, basis_name: str | None = None) -> DeepHRecord:
    """Read a legacy DeepH folder (spinless or spinful). Blocks come back in internal order, Hartree.

    ``basis_name`` names the basis when info.json has no ``elct`` entry (OpenMX data: e.g. "openmx").
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DeepHFormatError(f"{directory}: not a directory")
    info_path = directory / "info.json"
    info = read_json(info_path)
    spinful = info.get("isspinful", False)
    if not isinstance(spinful, bool):
        raise DeepHFormatError(f"{info_path}: 'isspinful' must be true or false, got {spinful!r}")
    pbc, stored_name, dft = split_elct_metadata(info.get("elct", {}), info_path)
    lattice = _read_matrix(directory / "lat.dat", (3, 3)).T
    positions = _read_matrix(directory / "site_positions.dat", None).T
    symbols = _read_elements(directory / "element.dat", len(positions))
    basis = _read_orbital_types(directory / "orbital_types.dat", symbols, basis_name or stored_name or "unknown")
    n_orb = orbital_counts_or_error(basis, symbols, directory / "orbital_types.dat")
    matrices = {}
    for name, candidates in {**{k: (v,) for k, v in LEGACY_FILES.items()}, **_LEGACY_ALIASES}.items():
        path = next((directory / c for c in candidates if (directory / c).exists()), None)
        if path is not None:
            scale = HARTREE_TO_EV if name in ENERGY_MATRICES else 1.0
            spin = spin_factor(name, spinful)
            matrices[name] = _reorder(_read_legacy_h5(path, n_orb, scale, spin), basis, symbols, spin, to_internal=True)
    if pbc is None:
        pbc = infer_pbc(lattice, positions, [k for blocks in matrices.values() for k in blocks])
    structure = make_structure(symbols, positions, lattice, pbc, directory / "site_positions.dat")
    fermi = info.get("fermi_level")
    return DeepHRecord(structure, basis, matrices, None if fermi is None else float(fermi) / HARTREE_TO_EV, dft,
                       spinful)


def _reorder(blocks: dict, basis: OrbitalBasis, symbols, spin: int, to_internal: bool) -> dict:
    """OpenMX <-> internal orbital order of spinless blocks, or of each spin quadrant (``spin`` 2)."""
    def reorder(b):
        return reorder_blocks(b, basis, symbols, "openmx", to_internal=to_internal)

    return map_quadrants(blocks, reorder) if spin == 2 else reorder(blocks)


def _read_text(path: Path, **kwargs) -> np.ndarray:
    if not path.is_file():
        raise DeepHFormatError(f"{path}: file is missing")
    try:
        return np.loadtxt(path, **kwargs)
    except ValueError as err:
        raise DeepHFormatError(f"{path}: not a numeric table ({err})") from err


def _read_matrix(path: Path, shape) -> np.ndarray:
    """3 x 3 (``shape``) or 3 x N (``shape`` None) table."""
    data = _read_text(path, ndmin=2)
    if data.shape[0] != 3 or (shape is not None and data.shape != shape):
        raise DeepHFormatError(f"{path}: expected shape {shape or '(3, N)'}, got {data.shape}")
    return data


def _read_elements(path: Path, n_atoms: int) -> list[str]:
    z = _read_text(path, ndmin=1).reshape(-1)
    if len(z) != n_atoms:
        raise DeepHFormatError(f"{path}: {len(z)} elements but site_positions.dat has {n_atoms} atoms")
    if np.any(z != np.round(z)) or np.any(z < 1) or np.any(z >= len(chemical_symbols)):
        raise DeepHFormatError(f"{path}: unknown element: atomic numbers must be integers 1..{len(chemical_symbols) - 1}")
    return [chemical_symbols[int(v)] for v in z]


def _read_orbital_types(path: Path, symbols: list[str], name: str) -> OrbitalBasis:
    if not path.is_file():
        raise DeepHFormatError(f"{path}: file is missing")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) != len(symbols):
        raise DeepHFormatError(f"{path}: {len(lines)} lines but there are {len(symbols)} atoms")
    shells: dict[str, tuple[int, ...]] = {}
    for atom, (symbol, words) in enumerate(zip(symbols, lines)):
        try:
            ls = tuple(int(w) for w in words)
        except ValueError:
            raise DeepHFormatError(f"{path}: line {atom + 1} is not a list of integers: {' '.join(words)!r}") from None
        if any(l < 0 for l in ls):
            raise DeepHFormatError(f"{path}: negative angular momentum on line {atom + 1}")
        if shells.setdefault(symbol, ls) != ls:
            raise DeepHFormatError(f"{path}: atoms of element {symbol} have different orbital types "
                                   f"{shells[symbol]} and {ls} (line {atom + 1})")
    return OrbitalBasis(name, shells)


def _parse_key(name: str, path: Path) -> tuple[int, int, int, int, int]:
    try:
        key = json.loads(name)
        if not (isinstance(key, list) and len(key) == 5 and all(isinstance(v, int) for v in key)):
            raise ValueError
    except ValueError:
        raise DeepHFormatError(f"{path}: dataset name {name!r} is not '[R1, R2, R3, i, j]'") from None
    return key[0], key[1], key[2], key[3] - 1, key[4] - 1


def _read_legacy_h5(path: Path, n_orb: list[int], scale: float, spin: int) -> dict:
    blocks = {}
    try:
        with h5py.File(path, "r") as f:
            for name, dataset in f.items():
                key = _parse_key(name, path)
                value = dataset[()]
                if np.iscomplexobj(value) and spin == 1:
                    raise DeepHFormatError(f"{path}: complex block {name}, but info.json does not mark the data "
                                           "spinful (or this is the overlap, which is real)")
                if not np.all(np.isfinite(value)):
                    raise DeepHFormatError(f"{path}: block {name} has {int(np.sum(~np.isfinite(value)))} non-finite "
                                           "(NaN/Inf) entries")
                try:
                    check_block(key, value.shape, n_orb, where=f"{path} dataset {name}", spin=spin)
                except ValueError as err:
                    raise DeepHFormatError(str(err)) from None
                blocks[key] = value / scale
    except (OSError, KeyError) as err:
        raise DeepHFormatError(f"{path}: corrupt or unreadable HDF5 file ({err})") from err
    return blocks

"""A dataset directory on disk: its DeepH record folders (DeepH-dock or legacy), reading them, and split files.

    folders = dataset_folders("data/dft")                     # sorted; a folder of DeepH files without a structure is refused
    records = read_dataset("data/dft", require=("hamiltonian", "overlap"))
    splits  = read_split_file("split.json", "data/dft", folders)   # {"train"|"val"|"test": indices into folders}
    test    = split_folders("data/dft", "test")                   # one part of <root>/split.json, or a list file
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from elct_jax.data.deeph_dock import MATRIX_NAMES, DeepHFormatError, DeepHRecord, read_deeph_dock, read_json
from elct_jax.data.deeph_legacy import LEGACY_FILES, read_deeph_legacy

STRUCTURE_FILES = ("POSCAR", "lat.dat")  # DeepH-dock, legacy
DATA_FILES = ("info.json", *(f"{name}.h5" for name in MATRIX_NAMES), *LEGACY_FILES.values())


def dataset_folders(root: str | Path) -> list[Path]:
    """Every DeepH folder below ``root`` (one with POSCAR is DeepH-dock, one with lat.dat legacy), sorted by path.
    Raises naming the folder when one holds DeepH files (info.json, a matrix .h5) but no structure file."""
    root = Path(root)
    if not root.is_dir():
        raise DeepHFormatError(f"{root}: dataset directory does not exist")
    found: dict[Path, set[str]] = {}
    for p in root.rglob("*"):
        if p.name in STRUCTURE_FILES or p.name in DATA_FILES:
            found.setdefault(p.parent, set()).add(p.name)
    orphans = sorted(f for f, names in found.items() if not names & set(STRUCTURE_FILES))
    if orphans:
        raise DeepHFormatError(f"{orphans[0]}: has {sorted(found[orphans[0]])} but no POSCAR (DeepH-dock) or lat.dat "
                               f"(legacy DeepH), so its structure is unknown; {len(orphans)} such folder(s) in {root}")
    folders = sorted(found)
    if not folders:
        raise DeepHFormatError(f"{root}: no DeepH folders (with POSCAR or lat.dat) found")
    return folders


def read_record(folder: Path, require: Sequence[str] = ()) -> DeepHRecord:
    """One DeepH-dock or legacy folder; raises naming the folder and file when a matrix in ``require``
    (names of ``MATRIX_NAMES``, e.g. ("hamiltonian", "overlap") to evaluate against labels) is absent.
    Without ``require`` any subset of the matrix files is read, none for unlabelled structures."""
    dock = (folder / "POSCAR").exists()
    record = read_deeph_dock(folder) if dock else read_deeph_legacy(folder)
    missing = [f"{name}.h5" if dock else LEGACY_FILES[name] for name in require if name not in record.matrices]
    if missing:
        raise DeepHFormatError(f"{folder}: file(s) {missing} missing; needed: the {', '.join(require)} matrices")
    return record


def read_dataset(root: str | Path, require: Sequence[str] = ()) -> list[DeepHRecord]:
    """Every record below ``root``, sorted by path (see :func:`dataset_folders`), each with the matrices
    in ``require`` (see :func:`read_record`)."""
    return [read_record(f, require) for f in dataset_folders(root)]


SPLIT_NAMES = ("train", "val", "test")


def read_split_file(path: str | Path, root: str | Path, folders: Sequence[Path]) -> dict[str, np.ndarray]:
    """Split from a JSON file ``{"train": [...], "val": [...], "test": [...]}`` of folder names relative
    to the dataset ``root`` ("validation" is accepted for "val"); returns index arrays into ``folders``.
    Raises naming every listed folder that is not in the dataset, or one listed twice."""
    path = Path(path)
    doc = read_json(path)
    if "validation" in doc:
        doc["val"] = doc.pop("validation")
    unknown = sorted(set(doc) - set(SPLIT_NAMES))
    if unknown or "train" not in doc:
        raise ValueError(f"{path}: needs a 'train' list and optionally 'val' and 'test'; unknown keys {unknown}")
    index = {f.relative_to(Path(root)).as_posix(): i for i, f in enumerate(folders)}
    names = [str(n) for part in SPLIT_NAMES for n in doc.get(part, [])]
    missing = sorted(n for n in set(names) if n not in index)
    if missing:
        raise ValueError(f"{path}: {len(missing)} structure(s) named in the split are not in {root}: "
                         f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{path}: structure(s) listed more than once: {repeated[:10]}")
    return {part: np.array([index[str(n)] for n in doc.get(part, [])], dtype=int) for part in SPLIT_NAMES}


def split_folders(root: str | Path, split: str | None = None) -> list[Path]:
    """The dataset's folders (``split`` None), one part of its split ("train" | "val" | "test": from
    ``<root>/split.json``, as ``elct data generate`` writes it), or those named in a text file ``split``
    (folder names relative to ``root``, one per line). Raises naming a missing split file or folder."""
    folders = dataset_folders(root)
    if split is None:
        return folders
    if split in SPLIT_NAMES:
        index = read_split_file(Path(root) / "split.json", root, folders)[split]
        return [folders[i] for i in index]
    path = Path(split)
    if not path.is_file():
        raise DeepHFormatError(f"{split}: neither a split name {SPLIT_NAMES} nor a file of folder names")
    by_name = {f.relative_to(Path(root)).as_posix(): f for f in folders}
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DeepHFormatError(f"{path}: {len(missing)} folder(s) not in {root}: {missing[:10]}")
    return [by_name[n] for n in names]

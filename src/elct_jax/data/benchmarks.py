"""Named benchmark datasets: fixed base structures, sampling recipes, seeds and splits.

Each dataset is regenerated from nothing by one command (resumable, data outside git):

    elct data benchmark water-md17 --out ~/.cache/elct/water-md17

``water-md17``  the MD17 water protocol (PBE/def2-SVP; 500 train / 500 validation / rest test) on
                structures sampled from the classical harmonic (normal-mode) ensemble at 500 K, MD17's
                temperature. Ab initio MD was not used: decorrelated frames need ~10 fs apart, i.e.
                ~20 gradient evaluations per kept frame (30,000 for the set), against one SCF per frame
                here. Grid level 5 (label noise ~2e-7 Ha, DESIGN.md section 3), density-fitted Coulomb.
``graphene-300k`` 4x4 monolayer graphene supercells (32 C) with random strain up to 1 % and Gaussian
                displacements of 0.05 A (the RMS thermal displacement of C in graphene near 300 K,
                zero-point included), LDA/gth-szv with GTH pseudopotentials, SCF on a 2x2x1 k-mesh.
                The layer is periodic in-plane only (10 A of vacuum, checked: overlap with the images
                across it <= 1e-6), and blocks with max |S_ij(R)| > 2e-6 are kept, so H(R) comes from a
                3x3x1 real-space k-mesh (aliasing of S checked by the generator against direct
                real-space overlaps: ~1e-8). The full tolerance (1e-10, a 5x5x3 mesh, 75 k-points)
                made the Fock build on that mesh 3/4 of a 28-minute label (PySCF's multigrid non-local
                pseudopotential, per k-point). Split 40 train / 5 validation / rest test.
``g2-mol``      the pretraining set: the 114 closed-shell molecules of ASE's G2 collection made of H, Li-F and
                Na-Cl (ionic and open-shell species dropped) less the held-out ones, 14 Gaussian-displaced
                structures each (0.04 A per coordinate, about the thermal spread of bonds at 300-500 K) at
                PBE/def2-SVP, grid level 3; folder per molecule, split per molecule 12 / 1 / 1.
``g2-b3lyp``    QH9's level of theory (B3LYP/def2-SVP; PySCF's B3LYP, VWN_RPA) on the 73 closed-shell G2 molecules made of
                QH9's elements H, C, N, O, F (2-14 atoms), 4 Gaussian-displaced structures each (0.04 A), grid
                level 3, density-fitted Coulomb and exchange; split per molecule 2 / 1 / 1 (test geometries of
                molecules seen at other geometries: QH9-dynamic's "geo" kind of split, not QH9-stable-id's
                unseen molecules).
``g2-heldout``  five ring and heteroatom molecules of G2 kept out of ``g2-mol`` (pyrrole, pyridine, furan,
                thiophene, acetamide), 24 structures each, same recipe, split per molecule 16 / 2 / 6: the
                zero-shot test of the pretrained model (its test part) and the fine-tuning family.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.data.generate import Recipe
from elct_jax.geometry.structure import Structure

SPLIT_FILE = "split.json"
WATER = Structure(("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
GRAPHENE_A_ANG, GRAPHENE_VACUUM_ANG = 2.46, 10.0


def graphene_cell() -> Structure:
    """The 2-atom monolayer graphene cell, a = 2.46 A, 10 A of vacuum (periodic in-plane only)."""
    a = GRAPHENE_A_ANG
    lattice = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, GRAPHENE_VACUUM_ANG]])
    positions = np.array([[0, 0, 0], [0, a / np.sqrt(3), 0]]) + [0, 0, GRAPHENE_VACUUM_ANG / 2]
    return Structure(("C", "C"), positions, lattice, (True, True, False))


HELD_OUT = ("C4H4NH", "C5H5N", "C4H4O", "C4H4S", "CH3CONH2")  # pyrrole, pyridine, furan, thiophene, acetamide
G2_ELEMENTS = frozenset("H Li Be B C N O F Na Mg Al Si P S Cl".split())


def g2_molecules(names=None) -> dict[str, Structure]:
    """Closed-shell G2 molecules (ASE) of the first three rows: even electron count, no initial moments."""
    from ase.collections import g2

    out = {}
    for name in g2.names if names is None else names:
        atoms = g2[name]
        closed = not np.any(atoms.get_initial_magnetic_moments()) and sum(atoms.get_atomic_numbers()) % 2 == 0
        if closed and set(atoms.get_chemical_symbols()) <= G2_ELEMENTS:
            out[name] = Structure.from_ase(atoms)
    return out


@dataclass(frozen=True)
class BenchmarkDataset:
    """A named dataset: ``n_structures`` samples of each base structure by ``recipe`` with ``seed``.

    bases  {folder: structure}; "" puts the structures directly in the output folder (one base)
    split  (n_train, n_validation) per base; the rest is the test set. Structures are assigned in
           index order (sampling is i.i.d., so index order is a random split).
    """

    name: str
    bases: dict
    recipe: Recipe
    n_structures: int
    seed: int
    split: tuple[int, int]

    def split_names(self, done: dict[str, list[int]]) -> dict[str, list[str]]:
        """Train / val / test folder names (relative to the dataset root) among the ``done`` (labelled,
        converged) indices of each base."""
        n_train, n_val = self.split
        out = {"train": [], "val": [], "test": []}
        for folder, indices in done.items():
            names = [f"{folder}/{i}" if folder else str(i) for i in sorted(indices)]
            for part, sel in (("train", names[:n_train]), ("val", names[n_train:n_train + n_val]),
                              ("test", names[n_train + n_val:])):
                out[part] += sel
        return out


_G2_RECIPE = Recipe(kind="random", sigma_ang=0.04, dft=DFTSettings(basis="def2-svp", xc="pbe", grid_level=3))
QH9_ELEMENTS = frozenset("H C N O F".split())
DATASETS = {
    "water-md17": BenchmarkDataset(
        "water-md17", {"": WATER},
        Recipe(kind="normal_modes", temperature_K=500.0, dft=DFTSettings(basis="def2-svp", xc="pbe", grid_level=5)),
        n_structures=1500, seed=17, split=(500, 500)),
    "graphene-300k": BenchmarkDataset(
        "graphene-300k", {"": graphene_cell()},
        Recipe(kind="crystal_random", sigma_ang=0.05, strain=0.01, supercell=(4, 4, 1), min_distance_ang=1.0,
               dft=DFTSettings(basis="gth-szv", xc="lda,vwn", kmesh=(2, 2, 1), ke_cutoff_Ha=60.0,
                               overlap_tol=2e-6)),
        n_structures=60, seed=300, split=(40, 5)),
    "g2-mol": BenchmarkDataset(
        "g2-mol", {k: v for k, v in g2_molecules().items() if k not in HELD_OUT}, _G2_RECIPE,
        n_structures=14, seed=2, split=(12, 1)),
    "g2-b3lyp": BenchmarkDataset(
        "g2-b3lyp", {k: v for k, v in g2_molecules().items() if set(v.symbols) <= QH9_ELEMENTS and len(v.symbols) > 1},
        Recipe(kind="random", sigma_ang=0.04, dft=DFTSettings(basis="def2-svp", xc="b3lyp", grid_level=3)),
        n_structures=4, seed=9, split=(2, 1)),
    "g2-heldout": BenchmarkDataset("g2-heldout", g2_molecules(HELD_OUT), _G2_RECIPE, n_structures=24, seed=3,
                                   split=(16, 2)),
}


def get_dataset(name: str) -> BenchmarkDataset:
    if name not in DATASETS:
        raise ValueError(f"unknown benchmark dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def generate_benchmark(name: str, out_dir: str | Path, n_workers: int = 1, threads_per_worker: int | None = None,
                       n_structures: int | None = None) -> dict:
    """Generate (or resume) the named dataset into ``out_dir`` (one folder per base of a multi-molecule
    set, each with its own manifest); ``n_structures`` < the full count makes a prefix of it (the same
    structures). Returns {base folder: manifest}."""
    from elct_jax.data.generate import generate_dataset

    ds = get_dataset(name)
    n = ds.n_structures if n_structures is None else n_structures
    manifests = {}
    for k, (folder, base) in enumerate(ds.bases.items()):
        if len(ds.bases) > 1:
            print(f"[{k + 1}/{len(ds.bases)}] {folder}", flush=True)
        manifests[folder] = generate_dataset(base, ds.recipe, Path(out_dir) / folder, n, n_workers=n_workers,
                                             seed=ds.seed, threads_per_worker=threads_per_worker)
    write_split(ds, out_dir, manifests)
    return manifests


def write_split(ds: BenchmarkDataset, out_dir: str | Path, manifests: dict[str, dict]) -> Path:
    """``out_dir/split.json`` (train / val / test folder names, the dataset's protocol) from the
    structures the manifests ({base folder: manifest}) list as done; the file for ``[data] split_file``."""
    done = {folder: [int(i) for i, entry in m["structures"].items() if entry.get("status") == "done"]
            for folder, m in manifests.items()}
    split = ds.split_names(done)
    path = Path(out_dir) / SPLIT_FILE
    tmp = path.with_name(f".tmp-{SPLIT_FILE}")
    tmp.write_text(json.dumps(split, indent=0))
    tmp.replace(path)
    return path

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
                zero-point included), LDA/gth-szv with GTH pseudopotentials; H(R) on a real-space
                k-mesh whose Born-von Karman cell covers every kept block (checked by the generator
                against direct real-space overlaps). Split 40 train / 5 validation / rest test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.data.generate import Recipe
from elct_jax.structure import Structure

SPLIT_FILE = "split.json"
WATER = Structure(("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
GRAPHENE_A_ANG, GRAPHENE_VACUUM_ANG = 2.46, 10.0


def graphene_cell() -> Structure:
    """The 2-atom monolayer graphene cell, a = 2.46 A, 10 A between layers."""
    a = GRAPHENE_A_ANG
    lattice = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, GRAPHENE_VACUUM_ANG]])
    positions = np.array([[0, 0, 0], [0, a / np.sqrt(3), 0]]) + [0, 0, GRAPHENE_VACUUM_ANG / 2]
    return Structure(("C", "C"), positions, lattice, (True, True, True))


@dataclass(frozen=True)
class BenchmarkDataset:
    """A named dataset: ``n_structures`` samples of ``base`` by ``recipe`` with ``seed``.

    split  (n_train, n_validation); the rest is the test set. Structures are assigned in index
           order (sampling is i.i.d., so index order is a random split).
    """

    name: str
    base: Structure
    recipe: Recipe
    n_structures: int
    seed: int
    split: tuple[int, int]

    def split_indices(self, done: list[int]) -> dict[str, list[int]]:
        """Train / validation / test indices among the ``done`` (labelled, converged) structures."""
        done = sorted(done)
        n_train, n_val = self.split
        return {"train": done[:n_train], "validation": done[n_train:n_train + n_val], "test": done[n_train + n_val:]}


DATASETS = {
    "water-md17": BenchmarkDataset(
        "water-md17", WATER,
        Recipe(kind="normal_modes", temperature_K=500.0, dft=DFTSettings(basis="def2-svp", xc="pbe", grid_level=5)),
        n_structures=1500, seed=17, split=(500, 500)),
    "graphene-300k": BenchmarkDataset(
        "graphene-300k", graphene_cell(),
        Recipe(kind="crystal_random", sigma_ang=0.05, strain=0.01, supercell=(4, 4, 1), min_distance_ang=1.0,
               dft=DFTSettings(basis="gth-szv", xc="lda,vwn", kmesh=(2, 2, 1), ke_cutoff_Ha=60.0)),
        n_structures=60, seed=300, split=(40, 5)),
}


def get_dataset(name: str) -> BenchmarkDataset:
    if name not in DATASETS:
        raise ValueError(f"unknown benchmark dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def generate_benchmark(name: str, out_dir: str | Path, n_workers: int = 1, threads_per_worker: int | None = None,
                       n_structures: int | None = None) -> dict:
    """Generate (or resume) the named dataset into ``out_dir``; ``n_structures`` < the full count
    makes a prefix of it (the same structures). Returns the manifest."""
    from elct_jax.data.generate import generate_dataset

    ds = get_dataset(name)
    n = ds.n_structures if n_structures is None else n_structures
    manifest = generate_dataset(ds.base, ds.recipe, out_dir, n, n_workers=n_workers, seed=ds.seed,
                                threads_per_worker=threads_per_worker)
    write_split(ds, out_dir, manifest)
    return manifest


def write_split(ds: BenchmarkDataset, out_dir: str | Path, manifest: dict) -> Path:
    """``out_dir/split.json`` (train / val / test folder names, the dataset's protocol) from the
    structures the manifest lists as done; the file for ``[data] split_file``."""
    done = [int(i) for i, entry in manifest["structures"].items() if entry.get("status") == "done"]
    split = {"val" if k == "validation" else k: [str(i) for i in v] for k, v in ds.split_indices(done).items()}
    path = Path(out_dir) / SPLIT_FILE
    tmp = path.with_name(f".tmp-{SPLIT_FILE}")
    tmp.write_text(json.dumps(split, indent=0))
    tmp.replace(path)
    return path

"""Dataset generation: sample structures around a base geometry, label them with PySCF, write DeepH-dock.

``generate_dataset`` fills ``out_dir`` with one DeepH-dock folder per structure, ``out_dir/<index>/``,
and a ``manifest.json`` recording every index's status: "done", "not_converged" (SCF not
converged: no folder, excluded from the dataset) or "failed" (with the error message). Each folder is
written to a temporary directory and renamed into place; the manifest is rewritten atomically after
every structure. Structure ``index`` is a deterministic function of (base, recipe, seed, index), so an
interrupted run resumes with the same set: done and not-converged indices are never recomputed,
failed ones are retried. Normal-mode sampling computes the base Hessian once and caches its modes in
``out_dir/normal_modes.npz``. SIGINT (Ctrl-C) or SIGTERM stops the run after the structures in
progress (``data.workers``): every folder on disk is then in the manifest, and ``Interrupted`` is
raised; a worker process that dies fails only its own structure. ``failures`` lists what went wrong.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
from tqdm import tqdm

from ai2dft.pyscf_bridge.labels import DFTSettings, crystal_labels, molecule_hessian, molecule_labels
from ai2dft.pyscf_bridge.spin_labels import spin_molecule_labels
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.data import sampling
from elct_jax.data.deeph_dock import DeepHRecord, read_deeph_dock, write_deeph_dock
from elct_jax.data.spin_crystal_record import spin_crystal_record
from elct_jax.data.spinful import collinear_blocks, molecule_moments
from elct_jax.data.workers import (Interrupted, StopRequest, run_tasks, set_pyscf_threads, stop_on_signals,
                                   thread_environment)
from elct_jax.hamiltonian.blocks import dense_to_dict, reorder_blocks
from elct_jax.geometry.structure import Structure

KINDS = ("normal_modes", "random", "crystal_random")
MANIFEST = "manifest.json"
MODES_FILE = "normal_modes.npz"


@dataclass(frozen=True)
class Recipe:
    """How to sample and label a dataset.

    kind              "normal_modes" (molecules: harmonic displacements at temperature_K, classical or
                      quantum), "random" (Gaussian displacements sigma_ang), "crystal_random"
                      (supercell of the base, random strain up to ``strain`` + displacements sigma_ang)
    min_distance_ang  samples with two atoms closer than this are redrawn (at most max_attempts times)
    dft               level of theory of the labels
    """

    kind: str
    temperature_K: float = 300.0
    quantum: bool = False
    sigma_ang: float = 0.05
    strain: float = 0.0
    supercell: tuple[int, int, int] = (1, 1, 1)
    min_distance_ang: float = 0.5
    max_attempts: int = 100
    dft: DFTSettings = field(default_factory=DFTSettings)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown recipe kind {self.kind!r}; expected one of {KINDS}")
        object.__setattr__(self, "supercell", tuple(int(n) for n in self.supercell))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        data = dict(data)
        dft = dict(data.pop("dft", {}))
        for name in ("kmesh", "realspace_kmesh", "smearing"):
            if dft.get(name) is not None:
                dft[name] = tuple(dft[name])
        return cls(**data, dft=DFTSettings(**dft))


def sample_structure(base: Structure, recipe: Recipe, rng: np.random.Generator,
                     modes: sampling.NormalModes | None = None) -> Structure:
    """One sampled structure (``modes`` is needed for kind "normal_modes")."""
    common = dict(min_distance_ang=recipe.min_distance_ang, max_attempts=recipe.max_attempts)
    if recipe.kind == "normal_modes":
        if modes is None:
            raise ValueError("normal-mode sampling needs the base structure's NormalModes")
        return sampling.sample_normal_modes(base, modes, recipe.temperature_K, rng, recipe.quantum, **common)
    if recipe.kind == "random":
        return sampling.sample_random_displacements(base, recipe.sigma_ang, rng, **common)
    supercell = sampling.make_supercell(base, recipe.supercell)
    return sampling.sample_crystal(supercell, recipe.sigma_ang, recipe.strain, rng, **common)


def label_record(structure: Structure, settings: DFTSettings) -> tuple[DeepHRecord, bool]:
    """PySCF labels of one structure as a DeepH record (internal order, Hartree) and the SCF's
    converged flag (``settings.spin`` set: UKS labels of a molecule as a collinear record, :func:`spin_label_record`;
    KUKS labels of a crystal at 2S per cell held fixed, ``spin_crystal_record.spin_crystal_record``)."""
    basis = OrbitalBasis.from_pyscf(settings.basis, structure.symbols)
    symbols = structure.symbols
    common = dict(xc=settings.xc, charge=settings.charge,
                  smearing=None if settings.smearing is None else list(settings.smearing),
                  conv_tol=settings.conv_tol)
    if structure.is_periodic and settings.spin is not None:
        return spin_crystal_record(structure, settings)
    if structure.is_periodic:
        labels = crystal_labels(structure, settings)
        pyscf_blocks = {"hamiltonian": labels.H, "overlap": labels.S, "density_matrix": labels.D,
                        "hamiltonian_0": labels.H0}
        matrices = {name: reorder_blocks(b, basis, symbols, "pyscf") for name, b in pyscf_blocks.items()}
        dft = dict(common, pseudopotential=settings.pseudopotential, kmesh=list(labels.kmesh),
                   realspace_kmesh=list(labels.realspace_kmesh), ke_cutoff_Ha=settings.ke_cutoff_Ha,
                   overlap_tol=settings.overlap_tol, max_overlap_deviation=labels.max_overlap_deviation,
                   density_matrix="D(H) on realspace_kmesh")
    elif settings.spin is not None:
        return spin_label_record(structure, settings, basis, common)
    else:
        labels = molecule_labels(structure, settings)
        dense = {"hamiltonian": labels.H, "overlap": labels.S, "density_matrix": labels.D, "hamiltonian_0": labels.H0}
        matrices = {name: dense_to_dict(m, basis, symbols, "pyscf") for name, m in dense.items()}
        dft = dict(common, pseudopotential=None, grid_level=settings.grid_level,
                   density_fit=settings.density_fit)
    dft.update(n_electrons=labels.n_electrons, e_tot_hartree=labels.e_tot, converged=labels.converged)
    return DeepHRecord(structure, basis, matrices, labels.fermi_energy, dft), labels.converged


def spin_label_record(structure: Structure, settings: DFTSettings, basis: OrbitalBasis,
                      common: dict) -> tuple[DeepHRecord, bool]:
    """UKS labels (``settings.spin`` = 2S) of a molecule as a collinear spinful record: H, D and H0 with spin-outer
    blocks [[up, 0], [0, down]] (up = alpha), spinless S. Its level of theory adds spin (2S), multiplicity,
    spin_treatment, the initial moments ``magmom`` (``spinful.molecule_moments``: the collinear model's input),
    the electrons and chemical potential of each spin; the record's Fermi energy is midway between the highest
    occupied and the lowest empty level of both spins (eigenvalues of (H_s, S), N_s per spin)."""
    labels = spin_molecule_labels(structure, settings)
    symbols = structure.symbols
    per_spin = {"hamiltonian": labels.H, "density_matrix": labels.D, "hamiltonian_0": labels.H0}
    matrices = {name: collinear_blocks(*(dense_to_dict(m[s], basis, symbols, "pyscf") for s in (0, 1)))
                for name, m in per_spin.items()}
    matrices["overlap"] = dense_to_dict(labels.S, basis, symbols, "pyscf")
    levels = [scipy.linalg.eigh(labels.H[s], labels.S, eigvals_only=True) for s in (0, 1)]
    homo = max(levels[s][n - 1] for s, n in enumerate(labels.n_electrons) if n > 0)
    lumo = min(levels[s][n] for s, n in enumerate(labels.n_electrons) if n < len(levels[s]))
    dft = dict(common, pseudopotential=None, grid_level=settings.grid_level, density_fit=settings.density_fit,
               spin=settings.spin, multiplicity=settings.spin + 1, spin_treatment="collinear (UKS, fixed 2S)",
               magmom=molecule_moments(len(symbols), settings.spin).tolist(),
               n_electrons=sum(labels.n_electrons), n_electrons_per_spin=list(labels.n_electrons),
               fermi_energy_hartree_per_spin=list(labels.fermi_energy), e_tot_hartree=labels.e_tot,
               converged=labels.converged)
    return DeepHRecord(structure, basis, matrices, 0.5 * float(homo + lumo), dft, spinful=True), labels.converged


def generate_dataset(base: Structure | str | Path, recipe: Recipe, out_dir: str | Path, n_structures: int,
                     n_workers: int = 1, seed: int = 0, threads_per_worker: int | None = None,
                     progress: bool = True) -> dict:
    """Generate structures 0..n_structures-1 into ``out_dir`` (resumable); returns the manifest.

    n_workers           worker processes (spawned); 0 runs everything in the calling process
    threads_per_worker  OpenMP/BLAS threads of each worker; default: available cores // n_workers
    """
    base = base if isinstance(base, Structure) else Structure.read(base)
    if n_structures < 0 or n_workers < 0:
        raise ValueError(f"n_structures and n_workers must be >= 0, got {n_structures}, {n_workers}")
    if (recipe.kind == "crystal_random") != base.is_periodic or (recipe.kind == "normal_modes" and base.is_periodic):
        raise ValueError(f"recipe kind {recipe.kind!r} does not fit a {'periodic' if base.is_periodic else 'molecular'} "
                         f"base structure ('crystal_random' is for crystals, 'normal_modes' for molecules)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _open_manifest(out_dir, base, recipe, seed)
    with stop_on_signals() as stop:
        try:
            _generate(base, recipe, out_dir, n_structures, seed, manifest, stop, n_workers, threads_per_worker,
                      progress)
        finally:  # also after a second signal: a folder renamed into place before it is listed
            _recover_finished(out_dir, manifest)
            _write_json_atomic(out_dir / MANIFEST, manifest)
    if stop.signum is not None:
        raise Interrupted(stop.signum)
    return manifest


def failures(manifest: dict, n_structures: int) -> dict[int, str]:
    """{index: reason} of the structures 0..n_structures-1 of ``manifest`` that failed (the error) or
    did not converge ("SCF not converged after N cycles")."""
    max_cycle = manifest["recipe"]["dft"]["max_cycle"]
    reasons = {"failed": lambda entry: entry["error"],
               "not_converged": lambda entry: f"SCF not converged after {max_cycle} cycles"}
    entries = {i: manifest["structures"].get(str(i), {}) for i in range(n_structures)}
    return {i: reasons[e["status"]](e) for i, e in entries.items() if e.get("status") in reasons}


def _generate(base: Structure, recipe: Recipe, out_dir: Path, n_structures: int, seed: int, manifest: dict,
              stop: StopRequest, n_workers: int, threads_per_worker: int | None, progress: bool) -> None:
    """Run the structures of ``manifest`` still to do, recording each as it finishes (until ``stop``)."""
    _remove_stale_temporaries(out_dir)
    _recover_finished(out_dir, manifest)
    todo = [i for i in range(n_structures) if manifest["structures"].get(str(i), {}).get("status")
            not in ("done", "not_converged")]
    modes_path = _normal_modes_file(out_dir, base, recipe, progress) if recipe.kind == "normal_modes" and todo else None
    tasks = [dict(base=_structure_dict(base), recipe=recipe.to_dict(), seed=seed, index=i,
                  out_dir=str(out_dir), modes_path=modes_path) for i in todo]
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = threads_per_worker or max(1, available // max(n_workers, 1))
    env = thread_environment(threads)
    bar = tqdm(total=len(tasks), desc="structures", unit="structure", disable=not progress)
    for task, entry, died in run_tasks(generate_one, tasks, n_workers, stop, env, set_pyscf_threads, (threads,)):
        manifest["structures"][str(task["index"])] = entry or {"status": "failed", "error": died}
        _write_json_atomic(out_dir / MANIFEST, manifest)
        bar.set_postfix(_counts(manifest, n_structures), refresh=False)
        bar.update(1)
    bar.close()


def generate_one(task: dict) -> dict:
    """Sample, label and write structure ``task["index"]``; returns its manifest entry (never raises
    for a failed calculation: the error goes into the entry)."""
    start = time.perf_counter()
    try:
        recipe = Recipe.from_dict(task["recipe"])
        base = Structure(**task["base"])
        modes = sampling.NormalModes.load(task["modes_path"]) if task["modes_path"] else None
        structure = sample_structure(base, recipe, sampling.rng_for(task["seed"], task["index"]), modes)
        record, converged = label_record(structure, recipe.dft)
        entry = {"e_tot_hartree": record.dft["e_tot_hartree"], "seconds": round(time.perf_counter() - start, 3)}
        if not converged:
            return {"status": "not_converged", **entry}
        _write_record_atomic(Path(task["out_dir"]), task["index"], record)
        return {"status": "done", **entry}
    except Exception as err:  # recorded in the manifest and retried on the next run
        return {"status": "failed", "error": f"{type(err).__name__}: {err}",
                "seconds": round(time.perf_counter() - start, 3)}


def _write_record_atomic(out_dir: Path, index: int, record: DeepHRecord) -> None:
    final = out_dir / str(index)
    tmp = out_dir / f".tmp-{index}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    write_deeph_dock(tmp, record)
    if final.exists():  # an earlier run wrote it but died before updating the manifest
        shutil.rmtree(final)
    os.rename(tmp, final)


def _structure_dict(structure: Structure) -> dict:
    lattice = None if structure.lattice_ang is None else structure.lattice_ang.tolist()
    return dict(symbols=list(structure.symbols), positions_ang=structure.positions_ang.tolist(),
                lattice_ang=lattice, pbc=list(structure.pbc))


def _open_manifest(out_dir: Path, base: Structure, recipe: Recipe, seed: int) -> dict:
    """The existing manifest (checked to describe the same dataset) or a new one."""
    header = json.loads(json.dumps({"base": _structure_dict(base), "recipe": recipe.to_dict(), "seed": seed}))
    path = out_dir / MANIFEST
    if not path.exists():
        return {**header, "structures": {}}
    manifest = json.loads(path.read_text())
    for name, value in header.items():
        if manifest.get(name) != value:
            raise ValueError(f"{out_dir} holds a dataset with a different {name} ({path}); resume with the "
                             f"same base structure, recipe and seed, or use a new out_dir")
    return manifest


def _remove_stale_temporaries(out_dir: Path) -> None:
    for tmp in out_dir.glob(".tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink()


def _recover_finished(out_dir: Path, manifest: dict) -> None:
    """Mark folders that were renamed into place just before an interruption as done."""
    for folder in out_dir.iterdir():
        entry = manifest["structures"].get(folder.name, {})
        if folder.is_dir() and folder.name.isdigit() and entry.get("status") != "done":
            try:
                record = read_deeph_dock(folder)
            except ValueError:
                shutil.rmtree(folder)
                continue
            manifest["structures"][folder.name] = {"status": "done", "e_tot_hartree": record.dft.get("e_tot_hartree"),
                                                   "recovered": True}


def _normal_modes_file(out_dir: Path, base: Structure, recipe: Recipe, progress: bool) -> str:
    """Path of the cached normal modes of the base structure (computed from a PySCF Hessian once; with
    ``progress``, saying so on stderr with its time: minutes for larger molecules)."""
    path = out_dir / MODES_FILE
    if not path.exists():
        name = f"{base.to_ase().get_chemical_formula()} ({recipe.dft.xc}/{recipe.dft.basis})"
        if progress:
            print(f"computing the Hessian of {name} (normal modes) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        hessian, masses = molecule_hessian(base, recipe.dft)
        if progress:
            print(f"Hessian of {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        tmp = out_dir / f".tmp-modes-{os.getpid()}.npz"
        sampling.normal_modes(hessian, masses, base.positions_ang).save(tmp)
        os.replace(tmp, path)
    return str(path)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _counts(manifest: dict, n: int) -> dict:
    statuses = [manifest["structures"].get(str(i), {}).get("status") for i in range(n)]
    return {s: statuses.count(s) for s in ("done", "not_converged", "failed")}

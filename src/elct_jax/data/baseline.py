"""The zeroth-step Hamiltonian baseline H0 = F[D0] (NextHAM's idea): the network learns H - H0.

D0 is PySCF's MINAO initial density (a superposition of spherical atomic densities) and H0 the
Kohn-Sham matrix it gives at the labels' level of theory: one Fock build, no SCF. H0 already carries
most of the geometry dependence of H (kinetic and nuclear-attraction integrals, the atoms' Hartree and
XC potentials): on water-md17 structures, mean |H - <H>| over the dataset is 8,965 uHa per entry, mean
|(H - H0) - <H - H0>| 996 uHa, so the network has a 9x smaller and smoother function to learn.

Records carry H0 as the matrix ``hamiltonian_0`` (``hamiltonian_0.h5`` beside the DeepH-dock files,
written by the label generator; :func:`add_baseline` adds it to older datasets). A model trained with
the baseline stores the settings of H0 in its model.json and adds H0 to its output when predicting,
which needs PySCF for each new structure. Crystals have it too (the KRKS F[D0] on the labels' real-space
blocks, ``ai2dft.pyscf_bridge.labels.crystal_zeroth_step``), but a structure too large for one PySCF Fock
build has none: chunked O(N) prediction of large structures takes models trained with ``baseline = "none"``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from elct_jax.data.deeph_dock import DeepHRecord, read_deeph_dock, write_matrix_file
from elct_jax.hamiltonian.blocks import dense_to_dict, reorder_blocks
from elct_jax.geometry.structure import Structure

BASELINE = "hamiltonian_0"
SETTING_KEYS = ("xc", "charge", "grid_level", "density_fit", "smearing")
CRYSTAL_KEYS = ("xc", "charge", "smearing", "pseudopotential", "kmesh", "ke_cutoff_Ha", "overlap_tol")


def baseline_settings(record: DeepHRecord) -> dict:
    """The settings H0 is rebuilt from for new structures: the record's basis and level of theory (for crystals
    also the pseudopotential, SCF k-mesh, plane-wave cutoff and the overlap threshold of the kept blocks; the
    real-space k-mesh is each structure's own covering mesh, as the generator picks it)."""
    keys = CRYSTAL_KEYS if record.structure.is_periodic else SETTING_KEYS
    return {"basis": record.basis.name, **{k: record.dft.get(k) for k in keys}}


def dft_settings(settings: dict):
    """DFTSettings (ai2dft.pyscf_bridge.labels) of a model's baseline settings: its level of theory."""
    from ai2dft.pyscf_bridge.labels import DFTSettings

    names = {"pseudopotential": "pseudo"}
    kwargs = {names.get(k, k): (tuple(v) if isinstance(v, list) else v) for k, v in settings.items()
              if k != "basis" and v is not None}
    return DFTSettings(basis=settings["basis"], **kwargs)


def baseline_blocks(structure: Structure, basis, settings: dict) -> dict:
    """H0 blocks (internal order, Hartree) of a structure at ``settings``: {(0, 0, 0, i, j): block} of a molecule,
    {(R1, R2, R3, i, j): block} of a crystal on the blocks its labels keep."""
    from ai2dft.pyscf_bridge.labels import crystal_zeroth_step, zeroth_step_fock

    if structure.is_periodic:
        return reorder_blocks(crystal_zeroth_step(structure, dft_settings(settings)), basis, structure.symbols,
                              "pyscf")
    H0 = zeroth_step_fock(structure, dft_settings(settings))
    return dense_to_dict(H0, basis, structure.symbols, "pyscf")


def add_baseline(root: str | Path, progress: bool = True, n_workers: int = 0) -> int:
    """Write ``hamiltonian_0.h5`` into every DeepH-dock folder below ``root`` that lacks it
    (one atomic file write per folder: an interrupted run leaves each folder old or new, and resumes). Returns the
    number of folders changed. n_workers: spawned PySCF processes of one thread each (0: this process). Folders
    whose H0 failed are listed in one RuntimeError after the others are done; SIGINT / SIGTERM finish the folders
    in progress and raise ``workers.Interrupted``."""
    from elct_jax.data.dataset_dir import dataset_folders
    from elct_jax.data.workers import Interrupted, run_tasks, set_pyscf_threads, stop_on_signals, thread_environment

    todo = [str(f) for f in dataset_folders(root) if (f / "POSCAR").exists() and not (f / f"{BASELINE}.h5").exists()]
    failed = []
    with stop_on_signals("finishing the folder(s) in progress") as stop:
        tasks = run_tasks(_add_one, todo, n_workers, stop, thread_environment(1), set_pyscf_threads, (1,))
        for folder, error, died in tqdm(tasks, total=len(todo), desc="adding H0", unit="record", disable=not progress):
            if error or died:
                failed.append(f"{folder}: {error or died}")
    if stop.signum is not None:
        raise Interrupted(stop.signum)
    if failed:
        raise RuntimeError(f"H0 failed for {len(failed)} of {len(todo)} record(s) (the others are written; run again "
                           f"to retry):\n" + "\n".join(failed))
    return len(todo)


def _add_one(folder: str) -> str | None:
    """Write one folder's H0; returns None, or the error that stopped it."""
    try:
        record = read_deeph_dock(folder)
        blocks = baseline_blocks(record.structure, record.basis, baseline_settings(record))
        keys = dataclasses.replace(record, matrices={**record.matrices, BASELINE: blocks}).pair_keys()
        write_matrix_file(Path(folder), BASELINE, keys, blocks)
        return None
    except Exception as err:  # reported with its folder; the other folders go on
        return f"{type(err).__name__}: {err}"


def with_baseline(onsite, edges, batch):
    """Network output (onsite [n_node, n, n], edges [n_edge, n, n]) plus the batch's H0 where it carries
    one: the full Hamiltonian blocks."""
    if BASELINE not in batch.targets:
        return onsite, edges
    b_on, b_ed = batch.targets[BASELINE]
    return onsite + b_on.astype(onsite.dtype), edges + b_ed.astype(edges.dtype)


def subtract_baseline(targets: dict) -> dict:
    """Targets with "hamiltonian" replaced by H - H0 (computed in float64 on the host)."""
    if BASELINE not in targets or "hamiltonian" not in targets:
        return targets
    (h_on, h_ed), (b_on, b_ed) = targets["hamiltonian"], targets[BASELINE]
    return {**targets, "hamiltonian": (np.asarray(h_on) - b_on, np.asarray(h_ed) - b_ed)}

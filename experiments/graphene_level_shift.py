"""Where does a graphene model's per-cell level shift come from? Two candidate sources, measured per cell.

A model trained on ``graphene-300k`` (the 150-CPU-minute run, 0.47 meV test H MAE) misses the absolute band energies by
~5 meV while the bands relative to E_F agree to 1.6 meV: its error has a per-cell constant part c S (c: the
least-squares projection of H_pred - H on S), |c| ~ 4-5 meV on training and test cells alike, so it is not a
generalisation gap. A local (8 A) network cannot learn a per-cell constant that is not a function of local
environments. Candidates:

  vacuum   PySCF's 3D-periodic cells set the mean Hartree potential to zero, so every level carries the cell's vacuum
           level, a cell mean of local charge moments (2 pi / Omega) int z^2 rho. E_vac here: the planar average, at
           mid-vacuum, of the Hartree potential of rho - rho0 (the label density minus H0's MINAO density: the part
           the network learns, H - H0). Its strain-driven part is local (bond lengths tell it); what is left after a
           linear fit in the cell volume is the part no local model can see.
  kmesh    the labels' SCF samples a 2x2x1 k-mesh of a 32-atom semimetal; c_k is the per-cell constant of H(4x4x1 SCF)
           - H(record), the k-sampling error of the labels themselves (~8 CPU-minutes of PySCF per cell).

    OMP_NUM_THREADS=1 python experiments/graphene_level_shift.py --model ~/.cache/elct/acc/onsite/w0 \\
        --data ~/.cache/elct/graphene-300k --kmesh-cells 43 44

Beside them, for every cell: the labels' own on-site level (cell mean of diag(H - H0)) and how much of it, and of c, a
linear fit in the cell's strain and corrugation leaves. Per-cell results are cached in ``--out`` (JSON; a rerun
resumes); the summary prints the regressions. Result
(benchmarks/RESULTS.md, session 17): neither. E_vac beyond its volume fit has std 1.4 meV against c's 4.7 and the wrong
sign of correlation; the 4x4x1 labels differ by a near-uniform -1.0 meV in both extreme cells. The shift is the
network's: c tracks the cells' corrugation on the training cells (r = -0.75); the labels' on-site level spans 36 meV,
5.5 meV of it beyond strain and corrugation, and c (std 6.0 meV) is about that part.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

import ai2dft
from ai2dft.units import HARTREE_TO_MEV
from elct_jax.data.baseline import baseline_settings, dft_settings
from elct_jax.data.dataset_dir import read_record
from elct_jax.hamiltonian.blocks import reorder_blocks
from elct_jax.hamiltonian.sparse import BlochMatrix, SparseBlocks


def s_projection(blocks: dict, S: dict) -> float:
    """c minimising sum |blocks - c S|^2 over the blocks' keys (Hartree)."""
    keys = list(blocks)
    e = np.concatenate([blocks[k].ravel() for k in keys])
    s = np.concatenate([S[k].ravel() if k in S else np.zeros(blocks[k].size) for k in keys])
    return float(e @ s / (s @ s))


def vacuum_level(record) -> dict:
    """E_vac (Hartree) of the Hartree potential of rho - rho0 at mid-vacuum, its value 1/8 cell further (flatness),
    the electron count and the minimum of rho, and the cell volume (Bohr^3)."""
    from pyscf.pbc import dft as pbc_dft, tools
    from pyscf.pbc.dft import gen_grid, numint
    from ai2dft.pyscf_bridge.labels import build_cell

    st = record.structure
    cell = build_cell(st, dft_settings(baseline_settings(record)))
    D = reorder_blocks(record.matrices["density_matrix"], record.basis, st.symbols, "pyscf", to_internal=False)
    bloch = BlochMatrix(SparseBlocks.from_dict(D, np.diff(cell.aoslice_by_atom()[:, 2:4], axis=1)[:, 0]))
    kpts = cell.make_kpts(record.dft["realspace_kmesh"])
    D_k = np.array([bloch.bloch(k).toarray() for k in cell.get_scaled_kpts(kpts)])  # sum_R exp(2 pi i k.R) D(R)
    grids = gen_grid.UniformGrids(cell)
    rho = numint.KNumInt().get_rho(cell, D_k, grids, kpts)
    k0 = cell.make_kpts(record.dft["kmesh"])
    rho0 = numint.KNumInt().get_rho(cell, pbc_dft.KRKS(cell, k0).get_init_guess(cell, key="minao"), grids, k0)
    mesh = grids.mesh
    v = tools.ifft(tools.get_coulG(cell, mesh=mesh) * tools.fft(rho - rho0, mesh), mesh).real.reshape(mesh)
    profile = v.mean(axis=(0, 1))  # planar average along the vacuum axis (the third lattice vector)
    z = np.asarray(st.positions_ang)[:, 2]
    iz = int(round(((z.mean() / np.linalg.norm(np.asarray(st.lattice_ang)[2]) + 0.5) % 1.0) * mesh[2])) % mesh[2]
    return dict(e_vac=float(profile[iz]), e_vac_eighth=float(profile[(iz + mesh[2] // 8) % mesh[2]]),
                n_e=float(rho.sum() * cell.vol / rho.size), min_rho=float(rho.min()), vol=float(cell.vol))


def kmesh_shift(record, kmesh=(4, 4, 1)) -> dict:
    """c_k and the on-site / off-site mean |dH| (Hartree) of H from an SCF on ``kmesh`` minus the record's H."""
    from ai2dft.pyscf_bridge.labels import crystal_labels

    settings = dataclasses.replace(dft_settings(baseline_settings(record)), kmesh=tuple(kmesh))
    labels = crystal_labels(record.structure, settings)
    H_k = reorder_blocks(labels.H, record.basis, record.structure.symbols, "pyscf")
    H, S = record.matrices["hamiltonian"], record.matrices["overlap"]
    diff = {k: H_k[k] - H[k] for k in H if k in H_k}
    on = [k for k in diff if k[:3] == (0, 0, 0) and k[3] == k[4]]
    return dict(c_k=s_projection(diff, S), converged=bool(labels.converged),
                onsite_mae=float(np.mean([np.abs(diff[k]).mean() for k in on])),
                offsite_mae=float(np.mean([np.abs(diff[k]).mean() for k in diff if k not in set(on)])))


def model_shift(model, record) -> float:
    """c of the model's error H_pred - H (Hartree)."""
    from elct_jax.inference.predict import predict_blocks

    pred = predict_blocks(model, record.structure, h0=record.matrices.get("hamiltonian_0"))
    H = record.matrices["hamiltonian"]
    return s_projection({k: pred[k] - H[k] for k in H if k in pred}, record.matrices["overlap"])


def cell_descriptors(record) -> dict:
    """The cell's in-plane area (A^2), areal strain tr E and its anisotropy |E_xx - E_yy, 2 E_xy| against the ideal 4x4
    cell, the std of the atoms' z (A), and the labels' on-site levels: the cell means of diag(H - H0) over the s and
    over the p orbitals (Hartree)."""
    from elct_jax.data.benchmarks import graphene_cell

    lattice = np.asarray(record.structure.lattice_ang)[:2, :2]
    F = np.linalg.solve(4 * np.asarray(graphene_cell().lattice_ang)[:2, :2], lattice).T  # lattice^T = F ideal^T
    E = (F.T @ F - np.eye(2)) / 2
    H, H0 = record.matrices["hamiltonian"], record.matrices["hamiltonian_0"]
    diag = np.mean([np.diag(H[k] - H0[k]) for k in H if k[:3] == (0, 0, 0) and k[3] == k[4]], axis=0)
    return dict(area=float(abs(np.linalg.det(lattice))), strain=float(np.trace(E)),
                anisotropy=float(np.hypot(E[0, 0] - E[1, 1], 2 * E[0, 1])),
                std_z=float(np.asarray(record.structure.positions_ang)[:, 2].std()),
                level_s=float(diag[0]), level_p=float(diag[1:].mean()))


def summary(cache: dict) -> None:
    r = lambda x, y: np.corrcoef(x, y)[0, 1]
    for part in sorted({v["split"] for v in cache.values() if "c_model" in v}):
        cm, area, sz = (np.array([v[k] for v in cache.values() if v.get("split") == part and "c_model" in v])
                        for k in ("c_model", "area", "std_z"))
        cm = cm * HARTREE_TO_MEV
        print(f"{part} ({len(cm)} cells): mean |c_model| {np.abs(cm).mean():.2f} meV; r(c_model, in-plane area) "
              f"{r(cm, area):.2f}, r(c_model, std z) {r(cm, sz):.2f}")
    _level_summary([v for v in cache.values() if "c_model" in v])
    rows = [v for v in cache.values() if "c_model" in v and "e_vac" in v]
    if len(rows) < 3:
        print(f"vacuum level: {len(rows)} cells, too few to fit")
    else:
        _vacuum_summary(rows)
    for name, v in cache.items():
        if "c_k" in v:
            print(f"cell {name}: c_model {v.get('c_model', np.nan) * HARTREE_TO_MEV:.2f} meV; 4x4x1 - 2x2x1 SCF: c_k "
                  f"{v['c_k'] * HARTREE_TO_MEV:.2f} meV, on-site mean |dH| {v['onsite_mae'] * HARTREE_TO_MEV:.2f}, "
                  f"off-site {v['offsite_mae'] * HARTREE_TO_MEV:.3f} meV")


def _level_summary(rows: list) -> None:
    """How much of the labels' per-cell on-site level, and of c, a linear fit in the cell's strain and corrugation
    leaves (and with the strain's anisotropy and the squares)."""
    get = lambda k: np.array([row[k] for row in rows])
    strain, sz, aniso = get("strain"), get("std_z"), get("anisotropy")
    fits = {"strain, std z": np.c_[np.ones_like(sz), strain, sz],
            "+ anisotropy, squares": np.c_[np.ones_like(sz), strain, sz, aniso, strain ** 2, sz ** 2]}
    for name, y in (("level s", get("level_s")), ("level p", get("level_p")), ("c_model", get("c_model"))):
        y = y * HARTREE_TO_MEV
        left = [np.std(y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) for X in fits.values()]
        print(f"{name}, {len(rows)} cells: std {y.std():.2f} meV; left by a linear fit in "
              + ", ".join(f"({f}) {v:.2f}" for f, v in zip(fits, left)))


def _vacuum_summary(rows: list) -> None:
    r = lambda x, y: np.corrcoef(x, y)[0, 1]
    cm, ev, vol = (np.array([row[k] for row in rows]) for k in ("c_model", "e_vac", "vol"))
    cm, ev = cm * HARTREE_TO_MEV, ev * HARTREE_TO_MEV
    resid = ev - np.polyval(np.polyfit(vol, ev, 1), vol)
    print(f"vacuum level, {len(rows)} cells: std E_vac {ev.std():.2f} meV, r(E_vac, volume) {r(ev, vol):.3f}; E_vac "
          f"beyond its linear fit in volume: std {resid.std():.2f} meV, r(c_model, that rest) {r(cm, resid):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="run directory or exported model trained on graphene-300k")
    ap.add_argument("--data", default=str(Path.home() / ".cache/elct/graphene-300k"))
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="cells whose c_model is measured")
    ap.add_argument("--vacuum-splits", nargs="*", default=["val", "test"], help="cells whose E_vac is computed")
    ap.add_argument("--kmesh-cells", nargs="*", default=[], help="cells to relabel on a 4x4x1 SCF k-mesh")
    ap.add_argument("--out", default="experiments/out/graphene_level_shift.json")
    args = ap.parse_args()
    ai2dft.enable_float64()
    from elct_jax.train.saved_model import load_model

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.exists() else {"model": args.model, "cells": {}}
    cache = saved["cells"]
    if saved["model"] != args.model:  # another model: its c_model values are stale, the DFT quantities are not
        saved["model"] = args.model
        for entry in cache.values():
            entry.pop("c_model", None)
    model = load_model(Path(args.model).expanduser())
    split = json.loads((Path(args.data) / "split.json").read_text())
    part = {str(n): s for s in split for n in split[s]}
    names = [str(n) for s in args.splits for n in split[s]]
    vacuum = {str(n) for s in args.vacuum_splits for n in split[s]}
    for name in names + [n for n in args.kmesh_cells if n not in names]:
        record, entry = read_record(Path(args.data) / name), cache.setdefault(name, {})
        if "c_model" not in entry:
            entry["c_model"] = model_shift(model, record)
        entry.update(split=part[name], **cell_descriptors(record))
        if name in vacuum and "e_vac" not in entry:
            entry.update(vacuum_level(record))
        if name in args.kmesh_cells and "c_k" not in entry:
            entry.update(kmesh_shift(record))
        out.write_text(json.dumps(saved, indent=1))
        in_mev = lambda k: k.startswith(("c_", "e_vac")) or k.endswith("_mae")
        print(name, {k: round(v * HARTREE_TO_MEV, 3) if in_mev(k) else v for k, v in entry.items()}, flush=True)
    summary(cache)


if __name__ == "__main__":
    main()

"""``elct bands``: predicted H(R) (chunked), S(R) from PySCF integrals, bands along a path, Fermi level,
eigenvalues (npz) and a PNG. Register with ``add_bands_parser(subparsers)`` in ``elct_jax.cli``.

    elct bands --model runs/graphene --structure POSCAR --npoints 60 --nbands 20 --out out/bands
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elct_jax.bands import BandSolver, band_path, fermi_level, plot_bands, save_bands
from ai2dft.units import HARTREE_TO_EV


@dataclass(frozen=True)
class BandsRequest:
    """What ``elct bands`` computes (energies in eV where named so)."""

    npoints: int = 60
    nbands: int | None = 20
    path: str | None = None
    fermi_ev: float | None = None
    n_electrons: int | None = None
    fermi_kmesh: tuple[int, int, int] = (1, 1, 1)
    solver: str = "auto"
    chunk_atoms: int = 256
    xc: str = "lda"
    pseudo: str | None = None


def run_bands(model, structure, out_dir: str | Path, request: BandsRequest = BandsRequest()) -> dict:
    """Predict, diagonalize, write ``bands.npz``, ``bands.png`` and ``bands.json`` (summary with
    timings) under ``out_dir``; returns the summary."""
    from ai2dft.pyscf_bridge.overlap import valence_electrons
    from elct_jax.large.chunked import predict_sparse
    from elct_jax.large.sparse import overlap_like

    if not structure.is_periodic:
        raise ValueError("elct bands needs a periodic structure (a lattice and pbc)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    times, t0 = {}, time.perf_counter()
    h = predict_sparse(model, structure, chunk_atoms=request.chunk_atoms)
    times["predict_s"], t0 = time.perf_counter() - t0, time.perf_counter()
    s = overlap_like(h, structure, model.basis)
    times["overlap_s"], t0 = time.perf_counter() - t0, time.perf_counter()
    solver = BandSolver(h, s)
    n_el = request.n_electrons or valence_electrons(structure.symbols, model.basis.name, request.xc, request.pseudo)
    if request.fermi_ev is not None:
        fermi = request.fermi_ev / HARTREE_TO_EV
    else:
        fermi = fermi_level(solver, n_el, _mesh(request.fermi_kmesh, structure.pbc), method=request.solver)
    times["fermi_s"], t0 = time.perf_counter() - t0, time.perf_counter()
    path = band_path(structure.lattice_ang, structure.pbc, request.path, request.npoints)
    bands = solver.bands(path.kpts_frac, request.nbands, fermi, solver=request.solver)
    times["bands_s"] = time.perf_counter() - t0
    save_bands(out_dir / "bands.npz", path, bands)
    plot_bands(path, bands, out_dir / "bands.png", title=f"{structure.n_atoms} atoms, {solver.n_ao} orbitals",
               window_ev=_window(bands))
    summary = dict(n_atoms=structure.n_atoms, n_ao=solver.n_ao, n_electrons=int(n_el),
                   fermi_ev=fermi * HARTREE_TO_EV, solver=solver.choose(request.solver), n_kpoints=len(path.x),
                   seconds_per_kpoint=times["bands_s"] / len(path.x), **{k: round(v, 3) for k, v in times.items()})
    (out_dir / "bands.json").write_text(json.dumps(summary, indent=1))
    return summary


def _mesh(kmesh, pbc) -> np.ndarray:
    """Gamma-centred mesh [n_k, 3] (reciprocal-lattice units); 1 along non-periodic directions."""
    n = [int(m) if p else 1 for m, p in zip(kmesh, pbc)]
    grid = np.meshgrid(*[np.arange(m) / m for m in n], indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


def _window(bands) -> float | None:
    """Symmetric plot window (eV) holding the computed bands, or None for all bands."""
    if bands.band_index.shape[1] == 0 or bands.fermi is None:
        return None
    span = np.nanmax(np.abs(bands.energies - bands.fermi)) * HARTREE_TO_EV
    return float(min(span, 10.0))


def _command(args) -> None:
    from elct_jax.structure import Structure
    from elct_jax.saved_model import load_model

    request = BandsRequest(npoints=args.npoints, nbands=None if args.nbands <= 0 else args.nbands, path=args.path,
                           fermi_ev=args.fermi, n_electrons=args.n_electrons, fermi_kmesh=tuple(args.fermi_kmesh),
                           solver=args.solver, chunk_atoms=args.chunk_atoms, xc=args.xc, pseudo=args.pseudo)
    summary = run_bands(load_model(args.model), Structure.read(args.structure), args.out, request)
    print(json.dumps(summary))


def add_bands_parser(subparsers) -> None:
    """Register ``elct bands`` on an argparse subparsers object."""
    p = subparsers.add_parser("bands", help="band structure of a (large) crystal from a trained model")
    p.add_argument("--model", "--checkpoint", dest="model", required=True,
                   help="an exported model folder or a run directory (of a crystal model)")
    p.add_argument("--structure", required=True, help="crystal structure file (POSCAR, cif, extxyz, ...)")
    p.add_argument("--out", required=True, help="output directory: bands.npz, bands.png, bands.json")
    p.add_argument("--npoints", type=int, default=60, help="k-points along the path")
    p.add_argument("--nbands", type=int, default=20, help="bands nearest the Fermi level (<= 0: all, dense)")
    p.add_argument("--path", default=None, help="special points, e.g. GMKG (default: ASE's path of the lattice)")
    p.add_argument("--fermi", type=float, default=None, help="Fermi level in eV (default: from the electron count)")
    p.add_argument("--n-electrons", type=int, default=None, help="electrons per cell (default: GTH valence count)")
    p.add_argument("--fermi-kmesh", type=int, nargs=3, default=[1, 1, 1], help="k-mesh of the Fermi level")
    p.add_argument("--solver", choices=["auto", "dense", "sparse"], default="auto")
    p.add_argument("--chunk-atoms", type=int, default=256, help="atoms per prediction chunk (memory bound)")
    p.add_argument("--xc", default="lda", help="selects the GTH pseudopotential for the electron count")
    p.add_argument("--pseudo", default=None, help="GTH pseudopotential name (overrides --xc)")
    p.set_defaults(func=_command)

"""``elct bands``: predicted H(R) (chunked), S(R) from PySCF integrals, bands along a path, Fermi level,
eigenvalues (npz) and a PNG; or the same from the H(R), S(R) and occupation of a DeepH folder. The options
are defined in ``elct_jax.cli.main`` (which stays light for ``--help``); :func:`run_command` runs them.

    elct bands --model runs/graphene --structure POSCAR --npoints 60 --nbands 20 --out out/bands
    elct bands --folder predicted/graphene --out out/bands     # e.g. written by elct predict
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elct_jax.analysis.bands import band_path, fermi_level, plot_bands, save_bands
from elct_jax.analysis.spin_bands import BandChannels, band_channels, parts_channels
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


def run_bands(model, structure, out_dir: str | Path, request: BandsRequest = BandsRequest(), magmom=None) -> dict:
    """Predict, diagonalize, write ``bands.npz``, ``bands.png`` and ``bands.json`` (summary with
    timings) under ``out_dir``; returns the summary. Spinful models as spinful folders in
    :func:`run_bands_from_folder`: a collinear model (its input ``magmom`` [n_atoms], initial moments in Bohr
    magnetons, required) gives ``bands_up.npz`` and ``bands_down.npz``, a spin-orbit model the spinor bands."""
    from ai2dft.pyscf_bridge.overlap import valence_electrons
    from elct_jax.data.spinful import SPIN_OF_MODEL
    from elct_jax.inference.chunked import predict_sparse_parts
    from elct_jax.hamiltonian.sparse import overlap_like

    _check_periodic(structure, "the structure")
    times, t0 = {}, time.perf_counter()
    h = predict_sparse_parts(model, structure, magmom, chunk_atoms=request.chunk_atoms)
    times["predict_s"], t0 = time.perf_counter() - t0, time.perf_counter()
    s = overlap_like(h[0], structure, model.basis)
    times["overlap_s"] = time.perf_counter() - t0
    n_el = request.n_electrons or valence_electrons(structure.symbols, model.basis.name, request.xc, request.pseudo)
    return _bands_report(parts_channels(SPIN_OF_MODEL[model.config.spin], h, s), structure, n_el, out_dir, request,
                         times)


def run_bands_from_folder(folder: str | Path, out_dir: str | Path, request: BandsRequest = BandsRequest()) -> dict:
    """As :func:`run_bands` for the H(R) and S(R) of a DeepH folder (``elct predict --out`` output, DFT labels,
    or any DeepH-dock/legacy folder); the electron count is ``request.n_electrons`` or the folder's
    ``occupation``. Spinful folders: collinear spin gives spin-up and spin-down bands (``bands_up.npz``,
    ``bands_down.npz``, one Fermi level), spin-orbit the 2 n_ao spinor bands (``elct_jax.analysis.spin_bands``)."""
    from elct_jax.data.dataset_dir import read_record

    record = read_record(Path(folder), require=("hamiltonian", "overlap"))
    _check_periodic(record.structure, str(folder))
    n_el = request.n_electrons or record.dft.get("n_electrons")
    if n_el is None and request.fermi_ev is None:
        raise ValueError(f"{folder}: info.json has no 'occupation' (electron count); pass --n-electrons or --fermi")
    return _bands_report(band_channels(record, str(folder)), record.structure, n_el, out_dir, request, {})


def _check_periodic(structure, where: str) -> None:
    if not structure.is_periodic:
        raise ValueError(f"{where} is a molecule (no periodic direction); elct bands needs a crystal")


def _bands_report(channels: BandChannels, structure, n_el, out_dir: str | Path, request: BandsRequest,
                  times: dict) -> dict:
    """Fermi level (shared by the channels), bands of each channel along the path, files under ``out_dir``
    (``bands.npz``, or ``bands_<channel>.npz`` per spin of a collinear magnet; one ``bands.png``) and the summary
    (``times`` extended)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    solvers, t0 = channels.solvers, time.perf_counter()
    if request.fermi_ev is not None:
        fermi = request.fermi_ev / HARTREE_TO_EV
    else:
        fermi = fermi_level(solvers, n_el, _mesh(request.fermi_kmesh, structure.pbc), method=request.solver,
                            electrons_per_level=channels.electrons_per_level)
    times["fermi_s"], t0 = time.perf_counter() - t0, time.perf_counter()
    path = band_path(structure.lattice_ang, structure.pbc, request.path, request.npoints)
    bands = [s.bands(path.kpts_frac, request.nbands, fermi, solver=request.solver) for s in solvers]
    times["bands_s"] = time.perf_counter() - t0
    for name, b in zip(channels.names, bands):
        save_bands(out_dir / (f"bands_{name}.npz" if len(bands) > 1 else "bands.npz"), path, b)
    n_ao = solvers[0].n_ao
    plot_bands(path, bands[0], out_dir / "bands.png", title=f"{structure.n_atoms} atoms, {n_ao} orbitals"
               + ("" if channels.treatment == "none" else f", {channels.treatment} spin"),
               window_ev=_window(bands[0]), reference=bands[1] if len(bands) > 1 else None,
               names=channels.names if len(bands) > 1 else None)
    summary = dict(n_atoms=structure.n_atoms, n_ao=n_ao, n_electrons=None if n_el is None else int(n_el),
                   spin=channels.treatment, n_bands_per_k=[int(b.energies.shape[1]) for b in bands],
                   fermi_ev=fermi * HARTREE_TO_EV, solver=solvers[0].choose(request.solver), n_kpoints=len(path.x),
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


def run_command(args) -> None:
    """``elct bands`` on its parsed arguments (defined in ``elct_jax.cli.main``)."""
    from elct_jax.cli.main import initial_moments
    from elct_jax.geometry.structure import Structure
    from elct_jax.train.saved_model import load_model

    request = BandsRequest(npoints=args.npoints, nbands=None if args.nbands <= 0 else args.nbands, path=args.path,
                           fermi_ev=args.fermi, n_electrons=args.n_electrons, fermi_kmesh=tuple(args.fermi_kmesh),
                           solver=args.solver, chunk_atoms=args.chunk_atoms, xc=args.xc, pseudo=args.pseudo)
    if args.folder:
        if args.model or args.structure:
            raise ValueError("give either --folder or --model with --structure, not both")
        if args.spin is not None or args.magmom is not None:
            raise ValueError("--spin and --magmom are the input of a collinear-spin model (--model); a folder's "
                             "H(R) is already spin-resolved")
        summary = run_bands_from_folder(args.folder, args.out, request)
    elif args.model and args.structure:
        structure = Structure.read(args.structure)
        summary = run_bands(load_model(args.model), structure, args.out, request,
                            initial_moments(args, structure.n_atoms))
    else:
        raise ValueError("needs --model and --structure (predict), or --folder (a DeepH folder with "
                         "hamiltonian.h5 and overlap.h5, e.g. from elct predict)")
    print(json.dumps(summary))


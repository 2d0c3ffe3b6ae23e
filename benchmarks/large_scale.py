"""Large-scale prediction and sparse bands: time and peak memory vs number of atoms.

predict  chunked prediction (elct_jax.inference.chunked.predict_sparse) of flat graphene n x n supercells,
         ELCT preset "small" in float32 with RANDOM parameters (timing needs no training),
         gth-dzvp carbon (13 orbitals, s/p/d blocks), cutoff 6 A. Each size runs in a fresh process
         (peak RSS is that process's); compiled executables come from a persistent jit cache filled
         by the first sizes, so the times are prediction, not compilation. The scaling
         exponent is the least-squares slope of log(time) vs log(n_atoms) over the sizes >= 1000.
bands    seconds per k-point for the ``--nbands`` bands nearest the Fermi level of a large graphene
         supercell with shift-invert (one SuperLU LDL^T-like factorization + ARPACK), H(R) predicted
         by the model of ``--checkpoint`` (e.g. the one of experiments/graphene_bands.py), S(R) from
         PySCF integrals on the same pairs; Fermi level from the electron count at Gamma. Writes a
         band plot PNG.

    OMP_NUM_THREADS=1 python benchmarks/large_scale.py predict --sizes 7 12 22 39 71 122 224
    OMP_NUM_THREADS=1 python benchmarks/large_scale.py bands --checkpoint runs/graphene_bands/run --n 71
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

A_ANG = 2.46


def cpu_s() -> float:
    """CPU seconds of this process (user + system): on a shared machine, wall time is inflated by load."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def graphene(n: int):
    from elct_jax.data.sampling import make_supercell
    from elct_jax.geometry.structure import Structure

    base = Structure(("C", "C"), [[0, 0, 5], [A_ANG / 2, A_ANG / (2 * np.sqrt(3)), 5]],
                     [[A_ANG, 0, 0], [A_ANG / 2, A_ANG * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))
    return make_supercell(base, (n, n, 1))


def random_small_model(basis_name: str = "gth-dzvp"):
    import jax

    from elct_jax.geometry.basis import OrbitalBasis
    from elct_jax.config import preset
    from elct_jax.data.loader import species_index
    from elct_jax.geometry.graph import neighbor_graph
    from elct_jax.nn.model import make_predict_fn
    from elct_jax.train.saved_model import TrainedModel

    basis = OrbitalBasis.from_pyscf(basis_name, ["C"])
    config = preset("small", dtype="float32")
    init, apply = make_predict_fn(config, basis)
    cutoff = config.radial.cutoff_ang
    params = init(jax.random.PRNGKey(0), neighbor_graph(graphene(1), cutoff, species_index(basis)))
    return TrainedModel(config, basis, cutoff, params, apply)


def predict_one(n: int, chunk_atoms: int, cache_dir: str) -> dict:
    """One size, in this process. jit executables come from a persistent compilation cache that the
    first (smallest) size fills, so the time is prediction, not compilation; the time of a second,
    fully warm run of the smallest sizes is reported too."""
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from elct_jax.inference.chunked import predict_sparse

    model = random_small_model()
    s = graphene(n)
    t0, c0 = time.perf_counter(), cpu_s()
    h = predict_sparse(model, s, chunk_atoms=chunk_atoms)
    seconds, cpu = time.perf_counter() - t0, cpu_s() - c0
    row = dict(n_atoms=s.n_atoms, n_pairs=len(h.senders), seconds=seconds, cpu_seconds=cpu, store_mb=h.nbytes / 2**20,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if s.n_atoms <= 2 * chunk_atoms:
        t0 = time.perf_counter()
        predict_sparse(model, s, chunk_atoms=chunk_atoms)
        row["warm_seconds"] = time.perf_counter() - t0
    return row


def run_predict(sizes, chunk_atoms: int, cache_dir: str) -> list[dict]:
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "_one", str(n), "--chunk-atoms", str(chunk_atoms),
                              "--cache", cache_dir], capture_output=True, text=True)
        if out.returncode:
            print(json.dumps({"n": n, "error": out.stderr[-2000:]}), flush=True)
            break
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["load_average"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)
        rows.append(row)
    big = [r for r in rows if r["n_atoms"] >= 1000]
    if len(big) >= 2:
        slope = np.polyfit(np.log([r["n_atoms"] for r in big]), np.log([r["seconds"] for r in big]), 1)[0]
        mem = np.polyfit(np.log([r["n_atoms"] for r in big]), np.log([r["peak_rss_mb"] for r in big]), 1)[0]
        print(json.dumps({"time_exponent": float(slope), "peak_rss_exponent": float(mem)}))
    return rows


def run_bands(checkpoint: str, n: int, nbands: int, n_k: int, out_png: Path, chunk_atoms: int) -> dict:
    from ai2dft.pyscf_bridge.overlap import valence_electrons
    from ai2dft.units import HARTREE_TO_EV
    from elct_jax.analysis.bands import BandSolver, ShiftInvert, band_path, fermi_level, plot_bands, save_bands
    from elct_jax.inference.chunked import predict_sparse
    from elct_jax.hamiltonian.sparse import overlap_like
    from elct_jax.train.saved_model import load_model

    model = load_model(checkpoint)
    s = graphene(n)
    t = {}

    def lap(name, c0):
        t[name] = round(cpu_s() - c0, 2)
        print(json.dumps({name: t[name]}), flush=True)
        return cpu_s()

    c0 = cpu_s()
    h = predict_sparse(model, s, chunk_atoms=chunk_atoms, dtype=np.float64)
    c0 = lap("predict_cpu_s", c0)
    ovl = overlap_like(h, s, model.basis)
    c0 = lap("overlap_cpu_s", c0)
    solver = BandSolver(h, ovl)
    c0 = lap("pattern_cpu_s", c0)
    n_el = valence_electrons(s.symbols, model.basis.name, "lda")
    small = graphene(3)  # Fermi-level guess: dense solve of a small cell with the same model
    h_small = predict_sparse(model, small, dtype=np.float64)
    mesh = np.array([[a / 8, b / 8, 0.0] for a in range(8) for b in range(8)])
    guess = fermi_level(BandSolver(h_small, overlap_like(h_small, small, model.basis)),
                        valence_electrons(small.symbols, model.basis.name, "lda"), mesh, method="dense")
    fermi = fermi_level(solver, n_el, np.zeros((1, 3)), method="sparse", nbands=nbands, guess=guess)
    c0 = lap("fermi_cpu_s", c0)
    t["fermi_guess_ev"] = guess * HARTREE_TO_EV
    path = band_path(s.lattice_ang, s.pbc, "GMKG", n_k)
    per_k = []
    energies, index = [], []
    for k in path.kpts_frac:
        t0, c0 = time.perf_counter(), cpu_s()
        hk, sk = solver.matrices(k)
        c1 = cpu_s()
        si = ShiftInvert(hk, sk, fermi)
        c2 = cpu_s()
        e, idx = si.indexed(nbands)
        c3 = cpu_s()
        per_k.append(dict(k=k.tolist(), bloch_cpu_s=c1 - c0, factor_cpu_s=c2 - c1, eigsh_cpu_s=c3 - c2,
                          total_cpu_s=c3 - c0, wall_s=time.perf_counter() - t0,
                          nnz=int(hk.nnz + sk.nnz), lu_nnz=int(si.lu.L.nnz + si.lu.U.nnz)))
        energies.append(e)
        index.append(idx)
        print(json.dumps(per_k[-1]), flush=True)
    from elct_jax.analysis.bands import Bands

    bands = Bands(path.kpts_frac, np.array(energies), np.array(index), fermi)
    Path("runs").mkdir(exist_ok=True)
    save_bands(Path("runs") / "large_scale_bands.npz", path, bands)
    plot_bands(path, bands, out_png, window_ev=None,
               title=f"graphene {n}x{n}: {s.n_atoms} atoms, {solver.n_ao} orbitals, {nbands} bands nearest E_F\n"
                     f"ELCT H(R), shift-invert: {np.mean([p['total_cpu_s'] for p in per_k]):.0f} CPU s per k-point")
    return dict(n_atoms=s.n_atoms, n_ao=solver.n_ao, nbands=nbands, fermi_ev=fermi * HARTREE_TO_EV,
                cpu_s_per_kpoint=float(np.mean([p["total_cpu_s"] for p in per_k])),
                wall_s_per_kpoint=float(np.mean([p["wall_s"] for p in per_k])),
                factor_cpu_s=float(np.mean([p["factor_cpu_s"] for p in per_k])),
                eigsh_cpu_s=float(np.mean([p["eigsh_cpu_s"] for p in per_k])), **t,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, load_average=os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--sizes", type=int, nargs="+", default=[7, 12, 22, 39, 71, 122, 224], help="n of n x n supercells")
    p.add_argument("--chunk-atoms", type=int, default=256)
    p.add_argument("--cache", default="/tmp/elct_large_scale_jit_cache", help="persistent jit cache")
    p = sub.add_parser("_one")
    p.add_argument("n", type=int)
    p.add_argument("--chunk-atoms", type=int, default=256)
    p.add_argument("--cache", required=True)
    p = sub.add_parser("bands")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=71)
    p.add_argument("--nbands", type=int, default=20)
    p.add_argument("--npoints", type=int, default=4, help="k-points along G-M-K-G")
    p.add_argument("--chunk-atoms", type=int, default=512)
    p.add_argument("--png", type=Path, default=Path("docs/graphene_supercell_bands.png"))
    args = parser.parse_args()
    import ai2dft

    ai2dft.enable_float64()  # the bands and overlaps are float64 (the network runs in float32)
    if args.cmd == "_one":
        print(json.dumps(predict_one(args.n, args.chunk_atoms, args.cache)))
        return
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "load_average": os.getloadavg(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}), flush=True)
    if args.cmd == "predict":
        run_predict(args.sizes, args.chunk_atoms, args.cache)
    else:
        print(json.dumps(run_bands(args.checkpoint, args.n, args.nbands, args.npoints, args.png, args.chunk_atoms)))


if __name__ == "__main__":
    main()

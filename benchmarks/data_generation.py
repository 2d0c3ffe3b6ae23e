"""Throughput of dataset generation (structures per minute) with real PySCF labels.

Cases
  water     normal modes at 300 K around H2O, PBE/def2-SVP, density fitting, grid level 5, conv_tol 1e-10
  graphene  2x2x1 graphene supercell (8 C), LDA/gth-szv, GTH-Pade, 2x2x1 SCF k-mesh, 60 Ha multigrid,
            strain <= 2 %, displacements 0.03 A; H(R), S(R) on the automatically chosen real-space mesh

Each case first generates one structure (the setup: worker start-up and, for water, the Hessian),
then resumes the same run to ``1 + n`` structures; the rate is n / (wall time of the resumed call),
worker start-up included. The mean compute time per structure inside the workers is printed too.

    OMP_NUM_THREADS=1 python benchmarks/data_generation.py --case all --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.data.generate import Recipe, generate_dataset
from elct_jax.geometry.structure import Structure

A = 2.46


def water_case():
    base = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
    return base, Recipe("normal_modes", temperature_K=300.0, dft=DFTSettings(basis="def2-svp", xc="pbe"))


def graphene_case():
    base = Structure(("C", "C"), [[0, 0, 5], [A / 2, A / (2 * np.sqrt(3)), 5]],
                     [[A, 0, 0], [A / 2, A * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))
    dft = DFTSettings(basis="gth-szv", xc="lda", kmesh=(2, 2, 1), ke_cutoff_Ha=60)
    return base, Recipe("crystal_random", sigma_ang=0.03, strain=0.02, supercell=(2, 2, 1), dft=dft)


def run(name: str, case, n: int, workers: int, out_root: Path) -> dict:
    base, recipe = case()
    out = out_root / name
    t0 = time.perf_counter()
    generate_dataset(base, recipe, out, 1, n_workers=workers, seed=0, progress=False)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = generate_dataset(base, recipe, out, 1 + n, n_workers=workers, seed=0, progress=False)
    wall = time.perf_counter() - t0
    entries = [manifest["structures"][str(i)] for i in range(1, 1 + n)]
    statuses = [e["status"] for e in entries]
    return {
        "case": name, "n": n, "workers": workers, "setup_s": round(setup, 1), "wall_s": round(wall, 1),
        "structures_per_min": round(60 * n / wall, 2),
        "mean_seconds_per_structure_in_worker": round(float(np.mean([e["seconds"] for e in entries])), 1),
        "done": statuses.count("done"), "not_done": [s for s in statuses if s != "done"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("water", "graphene", "all"), default="all")
    parser.add_argument("--n", type=int, default=None, help="structures after the setup one (default 8 water, 4 graphene)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()
    cases = {"water": (water_case, 8), "graphene": (graphene_case, 4)}
    names = list(cases) if args.case == "all" else [args.case]
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "load_average": os.getloadavg()}))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for name in names:
            case, default_n = cases[name]
            print(json.dumps(run(name, case, args.n or default_n, args.workers, root)), flush=True)


if __name__ == "__main__":
    main()

"""Training-step throughput and memory of ELCT on water (def2-SVP) and on a 32-atom graphene cell:
supervised and label-free steps, float32 and float64, on CPU, beside the DeepH-E3 anchor.

Each (dtype, batch size) case runs in a fresh child process (so its peak RSS is its own): it labels
``batch_size`` randomly displaced waters with PySCF (PBE/def2-SVP, density fitting, grid level 3),
builds one padded batch with the DFT systems, initialises the ELCT preset and compiles the project's
``elct_jax.train.step.train_step`` once (optimizer: ``elct_jax.train.optim.make_optimizer`` defaults).
The loss weights are traced, so the same executable runs
  supervised   [w_mae, w_omega, w_sc] = [1, 0, 0]   MAE against the PySCF H
  omega        [0, 1, 0]                          label-free: Omega(H) / N_e
  omega+sc     [0, 1, 1]                          label-free: + |H - F[D(H)]|
and every step is timed (wall clock, ``block_until_ready``) after two warm-up steps; the median is
reported, with the median process CPU time per step (closer to the cost on an idle machine when the
machine is shared). Memory: the compiled step's XLA buffers (arguments + outputs + temporaries - aliased) and
the child's peak resident set size (PySCF, JAX runtime and compilation included).

``--system graphene32``: a 4x4 supercell of the 2-atom graphene cell (32 C, 128 AOs; gth-szv, GTH-PADE, LDA,
Fermi smearing 0.01 Ha, Gamma point only). Its labels come from the project's generator on a 60 Ha mesh
(the generator's accuracy check needs that mesh); the label-free terms run on the crystal Kohn-Sham layer
(H(k) = Bloch sum of the predicted H(R)) rebuilt from the record on a coarser ``--ke-cutoff`` mesh.

Anchor (quoted from DESIGN.md section 4, NOT re-measured here): DeepH-E3 (PyTorch, 2 CPU threads) on
40 displaced waters (PBE/def2-SVP) takes 244 ms per training step, 687k parameters, 583 MB.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/train_step.py
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from machine import describe

DEEPH_E3_MS = 244.0  # DESIGN.md section 4, measured earlier on this machine; quoted, not re-measured
DEEPH_E3_MB = 583.0
DEEPH_E3_PARAMS = 687_000
MODES = {"supervised": dict(mae=1.0), "omega": dict(mae=0.0, omega=1.0), "omega+sc": dict(mae=0.0, omega=1.0, sc=1.0)}


def water_batch(batch_size: int, grid_level: int, seed: int):
    """(Batch of ``batch_size`` displaced waters with H targets and DFT systems, basis)."""
    import numpy as np

    from ai2dft.pyscf_bridge.labels import DFTSettings
    from elct_jax.data.generate import label_record
    from elct_jax.data.loader import collate, make_example
    from elct_jax.data.sampling import sample_random_displacements
    from elct_jax.data.systems import system_from_record
    from elct_jax.geometry.structure import Structure

    base = Structure(("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
    rng = np.random.default_rng(seed)
    settings = DFTSettings(basis="def2-svp", xc="pbe", grid_level=grid_level)
    records = [label_record(sample_random_displacements(base, 0.05, rng), settings)[0] for _ in range(batch_size)]
    basis = records[0].basis
    examples = [make_example(r, basis, 6.0, system_from_record(r)) for r in records]
    return collate(examples, basis), basis


def graphene_batch(ke_cutoff: float):
    """(Batch of the 32-atom graphene cell with H targets and its CrystalSystem on a ``ke_cutoff`` mesh, basis)."""
    import dataclasses

    import numpy as np

    from ai2dft.pyscf_bridge.labels import DFTSettings
    from elct_jax.data.generate import label_record
    from elct_jax.data.loader import collate, make_example
    from elct_jax.data.sampling import make_supercell
    from elct_jax.data.systems import system_from_record
    from elct_jax.geometry.structure import Structure

    a = 2.46
    base = Structure(("C", "C"), [[0, 0, 5], [a / 2, a / (2 * np.sqrt(3)), 5]],
                     [[a, 0, 0], [a / 2, a * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))
    settings = DFTSettings(basis="gth-szv", xc="lda", kmesh=(1, 1, 1), ke_cutoff_Ha=60.0, smearing=("fermi", 0.01))
    record, converged = label_record(make_supercell(base, (4, 4, 1)), settings)
    if not converged:
        raise RuntimeError("the PySCF SCF of the graphene supercell did not converge")
    coarse = dataclasses.replace(record, dft={**record.dft, "ke_cutoff_Ha": ke_cutoff})
    return collate([make_example(record, record.basis, 6.0, system_from_record(coarse))], record.basis), record.basis


def n_grid_points(systems) -> int:
    """Grid points per structure of a batch's (padded, stacked) DFT systems."""
    from ai2dft.crystal import CrystalSystem

    if isinstance(systems, CrystalSystem):
        return int(systems.n_grid)
    return int(systems.weights.shape[-1])


def xla_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def run_case(preset_name: str, dtype: str, batch_size: int, grid_level: int, steps: int, system: str = "water",
             ke_cutoff: float = 20.0) -> dict:
    """Measure one case in this process; returns a JSON-ready dict."""
    import jax

    import ai2dft

    ai2dft.enable_float64()  # the DFT layer is float64; the network runs in `dtype`
    from elct_jax.config import LossWeights, OptimConfig, preset
    from elct_jax.nn.model import count_parameters, make_predict_fn
    from elct_jax.train.optim import make_optimizer
    from elct_jax.train.step import init_state, train_step

    if system == "graphene32":
        if batch_size != 1:
            raise ValueError("the graphene32 case has one structure per batch")
        batch, basis = graphene_batch(ke_cutoff)
    else:
        batch, basis = water_batch(batch_size, grid_level, seed=0)
    init, apply = make_predict_fn(preset(preset_name, dtype=dtype), basis)
    params = init(jax.random.PRNGKey(0), batch.graph)
    optimizer = make_optimizer(OptimConfig(), 1)
    state = init_state(params, optimizer)
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, LossWeights(**MODES["supervised"]).array(), apply_fn=apply,
                                optimizer=optimizer).compile()
    compile_s = time.perf_counter() - t0
    result = dict(system=system, preset=preset_name, dtype=dtype, batch_size=batch_size, grid_level=grid_level,
                  n_params=count_parameters(params), n_ao_pad=int(batch.layout.n_ao_pad),
                  n_grid_pad=n_grid_points(batch.systems), compile_s=compile_s,
                  xla_mb=xla_bytes(compiled) / 2**20, modes={})
    for mode, w in MODES.items():
        weights = LossWeights(**w).array()
        s = state
        for _ in range(2):
            s, m = compiled(s, batch, weights)
        jax.block_until_ready(m)
        times, cpu = [], []
        for _ in range(steps):
            t0, c0 = time.perf_counter(), time.process_time()
            s, m = compiled(s, batch, weights)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        result["modes"][mode] = dict(median_ms=1e3 * statistics.median(times), mean_ms=1e3 * statistics.fmean(times),
                                     min_ms=1e3 * min(times), cpu_ms=1e3 * statistics.median(cpu),
                                     loss=float(m["loss"]))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_before_compile_mb"] = rss_before_mb
    return result


def print_table(rows: list[dict]) -> None:
    head = (f"{'system':<11}{'dtype':<8}{'B':>3}{'params':>10}{'mode':>12}{'median ms':>11}{'min ms':>9}{'CPU ms':>8}"
            f"{'steps/s':>9}{'E3/ours':>9}{'XLA MB':>8}{'RSS MB':>8}{'compile s':>10}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        system = r.get("system", "water")
        for mode, t in r["modes"].items():
            ratio = f"{DEEPH_E3_MS / t['median_ms']:>9.2f}" if system == "water" else f"{'-':>9}"
            print(f"{system:<11}{r['dtype']:<8}{r['batch_size']:>3}{r['n_params']:>10}{mode:>12}{t['median_ms']:>11.1f}"
                  f"{t['min_ms']:>9.1f}{t['cpu_ms']:>8.1f}{1e3 / t['median_ms']:>9.2f}{ratio}"
                  f"{r['xla_mb']:>8.1f}{r['peak_rss_mb']:>8.0f}{r['compile_s']:>10.1f}")
    print(f"{'water':<11}{'DeepH-E3':<8}{'':>3}{DEEPH_E3_PARAMS:>10}{'supervised':>12}{DEEPH_E3_MS:>11.1f}{'':>9}{'':>8}"
          f"{1e3 / DEEPH_E3_MS:>9.2f}{1.0:>9.2f}{'':>8}{DEEPH_E3_MB:>8.0f}   (quoted from DESIGN.md, not re-measured)")
    print("median/min ms: wall clock per step; CPU ms: median process CPU time per step (less sensitive to the "
          "load of a shared machine). E3/ours = DeepH-E3 ms per step / our median wall ms (> 1: ours is faster). "
          "XLA MB: compiled step's buffers; RSS MB: peak resident memory of the case's process "
          "(PySCF + JAX + compilation).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    parser.add_argument("--system", choices=["water", "graphene32"], default="water")
    parser.add_argument("--ke-cutoff", type=float, default=20.0,
                        help="graphene32: plane-wave cutoff (Hartree) of the label-free terms' FFT mesh")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON case spec: run one case, print JSON
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_case(**json.loads(args.child))), flush=True)
        return
    print(describe())
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for dtype in args.dtypes:
        for bs in args.batch_sizes:
            spec = json.dumps(dict(preset_name=args.preset, dtype=dtype, batch_size=bs, grid_level=args.grid_level,
                                   steps=args.steps, system=args.system, ke_cutoff=args.ke_cutoff))
            out = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                raise RuntimeError(f"case {spec} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(lines[-1][len("RESULT "):]))
            r = rows[-1]
            print(f"{args.system} {dtype} B={bs}: {r['n_params']} parameters, n_ao_pad {r['n_ao_pad']}, grid {r['n_grid_pad']}, "
                  f"compile {r['compile_s']:.1f} s, peak RSS before compiling {r['rss_before_compile_mb']:.0f} MB, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print_table(rows)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

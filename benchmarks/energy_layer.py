"""Cost of the differentiable energy layer against PySCF, in one process.

For H2O, ethanol and benzene (PBE/def2-SVP, density fitting with PySCF's default auxiliary
basis, grid level 3) it times
  omega+grad  jax.jit(jax.value_and_grad(ai2dft.energy.free_energy)) at H = PySCF's Fock matrix
              (D(H), E_KS, the Mermin free energy and its gradient dOmega/dH, all of it)
  get_veff    PySCF building one Kohn-Sham potential for the same density (``mf.get_veff``:
              J by density fitting + V_xc on the grid, after a warm-up call)
  pyscf scf   a full PySCF SCF from scratch (grids, DF tensor, minao guess, conv_tol 1e-9)
  jax scf     ``ai2dft.scf.scf`` from the core Hamiltonian (compiled beforehand; tol 1e-6), not
              counting ``System.from_pyscf`` (AO values on the grid, DF tensor), timed separately
The machine is shared, so each quantity is timed as the minimum over repeats of both the process
CPU time (all threads; robust to other users' load) and the wall time, with the JAX and PySCF
calls interleaved so both see the same load. Compile times are printed separately.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/energy_layer.py
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from pyscf import dft, gto

from ai2dft import xc
from ai2dft.density import density_and_entropy
from ai2dft.energy import _density_on_grid, energy, fock, free_energy
from ai2dft.scf import scf
from ai2dft.system import System

jax.config.update("jax_enable_x64", True)

MOLECULES = {  # Angstrom
    "H2O": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "ethanol": ("C -0.0493 -0.4120 0.0000; C 1.3584 0.1500 0.0000; O -0.9818 0.6639 0.0000; "
                "H -0.2422 -1.0384 0.8819; H -0.2422 -1.0384 -0.8819; H 1.5438 0.7687 0.8831; "
                "H 1.5438 0.7687 -0.8831; H 2.0870 -0.6631 0.0000; H -1.8590 0.2614 0.0000"),
    "benzene": "; ".join(
        [f"C {1.3915 * np.cos(k * np.pi / 3):.6f} {1.3915 * np.sin(k * np.pi / 3):.6f} 0" for k in range(6)]
        + [f"H {2.4715 * np.cos(k * np.pi / 3):.6f} {2.4715 * np.sin(k * np.pi / 3):.6f} 0" for k in range(6)]),
}


def best_times(fns: dict, repeats: int) -> dict:
    """{name: (min CPU seconds, min wall seconds)} over ``repeats`` interleaved calls of each fn."""
    best = {k: [np.inf, np.inf] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            c1, w1 = time.process_time(), time.perf_counter()
            best[k] = [min(best[k][0], c1 - c0), min(best[k][1], w1 - w0)]
    return {k: tuple(v) for k, v in best.items()}


def profile_pieces(system: System, F, D, repeats: int) -> dict:
    """CPU/wall times of the parts of Omega + gradient (each jitted with the System as an argument)."""
    S = system.overlap

    def density_vjp(s, H):
        return jax.grad(lambda H: jnp.sum(F * density_and_entropy(H, S, s.n_electrons, s.sigma, s.smearing_kind)[0]))(H)

    def xc_eval(rho, sigma):
        return jnp.dot(system.weights, xc.energy_density(system.xc, rho, sigma))

    rho, grad_rho = jax.jit(_density_on_grid)(system, D)
    sigma = None if grad_rho is None else jnp.sum(grad_rho**2, axis=0)
    pieces = {"D(H)+VJP": (jax.jit(density_vjp), (system, F)), "rho on grid": (jax.jit(_density_on_grid), (system, D)),
              "xc functional": (jax.jit(xc_eval), (rho, sigma)), "E_KS": (jax.jit(energy), (system, D)),
              "E_KS+grad": (jax.jit(jax.value_and_grad(energy, argnums=1)), (system, D)),
              "fock": (jax.jit(fock), (system, D))}
    return best_times({k: (lambda f, a: lambda: jax.block_until_ready(f(*a)))(*v) for k, v in pieces.items()}, repeats)


def run_case(name: str, repeats: int, profile: bool) -> dict:
    mol = gto.M(atom=MOLECULES[name], basis="def2-svp", verbose=0)
    c0, w0 = time.process_time(), time.perf_counter()
    mf = dft.RKS(mol, xc="pbe").density_fit()
    mf.conv_tol = 1e-9
    mf.kernel()
    pyscf_scf = (time.process_time() - c0, time.perf_counter() - w0)
    assert mf.converged, f"PySCF SCF of {name} did not converge"
    dm = mf.make_rdm1()
    mf.get_veff(mol, dm)  # warm-up: caches of the DF object and the grid

    c0, w0 = time.process_time(), time.perf_counter()
    system = jax.block_until_ready(System.from_pyscf(mf))
    build = (time.process_time() - c0, time.perf_counter() - w0)
    F = jnp.asarray(mf.get_fock())
    value_and_grad = jax.jit(jax.value_and_grad(free_energy, argnums=1))
    t0 = time.perf_counter()
    omega, _ = jax.block_until_ready(value_and_grad(system, F))
    t_compile = time.perf_counter() - t0
    scf(system, tol=1e-6)  # compile
    result = scf(system, tol=1e-6)
    times = best_times({"omega": lambda: jax.block_until_ready(value_and_grad(system, F)),
                        "veff": lambda: mf.get_veff(mol, dm)}, repeats)
    times["jax_scf"] = best_times({"s": lambda: jax.block_until_ready(scf(system, tol=1e-6).energy)},
                                  max(1, repeats // 3))["s"]
    times["pyscf_scf"], times["build"] = pyscf_scf, build
    if profile:
        times.update(profile_pieces(system, F, jnp.asarray(dm), repeats))
    return dict(name=name, nao=mol.nao, ngrid=system.weights.shape[0], naux=system.cderi.shape[0],
                omega_error=float(omega) - mf.e_tot, jax_scf_error=float(result.energy) - mf.e_tot,
                jax_scf_iter=int(result.n_iter), t_compile=t_compile, times=times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")}
    return f"{cpu}, {os.cpu_count()} cores visible, jax {jax.__version__}, {threads}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="also time the parts of Omega + gradient")
    args = parser.parse_args()
    print(machine())
    rows = [run_case(name, args.repeats, args.profile) for name in args.molecules]
    print(f"load average during the run: {os.getloadavg()}")
    for which, col in (("CPU time", 0), ("wall time", 1)):
        print(f"\n{which} (min over repeats)")
        print(f"{'molecule':<9}{'nao':>5}{'ngrid':>8}{'naux':>6} | {'omega+grad':>10} {'get_veff':>9} {'ratio':>6} | "
              f"{'pyscf scf':>9} {'jax scf':>8} {'iter':>5} {'ratio':>6} | {'System':>7}")
        for r in rows:
            t = {k: v[col] for k, v in r["times"].items()}
            print(f"{r['name']:<9}{r['nao']:>5}{r['ngrid']:>8}{r['naux']:>6} | {t['omega'] * 1e3:>8.1f}ms "
                  f"{t['veff'] * 1e3:>7.1f}ms {t['omega'] / t['veff']:>6.2f} | {t['pyscf_scf']:>8.2f}s "
                  f"{t['jax_scf']:>7.2f}s {r['jax_scf_iter']:>5} {t['jax_scf'] / t['pyscf_scf']:>6.2f} | {t['build']:>6.2f}s")
    print("\nfirst ratio: (Omega value + gradient) / (one PySCF Fock build); second: JAX SCF / PySCF SCF "
          "(the JAX SCF excludes building the System: AO values on the grid, DF tensor; last column)")
    if args.profile:
        parts = ["D(H)+VJP", "rho on grid", "xc functional", "E_KS", "E_KS+grad", "fock"]
        print("\nparts, CPU time in ms: " + ", ".join(parts))
        for r in rows:
            print(f"{r['name']:<9}" + " ".join(f"{r['times'][k][0] * 1e3:>9.1f}" for k in parts))
    for r in rows:
        print(f"{r['name']}: compile {r['t_compile']:.1f} s, Omega(F_pyscf) - E_pyscf = {r['omega_error']:.1e} Ha, "
              f"JAX SCF - PySCF = {r['jax_scf_error']:.1e} Ha")


if __name__ == "__main__":
    main()

"""Cost of the differentiable energy layer against PySCF, in one process.

Molecules: H2O, ethanol and benzene (def2-SVP, density fitting with PySCF's default auxiliary basis:
def2-universal-jfit for PBE, def2-svp-jkfit for the hybrids; grid level 3), with each functional of --xc
(default PBE, PBE0 and B3LYP: the hybrids add density-fitted exact exchange to both codes). Crystal: graphene (2 C, gth-dzvp, gth-pbe, PBE, 4x4x1 Gamma-centred k-mesh,
Fermi smearing 0.01 Ha, FFTDF on the uniform mesh of --ke-cutoff, default 50 Ha). For each case it times
  omega+grad  jax.jit(jax.value_and_grad(ai2dft.free_energy)) at H = PySCF's Fock matrix (H(k) for the
              crystal): D(H), E_KS, the Mermin free energy and its gradient dOmega/dH, all of it
  get_veff    PySCF building one Kohn-Sham potential for the same density (``mf.get_veff``, after a
              warm-up call; molecules: J by density fitting + V_xc on the grid; crystal: J by FFT + V_xc
              on the same uniform mesh, every k-point). The core Hamiltonian is precomputed in both codes.
              PySCF's density matrix carries its orbitals, so its DF exchange contracts over the occupied
              orbitals only (nocc instead of nao); ai2dft's D(H) is any (smeared) density matrix
  veff(dm)    the same get_veff for the plain array (no orbitals attached), molecules only
  pyscf scf   a full PySCF SCF from scratch (RKS / KRKS: hcore, grids, DF tensor, minao guess, conv_tol 1e-9)
  jax scf     ``ai2dft.scf`` from the core Hamiltonian (compiled beforehand; tol 1e-6), not
              counting ``ai2dft.System.from_pyscf`` (AO values on the grid, DF tensor), timed separately
The same public functions serve both kinds of system (``System.from_pyscf`` of a KRKS is a CrystalSystem).
The machine is shared, so each quantity is timed as the minimum over repeats of both the process
CPU time (all threads; robust to other users' load) and the wall time, with the JAX and PySCF
calls interleaved so both see the same load. Compile times are printed separately.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/energy_layer.py [--cases graphene] [--xc pbe0]
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from pyscf import dft, gto
from pyscf.pbc import gto as pbc_gto

import ai2dft
from ai2dft import xc
from ai2dft.density import density_and_entropy
from ai2dft.energy import density_on_grid, energy, fock
from ai2dft.exchange import exchange_energy
from ai2dft.pyscf_bridge.cell import make_krks
from ai2dft.system import System
from machine import describe

ai2dft.enable_float64()

MOLECULES = {  # Angstrom
    "H2O": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "ethanol": ("C -0.0493 -0.4120 0.0000; C 1.3584 0.1500 0.0000; O -0.9818 0.6639 0.0000; "
                "H -0.2422 -1.0384 0.8819; H -0.2422 -1.0384 -0.8819; H 1.5438 0.7687 0.8831; "
                "H 1.5438 0.7687 -0.8831; H 2.0870 -0.6631 0.0000; H -1.8590 0.2614 0.0000"),
    "benzene": "; ".join(
        [f"C {1.3915 * np.cos(k * np.pi / 3):.6f} {1.3915 * np.sin(k * np.pi / 3):.6f} 0" for k in range(6)]
        + [f"H {2.4715 * np.cos(k * np.pi / 3):.6f} {2.4715 * np.sin(k * np.pi / 3):.6f} 0" for k in range(6)]),
}
GRAPHENE_A, GRAPHENE_C = 2.46, 8.0  # Angstrom; c is the slab period (vacuum ~ 8 A)
CRYSTALS = {"graphene": dict(basis="gth-dzvp", kmesh=(4, 4, 1), smearing=("fermi", 0.01))}
CASES = [*MOLECULES, *CRYSTALS]


def graphene_cell(basis: str) -> pbc_gto.Cell:
    a, c = GRAPHENE_A, GRAPHENE_C
    lattice = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    return pbc_gto.M(a=lattice, atom=[("C", (0, 0, 0)), ("C", (0, a / np.sqrt(3), 0))], basis=basis,
                     pseudo="gth-pbe", verbose=0)


def pyscf_object(name: str, ke_cutoff: float, functional: str):
    """An unconverged PySCF RKS (molecule, density fitting) or KRKS (crystal, FFTDF on the ke_cutoff mesh)."""
    if name in MOLECULES:
        return dft.RKS(gto.M(atom=MOLECULES[name], basis="def2-svp", verbose=0), xc=functional).density_fit()
    settings = CRYSTALS[name]
    return make_krks(graphene_cell(settings["basis"]), xc=functional, kmesh=settings["kmesh"],
                     smearing=settings["smearing"], ke_cutoff=ke_cutoff)


def size_of(system) -> str:
    """The sizes that set the cost: AOs, grid points, and auxiliary functions (molecule) or k-points (crystal)."""
    if isinstance(system, System):
        return f"nao {system.n_ao}, grid {system.weights.shape[0]:,}, aux {system.cderi.shape[0]}"
    mesh = "x".join(map(str, system.mesh))
    return f"nao {system.n_ao}, grid {mesh} = {system.n_grid:,}, {system.n_k} k"


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

    rho, grad_rho = jax.jit(density_on_grid)(system, D)
    sigma = None if grad_rho is None else jnp.sum(grad_rho**2, axis=0)
    pieces = {"D(H)+VJP": (jax.jit(density_vjp), (system, F)), "rho on grid": (jax.jit(density_on_grid), (system, D)),
              "xc functional": (jax.jit(xc_eval), (rho, sigma)), "E_KS": (jax.jit(energy), (system, D)),
              "E_KS+grad": (jax.jit(jax.value_and_grad(energy, argnums=1)), (system, D)),
              "fock": (jax.jit(fock), (system, D))}
    if xc.exact_exchange_fraction(system.xc):
        pieces["E_x^HF+grad"] = (jax.jit(jax.value_and_grad(exchange_energy, argnums=1)), (system.cderi, D))
    return best_times({k: (lambda f, a: lambda: jax.block_until_ready(f(*a)))(*v) for k, v in pieces.items()}, repeats)


def run_case(name: str, functional: str, repeats: int, profile: bool, ke_cutoff: float) -> dict:
    mf = pyscf_object(name, ke_cutoff, functional)
    mf.conv_tol = 1e-9
    c0, w0 = time.process_time(), time.perf_counter()
    mf.kernel()
    pyscf_scf = (time.process_time() - c0, time.perf_counter() - w0)
    assert mf.converged, f"PySCF SCF of {name} did not converge"
    dm = mf.make_rdm1()
    mf.get_veff(mf.mol, dm)  # warm-up: caches of the DF object and the grid

    c0, w0 = time.process_time(), time.perf_counter()
    system = jax.block_until_ready(ai2dft.System.from_pyscf(mf))
    build = (time.process_time() - c0, time.perf_counter() - w0)
    F = jnp.asarray(np.asarray(mf.get_fock()))
    value_and_grad = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))
    t0 = time.perf_counter()
    omega, _ = jax.block_until_ready(value_and_grad(system, F))
    t_compile = time.perf_counter() - t0
    result = jax.block_until_ready(ai2dft.scf(system, tol=1e-6))  # compiles
    calls = {"omega": lambda: jax.block_until_ready(value_and_grad(system, F)), "veff": lambda: mf.get_veff(mf.mol, dm)}
    if isinstance(system, System):
        calls["veff_plain"] = lambda: mf.get_veff(mf.mol, np.array(dm))  # no mo_coeff/mo_occ attached
    times = best_times(calls, repeats)
    times["jax_scf"] = best_times({"s": lambda: jax.block_until_ready(ai2dft.scf(system, tol=1e-6).energy)},
                                  max(1, repeats // 3))["s"]
    times["pyscf_scf"], times["build"] = pyscf_scf, build
    if profile and isinstance(system, System):
        times.update(profile_pieces(system, F, jnp.asarray(dm), repeats))
    e_free = getattr(mf, "e_free", mf.e_tot)  # Mermin free energy of smeared runs
    return dict(name=f"{name} {functional}", size=size_of(system), omega_error=float(omega) - e_free,
                jax_scf_error=float(result.free_energy) - e_free, jax_scf_iter=int(result.n_iter),
                pyscf_scf_iter=mf.cycles, t_compile=t_compile, times=times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--xc", nargs="+", default=["pbe", "pbe0", "b3lyp"],
                        help="functionals of the molecules (crystals run the semi-local ones only)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--ke-cutoff", type=float, default=50.0, help="crystal FFT mesh cutoff, Hartree")
    parser.add_argument("--profile", action="store_true", help="also time the parts of Omega + gradient (molecules)")
    args = parser.parse_args()
    print(f"{describe()}, jax {jax.__version__}")
    rows = [run_case(name, functional, args.repeats, args.profile, args.ke_cutoff) for name in args.cases
            for functional in args.xc if name in MOLECULES or not xc.exact_exchange_fraction(functional)]
    print(f"load average during the run: {os.getloadavg()}")
    width, nw = max(len(r["size"]) for r in rows), max(len(r["name"]) for r in rows) + 1
    for which, col in (("CPU time", 0), ("wall time", 1)):
        print(f"\n{which} (min over repeats)")
        print(f"{'case':<{nw}}{'size':<{width}} | {'omega+grad':>10} {'get_veff':>9} {'ratio':>6} {'veff(dm)':>9} {'ratio':>6} | "
              f"{'pyscf scf':>9} {'iter':>4} {'jax scf':>8} {'iter':>4} {'ratio':>6} | {'System':>7}")
        for r in rows:
            t = {k: v[col] for k, v in r["times"].items()}
            plain = (f"{t['veff_plain'] * 1e3:>7.1f}ms {t['omega'] / t['veff_plain']:>6.2f}" if "veff_plain" in t
                     else f"{'-':>9} {'-':>6}")
            print(f"{r['name']:<{nw}}{r['size']:<{width}} | {t['omega'] * 1e3:>8.1f}ms "
                  f"{t['veff'] * 1e3:>7.1f}ms {t['omega'] / t['veff']:>6.2f} {plain} | {t['pyscf_scf']:>8.2f}s "
                  f"{r['pyscf_scf_iter']:>4} {t['jax_scf']:>7.2f}s {r['jax_scf_iter']:>4} {t['jax_scf'] / t['pyscf_scf']:>6.2f} | "
                  f"{t['build']:>6.2f}s")
    print("\nfirst ratios: (Omega value + gradient) / (one PySCF Fock build, with the orbitals attached to dm / a plain dm); "
          "last: JAX SCF / PySCF SCF (the JAX SCF excludes building the System: AO values on the grid, DF tensor; "
          "last column)")
    parts = ["D(H)+VJP", "rho on grid", "xc functional", "E_KS", "E_KS+grad", "fock", "E_x^HF+grad"]
    profiled = [r for r in rows if parts[0] in r["times"]]
    if profiled:
        print("\nparts, CPU time in ms: " + ", ".join(parts))
        for r in profiled:
            print(f"{r['name']:<{nw}}" + " ".join(f"{r['times'][k][0] * 1e3:>9.1f}" if k in r["times"] else f"{'-':>9}"
                                                for k in parts))
    for r in rows:
        print(f"{r['name']}: compile {r['t_compile']:.1f} s, Omega(F_pyscf) - Omega_pyscf = {r['omega_error']:.1e} Ha, "
              f"JAX SCF - PySCF = {r['jax_scf_error']:.1e} Ha")


if __name__ == "__main__":
    main()

"""Variational DFT for H2O: minimize Omega(H) from the core Hamiltonian (the seed paper's Fig. 3).

H2O, PBE/def2-SVP, PySCF grid level 3 and default auxiliary basis. For each smearing width the
JAX SCF gives the reference (H_scf, D_scf, E_scf, Omega_scf); then Omega(H) is minimized from
H = hcore by
  * ai2dft.variational.minimize_free_energy (L-BFGS preconditioned by the divided differences), and
  * plain optax.lbfgs on Omega(H) (zoom line search), for comparison.
Per step it prints max|dOmega/dH|, max|H - H_scf - c S| (c: least-squares shift), max|D - D_scf|,
|E - E_scf| and |Omega - Omega_scf| (Hartree), and saves the convergence plot
experiments/out/variational_h2o.png.

    OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python experiments/variational_h2o.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ai2dft
from ai2dft import free_energy, minimize_free_energy
from ai2dft.density import density_and_entropy
from ai2dft.energy import energy
from ai2dft.scf import scf
from ai2dft.system import System
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from plotting import panel_grid, save

ai2dft.enable_float64()

SYMBOLS = ("O", "H", "H")
POSITIONS_ANGSTROM = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
OUT = Path(__file__).parent / "out"


def plain_lbfgs_path(system: System, n_steps: int):
    """H after each of n_steps optax.lbfgs steps on Omega(H) from hcore: [n_steps + 1, nao, nao]."""
    omega = lambda H: free_energy(system, H)  # noqa: E731
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(omega)

    def step(carry, _):
        H, state = carry
        value, grad = value_and_grad(H, state=state)
        updates, state = opt.update(grad, state, H, value=value, grad=grad, value_fn=omega)
        H = optax.apply_updates(H, updates)
        return (H, state), H

    H0 = system.hcore
    _, path = jax.jit(lambda H: jax.lax.scan(step, (H, opt.init(H)), None, length=n_steps))(H0)
    return jnp.concatenate([H0[None], path])


def metrics(system: System, reference, H_path):
    """Per-step errors of a path [n, nao, nao] against the SCF reference (all Hartree)."""
    S = system.overlap

    @jax.jit
    @jax.vmap
    def one(H):
        D, entropy = density_and_entropy(H, S, system.n_electrons, system.sigma, system.smearing_kind)
        e_ks = energy(system, D)
        grad = jax.grad(free_energy, argnums=1)(system, H)
        dH = H - reference.H
        shift = jnp.sum(S * dH) / jnp.sum(S * S)
        return dict(grad=jnp.max(jnp.abs(grad)), H=jnp.max(jnp.abs(dH - shift * S)),
                    D=jnp.max(jnp.abs(D - reference.D)), E=jnp.abs(e_ks - reference.energy),
                    Omega=jnp.abs(e_ks - system.sigma * entropy - reference.free_energy))

    return {k: np.asarray(v) for k, v in one(H_path).items()}


def report(label: str, m: dict, n: int) -> None:
    print(f"\n{label}")
    print(f"{'step':>4} {'|dOmega/dH|':>12} {'|H-H_scf|':>11} {'|D-D_scf|':>11} {'|E-E_scf|':>11} {'|Om-Om_scf|':>11}")
    for t in range(n):
        print(f"{t:4d} {m['grad'][t]:12.3e} {m['H'][t]:11.3e} {m['D'][t]:11.3e} {m['E'][t]:11.3e} {m['Omega'][t]:11.3e}")
    reached = np.flatnonzero(m["Omega"][:n] < 1e-6)
    print(f"-> |Omega - Omega_scf| < 1 uHa after {reached[0] if reached.size else 'no'} steps; final "
          f"|H - H_scf| = {m['H'][n - 1] * HARTREE_TO_MEV:.2e} meV, |E - E_scf| = {m['E'][n - 1] * HARTREE_TO_UHA:.2e} uHa")


def plot(curves: dict, path: Path) -> None:
    keys = [("E", "|E - E_scf| (Ha)"), ("grad", "max |dOmega/dH|"), ("H", "max |H - H_scf - cS| (Ha)"),
            ("D", "max |D - D_scf|")]
    fig, axes = panel_grid(figsize=(9, 6.5))
    for ax, (key, title) in zip(axes.ravel(), keys):
        for (label, style, color), (m, n) in curves.items():
            ax.semilogy(np.arange(n), np.maximum(m[key][:n], 1e-16), style, color=color, label=label, markersize=3)
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    save(fig, path, "H2O PBE/def2-SVP: minimizing Omega(H) from the core Hamiltonian", xlabel="step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.02], help="Fermi widths (Hartree)")
    parser.add_argument("--steps", type=int, default=60, help="steps of each optimizer")
    args = parser.parse_args()
    curves = {}
    for i, sigma in enumerate(args.sigmas):
        system = System.from_symbols(SYMBOLS, POSITIONS_ANGSTROM, "def2-svp", "pbe", smearing=("fermi", sigma))
        reference = scf(system, tol=1e-11, on_failure="raise")
        print(f"\nsigma = {sigma} Ha: SCF E = {float(reference.energy):.10f} Ha, "
              f"Omega = {float(reference.free_energy):.10f} Ha ({int(reference.n_iter)} iterations)")
        result = minimize_free_energy(system, max_iter=args.steps, gtol=1e-11)
        n = int(result.n_iter) + 1
        m = metrics(system, reference, result.H_path[:n])
        report(f"preconditioned L-BFGS (ai2dft.variational), sigma = {sigma}", m, n)
        curves[(f"precond. L-BFGS, sigma={sigma}", "o-", f"C{i}")] = (m, n)
        m = metrics(system, reference, plain_lbfgs_path(system, args.steps))
        report(f"plain optax.lbfgs, sigma = {sigma}", m, args.steps + 1)
        curves[(f"optax.lbfgs, sigma={sigma}", "--", f"C{i}")] = (m, args.steps + 1)
    plot(curves, OUT / "variational_h2o.png")


if __name__ == "__main__":
    main()

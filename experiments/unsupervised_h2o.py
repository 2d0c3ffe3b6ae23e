"""Label-free vs supervised training of the ELCT network on ONE water molecule (the neural-network DFT
paper's Fig. 4a).

H2O, PBE/def2-SVP (``--xc``: any functional of the DFT layer, e.g. b3lyp with density-fitted exact exchange),
density fitting, PySCF grid level 3. The same network (ELCT, float64 parameters,
the same random initialisation) gets the same budget in every mode: ``--steps`` Adam steps, learning
rate decayed exponentially from ``--lr`` to ``--final-lr``, by the project's training loop ``fit``
(in memory, one step per epoch; the loss weights are traced: one compilation per sc target length):

  supervised     loss = MAE(H, H_pyscf)                 (labels: PySCF's converged Fock matrix)
  omega          loss = Omega(H) / N_e                  (label-free: Mermin free energy only)
  sc             loss = |H - F[D(H)]|                   (label-free: self-consistency, F held fixed)
  omega+sc       loss = Omega(H) / N_e + |H - F[D(H)]|  (label-free: both)
  sc-diis        loss = |H - T_n(H)|                    (label-free: T_n = n Roothaan-DIIS steps from H)
  omega+sc-diis  loss = Omega(H) / N_e + |H - T_n(H)|   (label-free: both, n = ``--sc-iterations``)

The label-free modes never see H_pyscf: their MAE weight is exactly 0, so the gradient carries no
label information. Every ``--eval-every`` steps it records, against the converged PySCF SCF:
|H - H_scf| (mean over the 24 x 24 AO pairs, after removing the shift c S that Omega cannot see, and
raw), |E_KS[D(H)] - E_scf|, max |D(H) - D_scf| and the loss, prints a table and the final numbers,
and saves experiments/out/unsupervised_h2o.png.

Omega(H) depends on H only through D(H): with integer occupations (no smearing) it fixes the
occupied subspace, not the occupied-occupied or virtual-virtual blocks of H, and its gradient
chi[F - H] is damped by 1 / (e_a - e_i) for levels far from the Fermi level. From a random
initialisation Omega alone can also stall in a wrong occupation: the equivariant network gives the
C2v molecule a C2v-symmetric H, whose eigenvectors keep their irreducible representation, and the
number of occupied orbitals per irrep changes only through a level crossing at the Fermi level,
where dOmega/dH has no component pushing the levels (sigma = 0). The self-consistency residual,
differentiated with F[D(H)] held fixed (``elct_jax.train.losses``), moves H along H - F, the
preconditioned Omega gradient, and pins every block of H at the SCF fixed point; Omega drives the
energy down early, which finds the right occupation. The "final D(H)" line names the SCF orbitals
that the network's D(H) leaves empty or fills.

With the one-step target F[D(H)] the residual is (1 - K chi)(H - H_scf) near the solution: it weighs
the error through the dielectric operator, and at a finite budget training settles ~5x above supervised
in |H - H_scf|. The target T_n of n warm-started Roothaan-DIIS steps (each one Fock build, no gradient)
is the SCF solution to within the DIIS contraction, so the residual becomes |H - H_scf| itself and
label-free training converges like supervised training, with Omega still steering the occupation.
With exact exchange (``--xc b3lyp``) one run of the decaying schedule stalls once the occupation is found; a
second run from its ``--save-params`` file (``--init-from``: a fresh Adam state, e.g. ``--lr 1e-3``), or from a
PBE label-free model, removes the stall (benchmarks/RESULTS.md, "The same with B3LYP").

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python experiments/unsupervised_h2o.py
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import serialization

import ai2dft
from ai2dft import density_matrix
from ai2dft.energy import energy
from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.config import LossWeights, OptimConfig, TrainConfig, preset
from elct_jax.data.generate import label_record
from elct_jax.data.loader import Batch, collate, make_example
from elct_jax.data.systems import system_from_record
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.hamiltonian.blocks import blocks_to_dense, dict_to_dense
from elct_jax.nn.model import count_parameters, make_predict_fn
from elct_jax.geometry.structure import Structure
from elct_jax.analysis.curve import History
from elct_jax.train.loop import fit
from plotting import training_curves
from schedule import add_schedule_arguments, describe, optim_config
from tables import final_table, step_table

ai2dft.enable_float64()

WATER = Structure(("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
MODES = {"supervised": LossWeights(mae=1.0), "omega": LossWeights(mae=0.0, omega=1.0),
         "sc": LossWeights(mae=0.0, sc=1.0), "omega+sc": LossWeights(mae=0.0, omega=1.0, sc=1.0),
         "sc-diis": LossWeights(mae=0.0, sc=1.0), "omega+sc-diis": LossWeights(mae=0.0, omega=1.0, sc=1.0)}
OUT = Path(__file__).parent / "out"


@dataclasses.dataclass(frozen=True)
class Reference:
    """The converged PySCF SCF of the structure (PySCF AO order, Hartree)."""

    H: np.ndarray        # [nao, nao] Fock matrix
    S: np.ndarray        # [nao, nao] overlap
    D: np.ndarray        # [nao, nao] D(H) by ai2dft
    energy: float        # E_KS[D(H)] by ai2dft
    e_pyscf: float       # PySCF's e_tot


def water_problem(grid_level: int, cutoff_ang: float, smearing: float, xc: str = "pbe"):
    """(Batch with the DFT system and the H target, Reference, basis) for the water molecule at functional xc;
    smearing: Fermi-Dirac width in Hartree (0: integer occupations), for the reference and Omega alike."""
    settings = DFTSettings(basis="def2-svp", xc=xc, grid_level=grid_level, conv_tol=1e-12,
                           smearing=("fermi", smearing) if smearing > 0 else None)
    record, converged = label_record(WATER, settings)
    if not converged:
        raise RuntimeError("the PySCF reference SCF did not converge")
    system = system_from_record(record)
    batch = collate([make_example(record, record.basis, cutoff_ang, system)], record.basis)
    H = dict_to_dense(record.matrices["hamiltonian"], record.basis, WATER.symbols)
    S = dict_to_dense(record.matrices["overlap"], record.basis, WATER.symbols)
    D = density_matrix(system, jnp.asarray(H))
    ref = Reference(H, S, np.asarray(D), float(energy(system, D)), float(record.dft["e_tot_hartree"]))
    return batch, ref, record.basis


def make_hamiltonian_fn(apply, n_ao: int):
    """hamiltonian(params, batch) -> the network's dense H [n_ao, n_ao] of the batch's structure, PySCF order."""

    def hamiltonian(params, batch: Batch):
        onsite, edges = apply(params, batch.graph)
        return blocks_to_dense(onsite, edges, batch.layout, order="pyscf")[0, :n_ao, :n_ao]

    return hamiltonian


def make_metrics_fn(hamiltonian):
    """metrics(params, batch, H_ref, S, D_ref, E_ref) -> dict of Hartree errors (jitted)."""

    @jax.jit
    def metrics(params, batch: Batch, H_ref, S, D_ref, E_ref):
        H = hamiltonian(params, batch)
        system = jax.tree.map(lambda x: x[0], batch.systems)
        D = density_matrix(system, H)
        dH = H - H_ref
        shift = jnp.sum(dH * S) / jnp.sum(S * S)  # elct_jax.analysis.evaluate.shift_aligned, in jnp
        occupied_overlap = jnp.trace(D @ S @ D_ref @ S) / (2 * system.n_electrons)  # 1: same occupied space
        return dict(H_aligned=jnp.mean(jnp.abs(dH - shift * S)), H_raw=jnp.mean(jnp.abs(dH)),
                    E=energy(system, D) - E_ref, D=jnp.max(jnp.abs(D - D_ref)), occ=occupied_overlap, shift=shift)

    return metrics


def occupation_diagnosis(D: np.ndarray, ref: Reference, n_electrons: float) -> str:
    """Which SCF orbitals a density matrix D [nao, nao] leaves empty or fills: weight
    w_k = (c_k^T S D S c_k) / 2 of each reference orbital c_k (eigenvector of H_scf; 1 occupied, 0 empty)."""
    eps, C = scipy.linalg.eigh(ref.H, ref.S)
    w = np.diag(C.T @ ref.S @ D @ ref.S @ C) / 2
    n_occ = int(round(n_electrons / 2))
    empty = [f"#{k + 1} ({eps[k]:.3f} Ha, w={w[k]:.2f})" for k in range(n_occ) if w[k] < 0.5]
    filled = [f"#{k + 1} ({eps[k]:.3f} Ha, w={w[k]:.2f})" for k in range(n_occ, len(eps)) if w[k] > 0.5]
    if not empty and not filled:
        return f"occupies the SCF's {n_occ} lowest orbitals (min weight {w[:n_occ].min():.4f})"
    return f"SCF orbitals left empty: {', '.join(empty)}; SCF virtuals occupied: {', '.join(filled)}"


def run_mode(mode: str, params0, batch: Batch, ref: Reference, apply, optim: OptimConfig, steps: int,
             eval_every: int, hamiltonian, metrics_fn, sc_iterations: int) -> dict:
    """Train from params0 in one mode for ``steps`` optimizer steps (sc target: ``sc_iterations`` DIIS steps
    in the "-diis" modes, F[D(H)] otherwise); returns the history (numpy arrays, Hartree), timings and the
    final parameters (``"params"``)."""
    args = tuple(jnp.asarray(x) for x in (ref.H, ref.S, ref.D, ref.energy))
    recorder = History(lambda params: metrics_fn(params, batch, *args), params0, eval_every, steps)
    config = TrainConfig(run_dir="", epochs=steps, weights=MODES[mode], optim=optim, progress=False,
                         sc_iterations=sc_iterations if mode.endswith("-diis") else 1)
    state = fit(apply, params0, [batch], [], config, callbacks=[recorder])
    history = recorder.arrays()
    history["seconds_per_step"] = sum(recorder.step_seconds[1:]) / max(steps - 1, 1)
    history["seconds_first_step"] = recorder.step_seconds[0]  # compilation included when first of its sc target
    system = jax.tree.map(lambda x: x[0], batch.systems)
    D = np.asarray(density_matrix(system, jax.jit(hamiltonian)(state.params, batch)))
    history["occupation"] = occupation_diagnosis(D, ref, float(system.n_electrons))
    history["params"] = state.params
    return history


def report(mode: str, h: dict) -> None:
    print(f"\n{mode}  ({h['seconds_per_step'] * 1e3:.0f} ms per step; first step {h['seconds_first_step']:.1f} s)")
    print(step_table(h, [("loss", "loss", 1.0, "14.8f"), ("|H-H_scf|* meV", "H_aligned", HARTREE_TO_MEV, "15.4f"),
                         ("|H-H_scf| meV", "H_raw", HARTREE_TO_MEV, "14.3f"), ("E-E_scf uHa", "E", HARTREE_TO_UHA, "13.3f"),
                         ("max|D-D_scf|", "D", 1.0, "13.3e"), ("occ. overlap", "occ", 1.0, "13.6f")]))
    print(f"final D(H): {h['occupation']}")


def summary(histories: dict) -> str:
    best_E = lambda h: np.min(np.abs(h["E"][1:]))  # noqa: E731
    return final_table(histories, [("|H-H_scf|* meV", "H_aligned", HARTREE_TO_MEV, "15.4f"),
                                   ("|H-H_scf|* uHa", "H_aligned", HARTREE_TO_UHA, "15.2f"),
                                   ("|H-H_scf| meV", "H_raw", HARTREE_TO_MEV, "14.3f"),
                                   ("E-E_scf uHa", "E", HARTREE_TO_UHA, "12.4f"),
                                   ("max|D-D_scf|", "D", 1.0, "13.3e"),
                                   ("best |E-E_scf| uHa", best_E, HARTREE_TO_UHA, "19.4f")],
                       "*: after removing the constant shift c*S (Omega(H + cS) = Omega(H)); means over all AO pairs; "
                       "E = E_KS[D(H)]")


def plot(histories: dict, path: Path, title: str) -> None:
    panels = [("H_aligned", HARTREE_TO_MEV, "|H - H_scf| after shift alignment (meV)"),
              ("E", HARTREE_TO_UHA, "|E_KS[D(H)] - E_scf| (micro-Hartree)"),
              ("D", 1.0, "max |D(H) - D_scf|"),
              ("H_raw", HARTREE_TO_MEV, "|H - H_scf| without alignment (meV)")]
    training_curves(histories, panels, path, title, hline=("E", 1.0, "1 uHa"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--preset", default="tiny", help="ELCT preset (float64 parameters)")
    add_schedule_arguments(parser, steps=2000, lr=1e-2, final_lr=1e-5)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--sc-iterations", type=int, default=8, help="Roothaan-DIIS steps of the -diis modes' target")
    parser.add_argument("--xc", default="pbe", help="functional of the labels and of Omega (pbe, b3lyp, pbe0, ...)")
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=6.0, help="graph cutoff, Angstrom")
    parser.add_argument("--smearing", type=float, default=0.0, help="Fermi-Dirac width, Hartree (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="plot; default experiments/out/unsupervised_h2o[_XC].png")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start every mode from these parameters (flax msgpack written by --save-params, same "
                             "--preset) instead of the random initialisation; e.g. a PBE label-free model for --xc b3lyp")
    parser.add_argument("--save-params", type=Path, default=None,
                        help="write the last mode's final parameters here (flax msgpack)")
    args = parser.parse_args()
    out = args.out or OUT / ("unsupervised_h2o.png" if args.xc == "pbe" else f"unsupervised_h2o_{args.xc}.png")

    batch, ref, basis = water_problem(args.grid_level, args.cutoff, args.smearing, args.xc)
    print(f"H2O {args.xc.upper()}/def2-SVP, grid level {args.grid_level}, smearing {args.smearing} Ha: PySCF E = {ref.e_pyscf:.10f} Ha, "
          f"E_KS[D(H_pyscf)] (ai2dft) = {ref.energy:.10f} Ha (difference {(ref.energy - ref.e_pyscf) * HARTREE_TO_UHA:.3f} uHa)")
    eps = scipy.linalg.eigh(ref.H, ref.S, eigvals_only=True)
    print("SCF orbital energies (Ha), 5 occupied | 3 lowest virtual: "
          + " ".join(f"{e:.4f}" for e in eps[:5]) + " | " + " ".join(f"{e:.4f}" for e in eps[5:8]))
    config = preset(args.preset, dtype="float64")
    init, apply = make_predict_fn(config, basis)
    params0 = init(jax.random.PRNGKey(args.seed), batch.graph)
    if args.init_from is not None:
        params0 = serialization.from_bytes(params0, args.init_from.read_bytes())
        print(f"parameters from {args.init_from}")
    print(f"ELCT preset {args.preset!r}, float64, {count_parameters(params0)} parameters; {describe(args)}")
    optim = optim_config(args)
    hamiltonian = make_hamiltonian_fn(apply, ref.H.shape[0])
    metrics_fn = make_metrics_fn(hamiltonian)
    histories = {}
    for mode in args.modes:
        histories[mode] = run_mode(mode, params0, batch, ref, apply, optim, args.steps,
                                   args.eval_every, hamiltonian, metrics_fn, args.sc_iterations)
        report(mode, histories[mode])
    if args.save_params is not None:
        args.save_params.write_bytes(serialization.to_bytes(jax.tree.map(np.asarray, histories[args.modes[-1]]["params"])))
    budget = f"Adam {args.steps} steps"
    print(f"\nfinal ({budget}):\n{summary(histories)}")
    plot(histories, out, f"ELCT ({args.preset}, float64) on one H2O, {args.xc.upper()}/def2-SVP: label-free vs supervised, "
                         f"{budget}")


if __name__ == "__main__":
    main()

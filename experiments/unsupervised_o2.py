"""Label-free vs supervised training of the collinear-spin ELCT network on ONE O2 triplet (issue 16, point 7).

O2 at 1.21 A, 2S = 2 (triplet, N_alpha = 9, N_beta = 7 held fixed), UKS PBE with density fitting (basis
``--basis``, STO-3G by default to fit a few CPU minutes), PySCF grid ``--grid-level``. The labels are those of ``elct data generate
--spin 2`` (a collinear spinful record, initial moments 1 Bohr magneton per atom), the DFT system the record's
``ai2dft.SpinSystem``. The same collinear network (ModelConfig.spin = "collinear", float64, one random
initialisation) gets the same budget in every mode: ``--steps`` Adam steps, learning rate decayed exponentially
from ``--lr`` to ``--final-lr``, through the project's one loop ``fit`` (in memory, one step per epoch):

  supervised     loss = MAE(H_up/down, UKS labels)
  sc-diis        loss = |H - T_n(H)|                   (label-free; T_n: n Roothaan-DIIS steps from H, held fixed)
  omega+sc-diis  loss = Omega(H) / N_e + |H - T_n(H)|  (label-free)
  omega+sc       loss = Omega(H) / N_e + |H - F[D(H)]| (label-free, one-step target)

as in experiments/unsupervised_h2o.py, whose discussion of the terms carries over per spin. Every ``--eval-every``
steps it records, against the converged UKS labels: |H - H_scf| (mean over both spins and all AO pairs, after
removing a shift c_s S per spin, which Omega at fixed N_alpha, N_beta cannot see; and raw), E_KS[D(H)] - E_scf and
max |D(H) - D_scf|; it prints a table, the final numbers, and saves experiments/out/unsupervised_o2.png.

When the DIIS target reaches the SCF solution, T_8(H) = H_scf, the L1 residual over the dense [2, nao, nao] is the
MAE over the blocks entry for entry (for O2 every atom pair is a block) and its gradient sign(H - H_scf) is the
supervised one: at STO-3G sc-diis retraced the supervised run (equal losses and errors to all printed digits at every
evaluation), without a label. Omega adds the energy gradient on top (results in benchmarks/RESULTS.md).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python experiments/unsupervised_o2.py
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ai2dft
from ai2dft import density_matrix, energy
from ai2dft.pyscf_bridge.labels import DFTSettings
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.analysis.curve import History
from elct_jax.config import LossWeights, OptimConfig, TrainConfig, preset
from elct_jax.data.generate import label_record
from elct_jax.data.loader import Batch, collate, make_example
from elct_jax.data.systems import system_from_record
from elct_jax.geometry.structure import Structure
from elct_jax.nn.model import count_parameters, make_predict_fn
from elct_jax.train.losses import system_hamiltonians
from elct_jax.train.loop import fit
from plotting import training_curves
from schedule import add_schedule_arguments, describe, optim_config
from tables import final_table, step_table

ai2dft.enable_float64()

O2 = Structure(("O", "O"), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.21]]))
MODES = {"supervised": LossWeights(mae=1.0), "sc-diis": LossWeights(mae=0.0, sc=1.0),
         "omega+sc-diis": LossWeights(mae=0.0, omega=1.0, sc=1.0), "omega+sc": LossWeights(mae=0.0, omega=1.0, sc=1.0)}
OUT = Path(__file__).parent / "out"


@dataclasses.dataclass(frozen=True)
class Reference:
    """The converged UKS labels (PySCF AO order, Hartree)."""

    H: np.ndarray        # [2, P, P] Fock matrices (alpha, beta), padded to the batch's P AOs (padding level)
    S: np.ndarray        # [P, P] overlap (1 on padded AOs)
    D: np.ndarray        # [2, P, P] D(H) by ai2dft (zero on padded AOs)
    n_ao: int            # real AOs (the leading ones)
    energy: float        # E_KS[D(H)] by ai2dft
    e_pyscf: float       # PySCF's e_tot


def o2_problem(basis: str, grid_level: int, cutoff_ang: float):
    """(Batch with the SpinSystem and the collinear H target, Reference, OrbitalBasis) of the O2 triplet."""
    record, converged = label_record(O2, DFTSettings(basis=basis, xc="pbe", spin=2, grid_level=grid_level,
                                                     conv_tol=1e-12))
    if not converged:
        raise RuntimeError("the PySCF UKS reference did not converge")
    batch = collate([make_example(record, record.basis, cutoff_ang, system_from_record(record), spin="collinear")],
                    record.basis)
    system = jax.tree.map(lambda x: x[0], batch.systems)  # padded to the batch's AO count
    H = system_hamiltonians(batch.systems, *batch.targets["hamiltonian"], batch.layout)[0]
    D = density_matrix(system, H)
    ref = Reference(np.asarray(H), np.asarray(system.base.overlap), np.asarray(D),
                    int(record.basis.ao_offsets(O2.symbols)[-1]), float(energy(system, D)),
                    float(record.dft["e_tot_hartree"]))
    return batch, ref, record.basis


def make_metrics_fn(apply, n_ao: int):
    """metrics(params, batch, H_ref, S, D_ref, E_ref) -> dict of Hartree errors over the n_ao real AOs (jitted)."""

    @jax.jit
    def metrics(params, batch: Batch, H_ref, S, D_ref, E_ref):
        onsite, edges = apply(params, batch.graph)
        H = system_hamiltonians(batch.systems, onsite, edges, batch.layout)[0]
        system = jax.tree.map(lambda x: x[0], batch.systems)
        D = density_matrix(system, H)
        dH, S = (H - H_ref)[:, :n_ao, :n_ao], S[:n_ao, :n_ao]
        shift = jnp.einsum("sij,ij->s", dH, S) / jnp.sum(S * S)  # one c_s per spin
        return dict(H_aligned=jnp.mean(jnp.abs(dH - shift[:, None, None] * S)), H_raw=jnp.mean(jnp.abs(dH)),
                    E=energy(system, D) - E_ref, D=jnp.max(jnp.abs(D - D_ref)))

    return metrics


def run_mode(mode: str, params0, batch: Batch, ref: Reference, apply, optim: OptimConfig, steps: int,
             eval_every: int, metrics_fn, sc_iterations: int) -> dict:
    """Train from params0 in one mode for ``steps`` optimizer steps; the history (numpy, Hartree) and timings."""
    args = tuple(jnp.asarray(x) for x in (ref.H, ref.S, ref.D, ref.energy))
    recorder = History(lambda params: metrics_fn(params, batch, *args), params0, eval_every, steps)
    config = TrainConfig(run_dir="", epochs=steps, weights=MODES[mode], optim=optim, progress=False,
                         sc_iterations=sc_iterations if mode.endswith("-diis") else 1)
    cpu = time.process_time()
    fit(apply, params0, [batch], [], config, callbacks=[recorder])
    history = recorder.arrays()
    history["cpu_seconds"] = time.process_time() - cpu
    history["seconds_per_step"] = sum(recorder.step_seconds[1:]) / max(steps - 1, 1)
    return history


def run_modes(args, params0, batch: Batch, ref, apply, optim: OptimConfig, metrics_fn, columns) -> dict:
    """``run_mode`` for each of ``args.modes`` from the same params0 (``args``: steps, eval_every, sc_iterations),
    printing each mode's step table with ``columns``; {mode: history}."""
    histories = {}
    for mode in args.modes:
        histories[mode] = h = run_mode(mode, params0, batch, ref, apply, optim, args.steps, args.eval_every,
                                       metrics_fn, args.sc_iterations)
        print(f"\n{mode}  ({h['seconds_per_step'] * 1e3:.0f} ms per step, {h['cpu_seconds']:.0f} CPU s in all)")
        print(step_table(h, [("loss", "loss", 1.0, "14.8f")] + columns))
    return histories


COLUMNS = [("|H-H_scf|* meV", "H_aligned", HARTREE_TO_MEV, "15.4f"), ("|H-H_scf| meV", "H_raw", HARTREE_TO_MEV, "14.3f"),
           ("E-E_scf uHa", "E", HARTREE_TO_UHA, "13.3f"), ("max|D-D_scf|", "D", 1.0, "13.3e")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["supervised", "omega+sc-diis", "sc-diis"], choices=list(MODES))
    parser.add_argument("--basis", default="sto-3g")
    parser.add_argument("--preset", default="tiny", help="ELCT preset (float64 parameters)")
    add_schedule_arguments(parser, steps=600, lr=1e-2, final_lr=1e-4)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--sc-iterations", type=int, default=8, help="Roothaan-DIIS steps of the -diis modes' target")
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=6.0, help="graph cutoff, Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT / "unsupervised_o2.png")
    args = parser.parse_args()

    batch, ref, basis = o2_problem(args.basis, args.grid_level, args.cutoff)
    print(f"O2 triplet UKS PBE/{args.basis}, grid level {args.grid_level}: PySCF E = {ref.e_pyscf:.10f} Ha, "
          f"E_KS[D(H_pyscf)] (ai2dft) = {ref.energy:.10f} Ha (difference {(ref.energy - ref.e_pyscf) * HARTREE_TO_UHA:.3f} uHa)")
    init, apply = make_predict_fn(preset(args.preset, dtype="float64", spin="collinear"), basis)
    params0 = init(jax.random.PRNGKey(args.seed), batch.graph)
    print(f"ELCT preset {args.preset!r}, collinear spin, float64, {count_parameters(params0)} parameters; {describe(args)}")
    optim = optim_config(args)
    metrics_fn = make_metrics_fn(apply, ref.n_ao)
    histories = run_modes(args, params0, batch, ref, apply, optim, metrics_fn, COLUMNS)
    print(f"\nfinal (Adam {args.steps} steps):\n" + final_table(
        histories, COLUMNS + [("CPU s", lambda h: h["cpu_seconds"], 1.0, "8.0f")],
        "*: after removing a constant shift c_s*S per spin; means over both spins and all AO pairs; E = E_KS[D(H)]"))
    panels = [("H_aligned", HARTREE_TO_MEV, "|H - H_scf| after shift alignment (meV)"),
              ("E", HARTREE_TO_UHA, "|E_KS[D(H)] - E_scf| (micro-Hartree)"), ("D", 1.0, "max |D(H) - D_scf|"),
              ("H_raw", HARTREE_TO_MEV, "|H - H_scf| without alignment (meV)")]
    training_curves(histories, panels, args.out, f"collinear ELCT ({args.preset}) on the O2 triplet, PBE/{args.basis}: "
                                                 f"label-free vs supervised, Adam {args.steps} steps",
                    hline=("E", 1.0, "1 uHa"))


if __name__ == "__main__":
    main()

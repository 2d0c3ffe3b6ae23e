"""Label-free vs supervised training of the ELCT network on ONE bcc sodium crystal (the neural-network DFT
paper's bcc-Na case), through the crystal Kohn-Sham layer.

bcc Na, conventional cubic cell (2 atoms, a = 4.23 A), LDA, GTH-PADE-q1 pseudopotential (3s valence, 1
electron per atom), gth-szv Gaussians (5 AOs per atom), Fermi-Dirac smearing 0.01 Ha, Gamma-centred
``--kmesh`` (default 2x2x2), FFT mesh of ``--ke-cutoff`` Ha (default 90: the tight
s and p Gaussians of gth-szv (exponent 17.7) need it for the FFT grid of the training system to agree with
PySCF's multigrid labels: their SCF solutions differ by 57 / 11.7 / 1.3 / 0.35 meV (mean over H(k)) at
30 / 60 / 90 / 120 Ha, in the empty tight-function levels, which Omega hardly sees). The reference is the project's own label
generator (``elct_jax.data.generate.label_record``: PySCF KRKS, unaliased H(R) on a Born-von Karman
supercell covering every block with overlap > 1e-10); the training system is rebuilt from that record
(``elct_jax.data.systems.system_from_record``). The same network (ELCT, float64 parameters, one random
initialisation, radial cutoff = graph cutoff, edge head initialised at ``--edge-init-scale``) gets the
same budget in each mode: ``--steps`` Adam steps, learning rate decayed exponentially from ``--lr`` to
``--final-lr``, by the project's training loop ``fit`` (in memory, one step per epoch; H(k) = Bloch sum of
the predicted H(R); the loss weights are traced; the self-consistency target is ``--sc-iterations``
Roothaan-DIIS steps from H):

  supervised    loss = MAE(H(R), H_pyscf(R))                (labels)
  omega         loss = Omega(H) / N_e                       (label-free: Mermin free energy per electron)
  omega+sc      loss = Omega(H) / N_e + |H(k) - T(H)(k)|    (label-free: + self-consistency residual)
  sc            loss = |H(k) - T(H)(k)|                    (label-free: self-consistency alone)

(|H(k) - T(H)(k)| is measured in the AO basis and in the orthonormal basis of S(k); see
``elct_jax.train.losses`` for why the AO basis alone put a level 14 eV low at 4x4x4.)

Every ``--eval-every`` steps it records, against the reference: |H(R) - H_scf(R)| (mean over the graph's
blocks, after removing the shift c S that Omega cannot see, and raw), |H(k) - H_own(k)| at the training
k-points against the training system's own SCF solution (shift-aligned), the free-energy error per cell
Omega(H) - Omega(H_scf) (both on the training system; H_scf with all its blocks), and the Fermi-level
error of H(k) aligned to H_scf(k) by the same shift, and the worst error of a band below E_F + 1.36 eV
(every band measured from its own Fermi level, at every training k); prints a table and the final numbers,
saves experiments/out/unsupervised_na.png.

What label-free training can determine: Omega and the self-consistency residual see H only through
H(k) at the nk training k-points, i.e. through the nk lattice sums sum_R' H(R + R') over the
Born-von Karman supercell of the k-mesh. The graph's H(R) (180 neighbours per atom at 12 A; 8 supercell
translations at 2x2x2) is therefore not determined by the functional: two networks with the same H(k)
at the mesh are equally good to it. The comparison with supervised training is made on what the
functional fixes (H(k) at the mesh, Omega, E_F); |H(R) - H_scf(R)| is printed for both, and for the
label-free modes it measures only how the network's inductive bias splits H(k) over neighbours.

The network's H(R) vanishes beyond the graph cutoff, so even a perfect network is off by the truncation
of H_scf to the graph (printed as the "floor"); the diffuse Na 3s needs a cutoff of ~12 A for < 1 uHa.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python experiments/unsupervised_na.py [--kmesh 4 --modes supervised sc]

(2x2x2, four modes: ~12 min on 2 cores; 4x4x4, supervised and sc: ~23 min, the case where H(R) is determined.)
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
from ai2dft import crystal_energy, smearing
from ai2dft.kind import density_and_entropy_of
from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.config import LossWeights, OptimConfig, RadialConfig, TrainConfig, preset
from elct_jax.data.generate import label_record
from elct_jax.data.loader import Batch, collate, make_example
from elct_jax.data.systems import system_from_record
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.geometry.graph import neighbor_graph
from elct_jax.hamiltonian.blocks import block_layout, blocks_from_dict, bloch_sum
from elct_jax.nn.model import count_parameters, make_predict_fn
from elct_jax.geometry.structure import Structure
from elct_jax.train.losses import bloch_hamiltonians, self_consistency_residual
from elct_jax.analysis.curve import History
from elct_jax.train.loop import fit
from plotting import training_curves
from tables import final_table, step_table

ai2dft.enable_float64()

A_ANG = 4.23
NA = Structure(("Na", "Na"), [[0.0, 0.0, 0.0], [A_ANG / 2] * 3], np.eye(3) * A_ANG, (True, True, True))
MODES = {"supervised": LossWeights(mae=1.0), "omega": LossWeights(mae=0.0, omega=1.0),
         "omega+sc": LossWeights(mae=0.0, omega=1.0, sc=1.0), "sc": LossWeights(mae=0.0, sc=1.0)}
OUT = Path(__file__).parent / "out"
BAND_WINDOW_HA = 0.05  # band_error covers the bands below E_F + 1.36 eV


@dataclasses.dataclass(frozen=True)
class Reference:
    """The PySCF reference on the training system (Hartree, per cell)."""

    H_k: np.ndarray      # [nk, nao, nao] Bloch sum of ALL stored H(R) blocks at the training k-points
    H_own: np.ndarray    # [nk, nao, nao] the training system's own SCF solution (ai2dft crystal SCF from H_k)
    eps_own: np.ndarray  # [nk, nao] its band energies
    mu_own: float        # its Fermi level
    omega: float         # Omega(H_k) on the training system
    mu: float            # Fermi level of H_k
    omega_graph: float   # Omega of H_scf(R) truncated to the training graph (the floor of any network)
    e_pyscf: float       # PySCF's e_tot (multigrid)


def band_energies(system, H_k) -> jax.Array:
    """[nk, nao] band energies (Hartree, ascending) of H(k) [nk, nao, nao] in the basis PySCF keeps
    (``effective_hamiltonian``; dropped directions sit far above)."""
    X = system.s_inv_sqrt
    H_orth = jnp.conj(jnp.swapaxes(X, -1, -2)) @ crystal_energy.effective_hamiltonian(system, H_k) @ X
    return jnp.linalg.eigvalsh(H_orth)


def fermi_level(system, eps) -> jax.Array:
    """[] chemical potential (Hartree) of the bands ``eps`` [nk, nao] at the system's electron count and smearing."""
    weights = 2.0 * system.kweights[:, None]
    return smearing.chemical_potential(system.smearing_kind, eps, weights, system.n_electrons, system.sigma)


def band_error(eps, mu, eps_ref, mu_ref, window) -> jax.Array:
    """[] max |(eps - mu) - (eps_ref - mu_ref)| (Hartree) over k and the bands below mu + window in either
    [nk, nao] set: the worst error of an occupied or near-Fermi band (a spurious level pulled below E_F
    included), both measured from their own Fermi level."""
    near = (eps_ref < mu_ref + window) | (eps < mu + window)
    return jnp.max(jnp.where(near, jnp.abs((eps - mu) - (eps_ref - mu_ref)), 0.0))


def na_problem(args):
    """(record, system, Batch with the H and S targets on the training graph, Reference)."""
    settings = DFTSettings(basis="gth-szv", xc="lda", pseudo="gth-pade-q1", kmesh=(args.kmesh,) * 3,
                           ke_cutoff_Ha=args.ke_cutoff, smearing=("fermi", args.sigma), conv_tol=1e-11)
    t0 = time.perf_counter()
    record, converged = label_record(NA, settings)
    if not converged:
        raise RuntimeError("the PySCF reference KRKS did not converge")
    system = system_from_record(record)
    print(f"reference: PySCF KRKS + real-space blocks {time.perf_counter() - t0:.0f} s, "
          f"{len(record.matrices['hamiltonian'])} blocks (realspace k-mesh {record.dft['realspace_kmesh']}); {system!r}")
    batch = collate([make_example(record, record.basis, args.cutoff, system)], record.basis)
    omega = jax.jit(ai2dft.free_energy)
    H_k = full_bloch_sum(record, system)
    graph_k = bloch_hamiltonians(batch.systems, *batch.targets["hamiltonian"], batch.layout)[0]
    own = ai2dft.scf(system, tol=1e-9, H0=H_k)
    if not own.converged:
        raise RuntimeError("the training system's own SCF (from the PySCF H) did not converge")
    eps_own = band_energies(system, own.H)
    ref = Reference(np.asarray(H_k), np.asarray(own.H), np.asarray(eps_own), float(fermi_level(system, eps_own)),
                    float(omega(system, H_k)), float(fermi_level(system, band_energies(system, H_k))),
                    float(omega(system, graph_k)), float(record.dft["e_tot_hartree"]))
    return record, system, batch, ref


def k_shift(H_k, H_ref_k, S_k) -> jax.Array:
    """[] the least-squares shift c (Hartree) of H(k) - c S(k) onto H_ref(k), all [nk, nao, nao]."""
    return jnp.real(jnp.vdot(S_k, H_k - H_ref_k)) / jnp.real(jnp.vdot(S_k, S_k))


def aligned_k_error(H_k, H_ref_k, S_k) -> jax.Array:
    """[] mean |H(k) - c S(k) - H_ref(k)| over k and AO pairs, c = ``k_shift`` (Hartree)."""
    return jnp.mean(jnp.abs(H_k - k_shift(H_k, H_ref_k, S_k) * S_k - H_ref_k))


def full_bloch_sum(record, system) -> jax.Array:
    """[nk, nao, nao] H(k) of every stored H(R) block of ``record`` at the system's k-points."""
    structure = record.structure
    lattice, pos = structure.lattice_ang, structure.positions_ang
    reach = max(np.linalg.norm(pos[j] + np.array(R) @ lattice - pos[i]) for (*R, i, j) in record.matrices["hamiltonian"])
    graph = neighbor_graph(structure, reach + 0.1, {el: n for n, el in enumerate(record.basis.elements)})
    onsite, edges, found = blocks_from_dict(record.matrices["hamiltonian"], record.basis, structure.symbols, graph)
    H = bloch_sum(jnp.asarray(onsite), jnp.asarray(edges), block_layout(record.basis, structure.symbols, graph),
                  system.kpts_frac)
    return H.astype(system.overlap.dtype)


def reference_report(system, ref: Reference, batch: Batch) -> None:
    """The reference's consistency with the training system and the floor set by the graph cutoff."""
    omega_own = float(ai2dft.free_energy(system, jnp.asarray(ref.H_own)))
    H, H_own = jnp.asarray(ref.H_k), jnp.asarray(ref.H_own)
    D, entropy = density_and_entropy_of(system, H)
    e_ks = float(crystal_energy.energy(system, D))
    diff = jnp.abs(H - H_own)
    by_l = {l: float(jnp.max(diff[:, np.asarray(system.ao_l) == l])) for l in sorted(set(np.asarray(system.ao_l).tolist()))}
    n_edges = int(np.sum(np.asarray(batch.edge_mask).any(axis=(1, 2))))
    print(f"Omega(H_scf) = {ref.omega:.10f} Ha/cell on the training system, {(ref.omega - omega_own) * HARTREE_TO_UHA:.3f} "
          f"uHa above its own SCF minimum; E_KS[D(H_scf)] - PySCF e_tot = {(e_ks - ref.e_pyscf) * HARTREE_TO_UHA:.2f} uHa "
          f"(PySCF's e_tot is E, Omega = E - sigma S = E - {float(system.sigma * entropy) * HARTREE_TO_UHA:.1f} uHa). "
          f"H_scf(k) vs the training system's own SCF H(k): mean {float(jnp.mean(diff)) * HARTREE_TO_MEV:.2f} meV "
          f"({float(aligned_k_error(H, H_own, system.overlap)) * HARTREE_TO_MEV:.2f} meV after the c S shift), max by AO "
          f"row l: " + ", ".join(f"l={l} {v * HARTREE_TO_MEV:.1f} meV" for l, v in by_l.items())
          + " (PySCF's multigrid vs the FFT grid of the training system)")
    print(f"Fermi level {ref.mu:.6f} Ha; graph ({n_edges} edges): H_scf truncated to it has Omega - Omega(H_scf) = "
          f"{(ref.omega_graph - ref.omega) * HARTREE_TO_UHA:.2f} uHa (the floor of any network on this graph)")


def make_metrics_fn(apply, ref: Reference):
    """metrics(params, batch) -> dict of Hartree errors against the reference (jitted)."""
    H_own, H_scf = jnp.asarray(ref.H_own), jnp.asarray(ref.H_k)

    @jax.jit
    def metrics(params, batch: Batch):
        onsite, edges = apply(params, batch.graph)
        (t_on, t_ed), (m_on, m_ed) = batch.targets["hamiltonian"], batch.target_masks["hamiltonian"]
        s_on, s_ed = batch.targets["overlap"]
        flat = lambda a, b: jnp.concatenate([a.reshape(-1), b.reshape(-1)])  # noqa: E731
        dH, S, mask = flat(onsite - t_on, edges - t_ed), flat(s_on, s_ed), flat(m_on, m_ed).astype(onsite.dtype)
        shift = jnp.sum(dH * S * mask) / jnp.sum(S * S * mask)  # elct_jax.analysis.evaluate.shift_aligned, in jnp
        system = jax.tree.map(lambda x: x[0], batch.systems)
        H_k = bloch_hamiltonians(batch.systems, onsite, edges, batch.layout)[0]
        eps = band_energies(system, H_k - k_shift(H_k, H_scf, system.overlap) * system.overlap)
        mu = fermi_level(system, eps)
        return dict(H_aligned=jnp.sum(jnp.abs(dH - shift * S) * mask) / jnp.sum(mask),
                    H_raw=jnp.sum(jnp.abs(dH) * mask) / jnp.sum(mask),
                    E=ai2dft.free_energy(system, H_k) - ref.omega, mu=mu - ref.mu, shift=shift,
                    sc=self_consistency_residual(system, H_k), k_own=aligned_k_error(H_k, H_own, system.overlap),
                    bands=band_error(eps, mu, ref.eps_own, ref.mu_own, BAND_WINDOW_HA))

    return metrics


def run_mode(mode: str, params0, batch: Batch, apply, optim: OptimConfig, args, metrics_fn) -> dict:
    """Adam ``args.steps`` on one mode's loss; history in Hartree."""
    recorder = History(lambda params: metrics_fn(params, batch), params0, args.eval_every, args.steps)
    config = TrainConfig(run_dir="", epochs=args.steps, weights=MODES[mode], optim=optim, progress=False,
                         sc_iterations=args.sc_iterations)
    fit(apply, params0, [batch], [], config, callbacks=[recorder])
    history = recorder.arrays()
    history["seconds_adam"] = sum(recorder.step_seconds)
    return history


def report(mode: str, h: dict) -> None:
    print(f"\n{mode}  (Adam {h['seconds_adam']:.0f} s, compilation included)")
    print(step_table(h, [("loss", "loss", 1.0, "14.8f"), ("|H-H_scf|* meV", "H_aligned", HARTREE_TO_MEV, "15.4f"),
                         ("|H-H_scf| meV", "H_raw", HARTREE_TO_MEV, "14.3f"), ("Omega err uHa", "E", HARTREE_TO_UHA, "14.3f"),
                         ("E_F err* meV", "mu", HARTREE_TO_MEV, "13.4f"), ("band err meV", "bands", HARTREE_TO_MEV, "13.1f"),
                         ("sc loss meV", "sc", HARTREE_TO_MEV, "12.3f"),
                         ("|H(k)-H_own(k)|* meV", "k_own", HARTREE_TO_MEV, "21.3f")]))


def summary(histories: dict) -> str:
    return final_table(histories, [("|H-H_scf|* meV", "H_aligned", HARTREE_TO_MEV, "15.4f"),
                                   ("|H-H_scf| meV", "H_raw", HARTREE_TO_MEV, "14.3f"),
                                   ("Omega err uHa/cell", "E", HARTREE_TO_UHA, "19.3f"),
                                   ("E_F err* meV", "mu", HARTREE_TO_MEV, "13.4f"),
                                   ("band err meV", "bands", HARTREE_TO_MEV, "13.1f"),
                                   ("sc loss meV", "sc", HARTREE_TO_MEV, "12.3f"),
                                   ("|H(k)-H_own(k)|* meV", "k_own", HARTREE_TO_MEV, "21.3f")],
                       "*: after removing the constant shift c*S (Omega(H + cS) = Omega(H)); H(R) means over the graph's "
                       "blocks; Omega err = Omega(H) - Omega(H_scf) per cell; band err = max over k of the error of a band "
                       f"below E_F + {BAND_WINDOW_HA * HARTREE_TO_MEV / 1000:.2f} eV, both from their own E_F; sc loss = the "
                       "residual |H(k) - F[D(H)](k)| in the AO + orthonormal bases; H_own: the training system's own SCF "
                       "solution (the fixed point label-free training aims at)")


def plot(histories: dict, path: Path, title: str, floor_uha: float) -> None:
    panels = [("H_aligned", HARTREE_TO_MEV, "|H(R) - H_scf(R)| after shift alignment (meV)"),
              ("E", HARTREE_TO_UHA, "|Omega(H) - Omega(H_scf)| per cell (micro-Hartree)"),
              ("bands", HARTREE_TO_MEV, "max error of a band below E_F + 1.36 eV, from E_F (meV)"),
              ("k_own", HARTREE_TO_MEV, "|H(k) - H_own(k)| after shift alignment (meV)")]
    training_curves(histories, panels, path, title, hline=("E", floor_uha, "graph-truncation floor"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["supervised", "omega", "sc", "omega+sc"], choices=list(MODES))
    parser.add_argument("--preset", default="tiny", help="ELCT preset (float64 parameters, l_max 2: s and p AOs)")
    parser.add_argument("--kmesh", type=int, default=2, help="n for the Gamma-centred n x n x n SCF k-mesh")
    parser.add_argument("--ke-cutoff", type=float, default=90.0, help="plane-wave cutoff of the FFT mesh, Hartree")
    parser.add_argument("--sigma", type=float, default=0.01, help="Fermi-Dirac width, Hartree")
    parser.add_argument("--cutoff", type=float, default=12.0, help="graph and radial cutoff, Angstrom")
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps of every mode")
    parser.add_argument("--lr", type=float, default=1e-2, help="initial Adam learning rate")
    parser.add_argument("--final-lr", type=float, default=1e-4, help="learning rate at the last Adam step")
    parser.add_argument("--sc-iterations", type=int, default=1, help="Roothaan-DIIS steps of the sc target (1: F[D(H)])")
    parser.add_argument("--edge-init-scale", type=float, default=0.05,
                        help="initial size of the edge blocks, Hartree (ModelConfig.edge_init_scale)")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT / "unsupervised_na.png")
    args = parser.parse_args()

    record, system, batch, ref = na_problem(args)
    reference_report(system, ref, batch)
    base = preset(args.preset)
    config = preset(args.preset, dtype="float64", l_max=2, edge_init_scale=args.edge_init_scale,
                    radial=RadialConfig(n_basis=base.radial.n_basis, cutoff_ang=args.cutoff, hidden=base.radial.hidden))
    init, apply = make_predict_fn(config, record.basis)
    params0 = jax.jit(init)(jax.random.PRNGKey(args.seed), batch.graph)
    print(f"ELCT preset {args.preset!r}, float64, l_max 2, cutoff {args.cutoff} A, {count_parameters(params0)} "
          f"parameters, edge init scale {args.edge_init_scale:g}; Adam lr {args.lr:g} -> {args.final_lr:g} over "
          f"{args.steps} steps per mode; sc target: {args.sc_iterations} Roothaan-DIIS steps")
    optim = OptimConfig(learning_rate=args.lr, schedule="exponential", final_learning_rate=args.final_lr, clip_norm=0.0)
    metrics_fn = make_metrics_fn(apply, ref)
    histories = {}
    for mode in args.modes:
        histories[mode] = run_mode(mode, params0, batch, apply, optim, args, metrics_fn)
        report(mode, histories[mode])
    budget = f"Adam {args.steps} steps"
    print(f"\nfinal ({budget}):\n{summary(histories)}")
    plot(histories, args.out, f"ELCT ({args.preset}, float64) on bcc Na (2-atom cell, LDA/gth-szv, q1, "
                              f"{args.kmesh}x{args.kmesh}x{args.kmesh} k): label-free vs supervised, {budget}",
         (ref.omega_graph - ref.omega) * HARTREE_TO_UHA)


if __name__ == "__main__":
    main()

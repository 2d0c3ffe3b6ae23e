"""Bands of a held-out graphene supercell from a trained ELCT model vs. from its PySCF Hamiltonian.

Stages (each resumable; outputs under --root, default runs/graphene_bands):
  data   PySCF labels (LDA/gth-szv, GTH-Pade, 2x2x1 k, 60 Ha multigrid) of strained and displaced
         2x2x1 graphene supercells (8 C): ``train`` (seed 0) and one held-out structure ``test`` (seed 1000)
  train  short supervised training (elct_jax.train.run.train)
  bands  bands of the held-out structure along Gamma-M-K-Gamma of its own (strained) lattice from
         the predicted H(R) and from the PySCF H(R) (same S(R), same code path); prints the MAE in meV
         of the band energies within a window around the Fermi level.

    OMP_NUM_THREADS=1 python experiments/graphene_bands.py --stage all
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import ai2dft
from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.data.generate import Recipe, generate_dataset
from elct_jax.geometry.structure import Structure

A_ANG = 2.46
CUTOFF_ANG = 8.0  # |H_ij| of these labels: 3e-3 Ha at 6 A, 4e-4 at 7 A, 4e-5 at 8 A, 2e-6 at 9 A
WINDOW_EV = 2.0  # band energies within this window around the Fermi level enter the MAE


def base_structure() -> Structure:
    return Structure(("C", "C"), [[0, 0, 5], [A_ANG / 2, A_ANG / (2 * np.sqrt(3)), 5]],
                     [[A_ANG, 0, 0], [A_ANG / 2, A_ANG * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))


def recipe() -> Recipe:
    dft = DFTSettings(basis="gth-szv", xc="lda", kmesh=(2, 2, 1), ke_cutoff_Ha=60)
    return Recipe("crystal_random", sigma_ang=0.05, strain=0.02, supercell=(2, 2, 1), dft=dft)


def make_data(root: Path, n_train: int, workers: int) -> None:
    generate_dataset(base_structure(), recipe(), root / "data" / "train", n_train, n_workers=workers, seed=0)
    generate_dataset(base_structure(), recipe(), root / "data" / "test", 1, n_workers=min(workers, 1), seed=1000)


def train_model(root: Path, epochs: int):
    from elct_jax.config import DataConfig, OptimConfig, RadialConfig, RunConfig, TrainConfig, preset
    from elct_jax.train.run import train

    model = preset("tiny", l_max=2, channels=16, n_blocks=2, ffn_channels=32, species_dim=8, avg_num_neighbors=80.0,
                   radial=RadialConfig(n_basis=32, cutoff_ang=CUTOFF_ANG, hidden=32), dtype="float32")
    config = RunConfig(
        data=DataConfig(path=str(root / "data" / "train"), cutoff_ang=CUTOFF_ANG, batch_size=1, split=(0.75, 0.25, 0.0)),
        model=model,
        train=TrainConfig(run_dir=str(root / "run"), epochs=epochs, progress=False,
                          optim=OptimConfig(learning_rate=3e-3, plateau_patience=15, min_learning_rate=2e-5)))
    state, _, _ = train(config)
    print(f"trained {int(state.step)} steps")


def compare_bands(root: Path, npoints: int, out_png: Path | None) -> dict:
    """Bands of the held-out structure from the predicted H, the PySCF H and the PySCF H cut to the
    model's neighbour list (the truncation floor), all with the PySCF S(R), dense solver."""
    from elct_jax.analysis.bands import HEXAGONAL_POINTS, BandSolver, band_path, fermi_level, plot_bands
    from ai2dft.units import HARTREE_TO_EV
    from elct_jax.data.deeph_dock import read_deeph_dock
    from elct_jax.inference.chunked import predict_sparse
    from elct_jax.hamiltonian.sparse import SparseBlocks
    from elct_jax.train.saved_model import load_model

    record = read_deeph_dock(root / "data" / "test" / "0")
    s, model = record.structure, load_model(root / "run")
    n_orb = [model.basis.n_orbitals(x) for x in s.symbols]
    ref = SparseBlocks.from_dict(record.matrices["hamiltonian"], n_orb)
    overlap = SparseBlocks.from_dict(record.matrices["overlap"], n_orb)
    pred = predict_sparse(model, s, chunk_atoms=4, dtype=np.float64)  # 2 chunks with halos
    hams = {"pyscf": ref, "predicted": pred, "pyscf_cut": ref.restricted_to(pred)}
    path = band_path(s.lattice_ang, s.pbc, "GMKG", npoints, special_points=HEXAGONAL_POINTS)  # strained cell
    mesh = np.array([[a / 6, b / 6, 0.0] for a in range(6) for b in range(6)])
    n_el = int(record.dft["n_electrons"])
    bands, fermi = {}, {}
    for name, h in hams.items():
        solver = BandSolver(h, overlap)
        fermi[name] = fermi_level(solver, n_el, mesh, method="dense")
        bands[name] = solver.bands(path.kpts_frac, None, None, solver="dense")
    e_ref = bands["pyscf"].energies
    near = np.abs(e_ref - fermi["pyscf"]) * HARTREE_TO_EV < WINDOW_EV
    out = dict(n_atoms=s.n_atoms, cutoff_ang=CUTOFF_ANG, window_ev=WINDOW_EV, n_energies=int(near.sum()),
               fermi_pyscf_ev=fermi["pyscf"] * HARTREE_TO_EV, fermi_labels_ev=record.fermi_energy_hartree * HARTREE_TO_EV)
    common = set(ref.key_index()) & set(pred.key_index())
    key_ref, key_pred = ref.key_index(), pred.key_index()
    diff = [np.abs(ref.blocks[key_ref[k]] - pred.blocks[key_pred[k]])[:4, :4].mean() for k in common]
    out["h_mae_mev"] = float(np.mean(diff + [np.abs(ref.onsite - pred.onsite).mean()]) * HARTREE_TO_EV * 1e3)
    for name in ("predicted", "pyscf_cut"):
        e = bands[name].energies
        out[f"{name}_band_mae_mev"] = float(np.abs(e - e_ref)[near].mean() * HARTREE_TO_EV * 1e3)
        aligned = (e - fermi[name]) - (e_ref - fermi["pyscf"])  # each H's own Fermi level
        out[f"{name}_band_mae_fermi_aligned_mev"] = float(np.abs(aligned)[near].mean() * HARTREE_TO_EV * 1e3)
        out[f"{name}_fermi_error_mev"] = float((fermi[name] - fermi["pyscf"]) * HARTREE_TO_EV * 1e3)
    if out_png is not None:
        shown = bands["predicted"].__class__(path.kpts_frac, bands["predicted"].energies, bands["predicted"].band_index,
                                             fermi["pyscf"])
        reference = bands["pyscf"].__class__(path.kpts_frac, e_ref, bands["pyscf"].band_index, fermi["pyscf"])
        plot_bands(path, shown, out_png, window_ev=6.0, reference=reference,
                   title=f"held-out 2x2 graphene: ELCT (solid) vs PySCF LDA/gth-szv (dashed)\n"
                         f"MAE {out['predicted_band_mae_mev']:.1f} meV within {WINDOW_EV} eV of E_F")
    return out


def main() -> None:
    ai2dft.enable_float64()  # the DFT layer (Systems, energies) needs float64
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("data", "train", "bands", "all"), default="all")
    parser.add_argument("--root", type=Path, default=Path("runs/graphene_bands"))
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--npoints", type=int, default=60)
    parser.add_argument("--png", type=Path, default=Path("docs/graphene_bands_elct_vs_pyscf.png"))
    args = parser.parse_args()
    if args.stage in ("data", "all"):
        make_data(args.root, args.n_train, args.workers)
    if args.stage in ("train", "all"):
        train_model(args.root, args.epochs)
    if args.stage in ("bands", "all"):
        print(json.dumps(compare_bands(args.root, args.npoints, args.png), indent=1))


if __name__ == "__main__":
    main()

"""The ``elct`` command: demo, data generation, training, evaluation and prediction."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args) -> None:
    from elct_jax.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out_dir=args.out, n_structures=args.n_structures, supervised_epochs=args.epochs,
                        finetune_epochs=args.finetune_epochs, n_workers=args.workers))


def _generate(args) -> None:
    from ai2dft.pyscf_bridge.labels import DFTSettings
    from elct_jax.data.generate import Recipe, generate_dataset

    dft = DFTSettings(basis=args.basis, xc=args.xc, grid_level=args.grid_level, charge=args.charge,
                      kmesh=tuple(args.kmesh), ke_cutoff_Ha=args.ke_cutoff)
    recipe = Recipe(kind=args.recipe, temperature_K=args.temperature, sigma_ang=args.sigma, strain=args.strain,
                    supercell=tuple(args.supercell), dft=dft)
    manifest = generate_dataset(args.structure, recipe, args.out, args.n, n_workers=args.workers, seed=args.seed)
    print(f"{args.out}: {_status_counts([manifest])}")


def _status_counts(manifests) -> dict[str, int]:
    """Structures per status ("done", "not_converged", "failed") over generation manifests."""
    statuses = [entry["status"] for m in manifests for entry in m["structures"].values()]
    return {s: statuses.count(s) for s in sorted(set(statuses))}


def _benchmark_data(args) -> None:
    from elct_jax.data.benchmarks import generate_benchmark

    manifests = generate_benchmark(args.name, args.out, n_workers=args.workers, threads_per_worker=args.threads,
                                   n_structures=args.n)
    print(f"{args.out}: {_status_counts(manifests.values())}; split in {Path(args.out) / 'split.json'}")


def _add_h0(args) -> None:
    from elct_jax.data.baseline import add_baseline

    print(f"{args.data}: added H0 to {add_baseline(args.data)} record(s)")


def _train(args) -> None:
    from elct_jax.train.run import load_run_config, train

    state, _, _ = train(load_run_config(args.config))
    print(f"finished at step {int(state.step)}")


def _evaluate(args) -> None:
    import numpy as np

    from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
    from elct_jax.data.dataset_dir import read_dataset
    from elct_jax.evaluate import structure_errors
    from elct_jax.saved_model import load_model

    model = load_model(args.model)
    records = read_dataset(args.data, require=("hamiltonian", "overlap"))
    errs = [structure_errors(model, r) for r in records]
    mae = np.mean([e.mae for e in errs])
    de = np.mean([e.energy for e in errs])
    print(f"{len(errs)} structures: H MAE {mae * HARTREE_TO_MEV:.4f} meV ({mae * HARTREE_TO_UHA:.2f} uHa), "
          f"mean energy error {de * HARTREE_TO_MEV:.4f} meV")


def _predict(args) -> None:
    from elct_jax.data.deeph_dock import DeepHRecord, write_deeph_dock
    from elct_jax.predict import predict_blocks
    from elct_jax.structure import Structure
    from elct_jax.saved_model import load_model

    model = load_model(args.model)
    structure = Structure.read(args.structure)
    if args.compare:
        from elct_jax.dft_check import compare_with_dft

        print(compare_with_dft(model, structure).table(model.name))
    blocks = predict_blocks(model, structure)
    write_deeph_dock(args.out, DeepHRecord(structure, model.basis, {"hamiltonian": blocks}))
    print(f"wrote {len(blocks)} blocks to {Path(args.out) / 'hamiltonian.h5'}")


MODEL_HELP = "a pretrained model (universal-mol-v1), an exported model folder or a run directory"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elct", description="Deep-learning DFT Hamiltonians (ELCT) in JAX")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate water data, train supervised, fine-tune label-free, report errors")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--n-structures", type=int, default=16)
    p.add_argument("--epochs", type=int, default=300, help="supervised epochs")
    p.add_argument("--finetune-epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_demo)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("generate", help="sample structures and label them with PySCF (resumable)")
    p.add_argument("structure", help="base structure: xyz, POSCAR, or anything ASE reads")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of structures")
    p.add_argument("--recipe", default="normal_modes", choices=["normal_modes", "random", "crystal_random"])
    p.add_argument("--temperature", type=float, default=300.0, help="K, normal-mode sampling")
    p.add_argument("--sigma", type=float, default=0.05, help="Angstrom, random displacements")
    p.add_argument("--strain", type=float, default=0.0, help="max strain, crystals")
    p.add_argument("--supercell", type=int, nargs=3, default=[1, 1, 1])
    p.add_argument("--basis", default="def2-svp")
    p.add_argument("--xc", default="pbe")
    p.add_argument("--grid-level", type=int, default=5)
    p.add_argument("--charge", type=int, default=0)
    p.add_argument("--kmesh", type=int, nargs=3, default=[4, 4, 1])
    p.add_argument("--ke-cutoff", type=float, default=None, help="Hartree, crystal FFT mesh")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_generate)

    p = data.add_parser("benchmark", help="generate a named benchmark dataset (resumable; writes split.json)")
    p.add_argument("name", help="water-md17 | graphene-300k | g2-mol | g2-heldout (see elct_jax.data.benchmarks)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=None, help="only the first N structures (default: all)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads per worker")
    p.set_defaults(func=_benchmark_data)

    p = data.add_parser("add-h0", help="add the zeroth-step Hamiltonian H0 = F[D_minao] to molecular records")
    p.add_argument("data", help="dataset directory (DeepH-dock folders)")
    p.set_defaults(func=_add_h0)

    p = sub.add_parser("train", help="train from a TOML config (resumes from its run directory)")
    p.add_argument("config")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="errors of a trained model on a dataset")
    p.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    p.add_argument("data", help="dataset directory (DeepH-dock or legacy folders)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="predict H of a structure, write DeepH-dock hamiltonian.h5")
    p.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    p.add_argument("structure")
    p.add_argument("--out", required=True)
    p.add_argument("--compare", action="store_true",
                   help="molecules: also run PySCF at the model's level of theory and print HOMO/LUMO/gap, "
                        "H MAE, energy error and wall time of both")
    p.set_defaults(func=_predict)

    from elct_jax.large.cli_bands import add_bands_parser

    add_bands_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"elct {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

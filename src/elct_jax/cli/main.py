"""The ``elct`` command: demo, data generation, training, evaluation, prediction and bands.

This module defines every option (``elct X --help`` shows each with its default) and imports nothing
heavy: JAX, PySCF and the project's modules are imported inside the command functions, so help is instant.
Commands run with JAX's float64 mode on (``ai2dft.enable_float64``), as the DFT layer needs.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path


def _demo(args) -> int:
    from elct_jax.cli.demo import DemoConfig, run_demo

    try:
        with _sigterm_interrupts():
            run_demo(DemoConfig(out_dir=args.out, n_structures=args.n_structures, supervised_epochs=args.epochs,
                                finetune_epochs=args.finetune_epochs, n_workers=args.workers))
    except KeyboardInterrupt as err:
        return _stopped("demo", err, f"the finished structures and the training checkpoints under {args.out} are kept")
    return 0


def _generate(args) -> int:
    if args.n == 0:
        print(f"elct data generate: --n 0: nothing to do ({args.out} is neither created nor changed)")
        return 0
    try:
        from ai2dft.pyscf_bridge.labels import DFTSettings
        from elct_jax.data.generate import Recipe, generate_dataset

        smearing = None if args.smearing is None else (args.smearing[0], float(args.smearing[1]))
        spin = args.spin if args.multiplicity is None else args.multiplicity - 1
        dft = DFTSettings(basis=args.basis, xc=args.xc, grid_level=args.grid_level, conv_tol=args.conv_tol,
                          max_cycle=args.max_cycle, charge=args.charge, spin=spin, smearing=smearing, pseudo=args.pseudo,
                          kmesh=tuple(args.kmesh), ke_cutoff_Ha=args.ke_cutoff)
        recipe = Recipe(kind=args.recipe, temperature_K=args.temperature, sigma_ang=args.sigma, strain=args.strain,
                        supercell=tuple(args.supercell), dft=dft)
        manifest = generate_dataset(args.structure, recipe, args.out, args.n, n_workers=args.workers, seed=args.seed)
    except KeyboardInterrupt as err:
        return _stopped("data generate", err,
                        f"every finished structure is listed in the manifest(s) under {args.out}")
    return _report("generate", {Path(args.out): manifest}, args.n)


def _report(command: str, manifests: dict[Path, dict], n: int) -> int:
    """Print the status counts of structures 0..n-1 of each {folder: generation manifest} and, on stderr,
    every failed or non-converged structure with its reason; the exit status: 1 if there is one, else 0."""
    from elct_jax.data.generate import failures

    entries = [(folder / str(i), m["structures"].get(str(i), {}).get("status"), reason)
               for folder, m in manifests.items() for i, reason in failures(m, n).items()]
    statuses = [m["structures"].get(str(i), {}).get("status") for m in manifests.values() for i in range(n)]
    print(f"elct data {command}: {n * len(manifests)} structures: "
          + ", ".join(f"{statuses.count(s)} {s}" for s in ("done", "not_converged", "failed")))
    for folder, status, reason in entries:
        print(f"  {folder}: {status}: {reason}", file=sys.stderr)
    if entries:
        print(f"elct data {command}: {len(entries)} structure(s) failed or did not converge (listed above); "
              f"failed ones are retried when the same command runs again", file=sys.stderr)
    return 1 if entries else 0


def _benchmark_data(args) -> int:
    if args.n == 0:
        print(f"elct data benchmark: --n 0: nothing to do ({args.out} is neither created nor changed)")
        return 0
    try:
        from elct_jax.data.benchmarks import generate_benchmark, get_dataset

        manifests = generate_benchmark(args.name, args.out, n_workers=args.workers,
                                       threads_per_worker=args.threads, n_structures=args.n)
    except KeyboardInterrupt as err:
        return _stopped("data benchmark", err,
                        f"every finished structure is listed in the manifest(s) under {args.out}")
    n = get_dataset(args.name).n_structures if args.n is None else args.n
    status = _report("benchmark", {Path(args.out) / folder: m for folder, m in manifests.items()}, n)
    print(f"split in {Path(args.out) / 'split.json'}")
    return status


def _add_h0(args) -> int | None:
    from elct_jax.data.baseline import add_baseline

    try:
        print(f"{args.data}: added H0 to {add_baseline(args.data, n_workers=args.workers)} record(s)")
    except KeyboardInterrupt as err:
        return _stopped("data add-h0", err, "every finished record has its H0")


def _train(args) -> int:
    """Train (a signal stops training after the current step, with a checkpoint); ends with the run's summary."""
    import time

    from elct_jax.config import load_run_config
    from elct_jax.train.run import train
    from elct_jax.train.summary import run_summary

    config = load_run_config(args.config)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        with _sigterm_interrupts():
            state, _, _ = train(config)
    except KeyboardInterrupt as err:
        return _stopped("train", err, f"the training state is in {config.train.run_dir}/checkpoints/latest")
    print("elct train: " + run_summary(config.train.run_dir, int(state.step), time.perf_counter() - wall,
                                       time.process_time() - cpu))
    return 0


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises ``Interrupted`` (a KeyboardInterrupt) in the block, as SIGINT does: one clean path for both
    (the generation and training loops install their own graceful handlers inside)."""
    import signal

    from elct_jax.data.workers import Interrupted

    def terminate(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(command: str, err: KeyboardInterrupt, kept: str) -> int:
    """Report a stop by SIGINT (Ctrl-C) or SIGTERM in one line; the exit status 128 + signal number."""
    import signal

    signum = getattr(err, "signum", signal.SIGINT)  # a plain KeyboardInterrupt: Ctrl-C
    print(f"elct {command}: stopped by {signal.Signals(signum).name}; {kept}; run the same command again to resume",
          file=sys.stderr)
    return 128 + signum


def _evaluate(args) -> None:
    from elct_jax.data.dataset_dir import read_record, split_folders
    from elct_jax.analysis.evaluate import errors_table, record_errors, write_errors_csv
    from elct_jax.train.saved_model import load_model

    model = load_model(args.model)
    folders = split_folders(args.data, args.split)
    if not folders:
        raise ValueError(f"no structures in {args.data} (split {args.split})")
    names = [f.relative_to(Path(args.data)).as_posix() for f in folders]
    errors = [record_errors(model, read_record(f, require=("hamiltonian",))) for f in folders]
    print(errors_table(names, errors))
    if args.csv:
        write_errors_csv(args.csv, names, errors)
        print(f"wrote {args.csv}")


def _predict(args) -> None:
    from elct_jax.data.deeph_dock import write_deeph_dock
    from elct_jax.inference.predict import prediction_record
    from elct_jax.geometry.structure import Structure
    from elct_jax.train.saved_model import load_model

    model = load_model(args.model)
    structure = Structure.read(args.structure)
    if args.compare:
        from elct_jax.analysis.dft_check import compare_with_dft

        print(compare_with_dft(model, structure).table(model.name))
    record = prediction_record(model, structure, args.n_electrons, initial_moments(args, structure.n_atoms))
    if args.compare_labels is not None:
        from elct_jax.analysis.label_check import compare_with_labels

        print(compare_with_labels(model, record, args.compare_labels).table(model.name))
    folder = write_deeph_dock(args.out, record)
    print(f"wrote {len(record.matrices['hamiltonian'])} blocks of H and S ({record.dft['n_electrons']} electrons) "
          f"to {folder}/hamiltonian.h5, overlap.h5")


def _bands(args) -> None:
    from elct_jax.cli.bands import run_command

    run_command(args)


MODEL_HELP = "a pretrained model (universal-mol-v1), an exported model folder or a run directory"
GENERATION_EXIT = ("exit status: 0 when every structure is done; 1 when any failed or did not converge (each is "
                   "listed with its reason; failed ones are retried by running the same command again); 2 for bad "
                   "input; 130 or 143 when stopped by Ctrl-C (SIGINT) or SIGTERM, after the structures in progress "
                   "(run the same command again to resume)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each option's help, except for a default of None or a flag's False
    (the help text says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser with :class:`_HelpFormatter`; ``add_subparsers`` gives every subcommand the same class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _output_dir(value: str) -> str:
    """argparse type of ``--out`` directories: refuse a path that is, or lies under, an existing file."""
    path = Path(value)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is an existing file; --out needs a directory (new or existing)")
    return value


def _add_moment_options(p: argparse.ArgumentParser) -> None:
    """--spin / --magmom: the initial moments a collinear-spin model takes as input (:func:`initial_moments`)."""
    moments = p.add_mutually_exclusive_group()
    moments.add_argument("--spin", type=int, default=None, metavar="2S",
                         help="collinear-spin models: 2S = N_alpha - N_beta of the molecule (crystals: per cell) as "
                              "initial moments, 2S / n_atoms on each atom, as elct data generate --spin stores them")
    moments.add_argument("--magmom", type=float, nargs="+", default=None, metavar="M",
                         help="collinear-spin models: initial moment of each atom (Bohr magnetons)")


def initial_moments(args, n_atoms: int):
    """[n_atoms] initial moments (Bohr magnetons) from the parsed --spin or --magmom of ``elct predict`` or
    ``elct bands``, or None."""
    if args.spin is None:
        return args.magmom
    from elct_jax.data.spinful import molecule_moments

    return molecule_moments(n_atoms, args.spin)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="elct", description="Deep-learning DFT Hamiltonians (ELCT) in JAX")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate water data, train supervised, fine-tune label-free, report errors")
    p.add_argument("--out", type=_output_dir, default="runs/demo", help="output directory (data/, the two runs)")
    p.add_argument("--n-structures", type=int, default=16, help="water structures to label, split into train/val/test")
    p.add_argument("--epochs", type=int, default=300, help="supervised epochs")
    p.add_argument("--finetune-epochs", type=int, default=20, help="label-free fine-tuning epochs")
    p.add_argument("--workers", type=int, default=2, help="PySCF worker processes for the labels")
    p.set_defaults(func=_demo)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("generate", help="sample structures and label them with PySCF (resumable)",
                        epilog=GENERATION_EXIT)
    p.add_argument("structure", help="base structure: xyz, POSCAR, or anything ASE reads")
    p.add_argument("--out", type=_output_dir, required=True, help="dataset directory (DeepH-dock folders, manifest)")
    p.add_argument("--n", type=int, required=True,
                   help="number of structures (0: nothing to do, exits 0 and writes nothing)")
    p.add_argument("--recipe", default="normal_modes", choices=["normal_modes", "random", "crystal_random"],
                   help="sampling: harmonic normal modes (molecules), Gaussian displacements, or strained and "
                        "displaced supercells (crystals)")
    p.add_argument("--temperature", type=float, default=300.0, help="K, normal-mode sampling")
    p.add_argument("--sigma", type=float, default=0.05, help="Angstrom, random displacements")
    p.add_argument("--strain", type=float, default=0.0, help="max strain, crystals")
    p.add_argument("--supercell", type=int, nargs=3, default=[1, 1, 1], metavar=("N1", "N2", "N3"),
                   help="supercell of the base, crystals")
    p.add_argument("--basis", default="def2-svp", help="PySCF basis (gth-* for crystals)")
    p.add_argument("--xc", default="pbe", help="functional: lda,vwn | pbe | blyp | pbe0 | b3lyp | ... (LDA, GGA; global hybrids for molecules)")
    p.add_argument("--grid-level", type=int, default=5, help="molecular integration grid (>= 5 for sub-0.1 meV labels)")
    p.add_argument("--conv-tol", type=float, default=1e-10, help="SCF energy convergence, Hartree")
    p.add_argument("--max-cycle", type=int, default=100,
                   help="SCF iterations; a structure not converged by then is recorded as not_converged")
    p.add_argument("--smearing", nargs=2, metavar=("METHOD", "WIDTH_HA"), default=None,
                   help="fermi | gaussian and its width in Hartree, e.g. --smearing fermi 0.01 "
                        "(default: integer occupations)")
    p.add_argument("--charge", type=int, default=0, help="total charge, molecules")
    spin = p.add_mutually_exclusive_group()
    spin.add_argument("--spin", type=int, default=None, metavar="2S",
                      help="spin-polarized labels at 2S = N_alpha - N_beta (crystals: per cell, held fixed), UKS/KUKS, "
                           "written as collinear spinful records (default: closed-shell RKS; an odd electron count "
                           "needs this)")
    spin.add_argument("--multiplicity", type=int, default=None, metavar="2S+1", help="the same as --spin, as 2S + 1")
    p.add_argument("--pseudo", default=None,
                   help="GTH pseudopotential, crystals (default: gth-pade for LDA, gth-pbe for PBE)")
    p.add_argument("--kmesh", type=int, nargs=3, default=[4, 4, 1], metavar=("K1", "K2", "K3"),
                   help="SCF k-mesh, crystals")
    p.add_argument("--ke-cutoff", type=float, default=None,
                   help="Hartree, crystal FFT mesh (default: PySCF's mesh, very fine)")
    p.add_argument("--workers", type=int, default=2, help="PySCF worker processes (0: in this process)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    p.set_defaults(func=_generate)

    p = data.add_parser("benchmark", help="generate a named benchmark dataset (resumable; writes split.json)",
                        epilog=GENERATION_EXIT)
    p.add_argument("name", help="water-md17 | graphene-300k | g2-mol | g2-heldout | g2-b3lyp (see elct_jax.data.benchmarks)")
    p.add_argument("--out", type=_output_dir, required=True, help="dataset directory (with split.json)")
    p.add_argument("--n", type=int, default=None,
                   help="only the first N structures (default: all; 0: nothing to do, exits 0 and writes nothing)")
    p.add_argument("--workers", type=int, default=1, help="PySCF worker processes")
    p.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads per worker")
    p.set_defaults(func=_benchmark_data)

    p = data.add_parser("add-h0", help="add the zeroth-step Hamiltonian H0 = F[D_minao] to records that lack it")
    p.add_argument("data", help="dataset directory (DeepH-dock folders)")
    p.add_argument("--workers", type=int, default=0,
                   help="PySCF worker processes, one thread each; 0: this process")
    p.set_defaults(func=_add_h0)

    p = sub.add_parser("train", help="train from a TOML config (resumes from its run directory)")
    p.add_argument("config", help="TOML file with [data], [model] and [train] tables (README, Training)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="errors of a trained model on a dataset")
    p.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    p.add_argument("data", help="dataset directory (DeepH-dock or legacy folders)")
    p.add_argument("--split", default=None, help="train, val or test (from DATA/split.json), or a text file of "
                   "folder names relative to DATA, one per line (default: every folder)")
    p.add_argument("--csv", default=None, help="also write the per-structure errors (meV) to this CSV file")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="predict H of a structure, write a DeepH-dock folder (H, S, occupation)")
    p.add_argument("--model", "--checkpoint", dest="model", required=True, help=MODEL_HELP)
    p.add_argument("structure", help="structure file: xyz, POSCAR, or anything ASE reads")
    p.add_argument("--out", type=_output_dir, required=True,
                   help="DeepH-dock folder: POSCAR, info.json, hamiltonian.h5, overlap.h5")
    p.add_argument("--n-electrons", type=int, default=None, help="electron count written as info.json occupation "
                   "(default: all electrons less the model's charge for molecules, GTH valence for crystals)")
    p.add_argument("--compare", action="store_true",
                   help="spinless models, molecules: also run PySCF at the model's level of theory and print "
                        "HOMO/LUMO/gap, H MAE, energy error and wall time of both")
    p.add_argument("--compare-labels", default=None, metavar="FOLDER",
                   help="any model: print the errors against the DFT labels of the same structure in that DeepH "
                        "folder (H MAE, per spin for spinful models; energy error of molecules; band MAE of crystals)")
    _add_moment_options(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("bands", help="band structure of a (large) crystal from a trained model")
    p.add_argument("--model", "--checkpoint", dest="model", default=None,
                   help="an exported model folder or a run directory (of a crystal model)")
    p.add_argument("--structure", default=None, help="crystal structure file (POSCAR, cif, extxyz, ...)")
    p.add_argument("--folder", default=None, help="instead of --model/--structure: a DeepH folder with "
                   "hamiltonian.h5 and overlap.h5 (elct predict --out, DFT labels, DeepH-dock output)")
    p.add_argument("--out", type=_output_dir, required=True,
                   help="output directory: bands.npz, bands.png, bands.json")
    p.add_argument("--npoints", type=int, default=60, help="k-points along the path")
    p.add_argument("--nbands", type=int, default=20, help="bands nearest the Fermi level (<= 0: all, dense)")
    p.add_argument("--path", default=None, help="special points, e.g. GMKG (default: ASE's path of the lattice)")
    p.add_argument("--fermi", type=float, default=None, help="Fermi level in eV (default: from the electron count)")
    p.add_argument("--n-electrons", type=int, default=None, help="electrons per cell (default: GTH valence count)")
    p.add_argument("--fermi-kmesh", type=int, nargs=3, default=[1, 1, 1], metavar=("K1", "K2", "K3"),
                   help="k-mesh of the Fermi level")
    p.add_argument("--solver", choices=["auto", "dense", "sparse"], default="auto",
                   help="eigensolver: dense, sparse shift-invert, or auto (dense up to 3000 orbitals)")
    p.add_argument("--chunk-atoms", type=int, default=256, help="atoms per prediction chunk (memory bound)")
    p.add_argument("--xc", default="lda", help="selects the GTH pseudopotential for the electron count")
    p.add_argument("--pseudo", default=None, help="GTH pseudopotential name (overrides --xc)")
    _add_moment_options(p)
    p.set_defaults(func=_bands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ai2dft.precision import enable_float64

    enable_float64()
    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
    try:
        status = args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"elct {command}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # TrainingDiverged, a failed SCF, ...: the message says what happened
        print(f"elct {command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return status or 0  # the commands that report an exit status return it


if __name__ == "__main__":
    raise SystemExit(main())

"""A spinful folder written by deepx-dock itself, read by the project and checked against the project's own labels.

deepx-dock's PySCF hook (deepx_dock/compute/pyscf/pyscf2deeph.py) wrote ``H2O_U``: water in cc-pVDZ, UKS B3LYP
with 2S = 2 (its demo notebook, examples/compute/pyscf/demo.ipynb: ``O 0 .5 0; H -1.1 0.2 0.2; H 0.6 0.5 0.4``,
PySCF's default grid and convergence). The folder sits in the repository's history only (commit fe5130a, removed
later), so fetch it once::

    git clone https://github.com/kYangLi/DeepH-dock /tmp/deepx-dock
    mkdir -p /tmp/H2O_U && for f in info.json POSCAR hamiltonian.h5 overlap.h5; do
        git -C /tmp/deepx-dock show fe5130a6891b9316b2bbda7030e8ca43946da0d1:tests/compute/pyscf/deeph.bak/H2O_U/$f \\
            > /tmp/H2O_U/$f; done
    python benchmarks/deepx_dock_files.py /tmp/H2O_U

The project reads the folder (``read_deeph_dock``: spin-outer [2 n_i, 2 n_j] blocks, deepx-dock's orbital order and
eV converted to the internal order and Hartree), labels the same molecule with its own generator
(``label_record`` at the same level of theory: a collinear spinful record, [[up, 0], [0, down]] blocks) and prints
the largest differences per quadrant. deepx-dock converts with 27.2113845 eV/Ha (its CONSTANT.py), the project with
CODATA 2018; its Fock matrix is the one PySCF's SCF callback sees in the last cycle (DIIS-extrapolated, from the
previous density), the project's F[D_final]: both set the size of a difference that agreeing conventions leave.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ai2dft.pyscf_bridge.labels import DFTSettings
from ai2dft.units import HARTREE_TO_EV
from elct_jax.data.deeph_dock import read_deeph_dock
from elct_jax.data.generate import label_record
from elct_jax.data.spinful import quadrants
from machine import describe

DEEPX_HARTREE_TO_EV = 27.2113845  # deepx_dock/CONSTANT.py
QUADRANTS = ("up-up", "up-down", "down-up", "down-down")


def largest_differences(theirs: dict, ours: dict, spinful: bool) -> dict[str, float]:
    """max |theirs - ours| (Hartree) over every block of ``theirs``; per spin quadrant of ``spinful`` blocks."""
    missing = set(theirs) - set(ours)
    if missing:
        raise KeyError(f"{len(missing)} of deepx-dock's blocks are not among the project's, e.g. {sorted(missing)[0]}")
    if not spinful:
        return {"all": max(float(np.abs(theirs[k] - ours[k]).max()) for k in theirs)}
    return {q: max(float(np.abs(quadrants(theirs[k])[i] - quadrants(ours[k])[i]).max()) for k in theirs)
            for i, q in enumerate(QUADRANTS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="deepx-dock's H2O_U folder (see above)")
    parser.add_argument("--spin", type=int, default=2, help="2S of the UKS run that wrote the folder")
    parser.add_argument("--xc", default="b3lyp")
    args = parser.parse_args()
    print(describe())
    info = json.loads((args.folder / "info.json").read_text())
    theirs = read_deeph_dock(args.folder)
    rescale = HARTREE_TO_EV / DEEPX_HARTREE_TO_EV  # undo the project's eV -> Ha with deepx-dock's constant
    settings = DFTSettings(basis=info["basis"], xc=args.xc, spin=args.spin, grid_level=3, conv_tol=1e-9,
                           density_fit=False)
    ours, converged = label_record(theirs.structure, settings)
    print(f"{args.folder}: spinful {info['spinful']}, {info['atoms_quantity']} atoms, {info['orbits_quantity']} "
          f"orbitals, {len(theirs.matrices['hamiltonian'])} blocks; project's UKS {args.xc}/{info['basis']} 2S = "
          f"{args.spin}: converged {converged}, E = {ours.dft['e_tot_hartree']:.10f} Ha")
    theirs_in_ha = {"hamiltonian": {k: v * rescale for k, v in theirs.matrices["hamiltonian"].items()},
                    "overlap": theirs.matrices["overlap"]}  # the overlap is dimensionless
    for name, blocks in theirs_in_ha.items():
        diffs = largest_differences(blocks, ours.matrices[name], spinful=name == "hamiltonian")
        unit = "Ha" if name == "hamiltonian" else "dimensionless"
        print(f"{name}: max |deepx-dock - project| ({unit}) " + ", ".join(f"{q} {d:.2e}" for q, d in diffs.items()))
    swapped = max(float(np.abs(quadrants(v)[0] - quadrants(ours.matrices["hamiltonian"][k])[3]).max())
                  for k, v in theirs_in_ha["hamiltonian"].items())
    print(f"for scale, the same with the spins swapped (deepx-dock's up-up against the project's down-down): "
          f"{swapped:.2e} Ha")


if __name__ == "__main__":
    main()

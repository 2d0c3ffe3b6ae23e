"""Spin-split bands of a one-dimensional ferromagnet from its KUKS labels (README figure, docs/h_chain_spin_bands.png).

A stretched hydrogen chain (H every 2.0 A, two atoms per cell, 8 A box, gth-dzvp, PBE, GTH-PBE, Fermi smearing
0.01 Ha, 2 k-points) with its moment held at 2S = 1 per cell (N_up 1.5, N_down 0.5): KUKS labels written as a
collinear spinful DeepH-dock folder, then `elct bands --folder` (spin-up and spin-down bands, one Fermi level from
the electron count); PySCF's own KUKS bands at the same k-points are drawn as markers. Prints the largest band
difference (Ha) and the exchange splitting of the lowest band at Gamma (eV).

    OMP_NUM_THREADS=2 python experiments/spin_bands.py --out runs/spin_bands
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import ai2dft
from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell
from ai2dft.pyscf_bridge.spin_labels import _run_kuks
from ai2dft.units import HARTREE_TO_EV
from elct_jax.cli.main import main as elct
from elct_jax.data.deeph_dock import write_deeph_dock
from elct_jax.data.spin_crystal_record import spin_crystal_record
from elct_jax.geometry.structure import Structure

SETTINGS = DFTSettings(basis="gth-dzvp", xc="pbe", kmesh=(2, 1, 1), ke_cutoff_Ha=25.0, smearing=("fermi", 0.01),
                       spin=1, conv_tol=1e-10)
CHAIN = Structure(("H", "H"), [[0.0, 4.0, 4.0], [2.0, 4.0, 4.0]], np.diag([4.0, 8.0, 8.0]), (True, False, False))


def plot(out: Path, reference: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.0), dpi=150)
    for name, color, ref in (("up", "C0", reference[0]), ("down", "C3", reference[1])):
        data = np.load(out / f"bands_{name}.npz")
        e = (data["energies_hartree"] - float(data["fermi_hartree"])) * HARTREE_TO_EV
        ax.plot(data["x"], e, color=color, lw=1.2, label=[f"spin {name} (elct bands)"] + [None] * (e.shape[1] - 1))
        ax.plot(data["x"], (ref - float(data["fermi_hartree"])) * HARTREE_TO_EV, "o", color=color, ms=2.5,
                mfc="none", label=[f"PySCF KUKS {name}"] + [None] * (ref.shape[1] - 1))
    ax.axhline(0.0, color="0.4", lw=0.6, ls=":")
    ax.set_xticks([data["x"][0], data["x"][-1]], ["Γ", "X"])
    ax.set_xlim(data["x"][0], data["x"][-1])
    ax.set_ylim(-8, 12)
    ax.set_ylabel("E - E_F (eV)")
    ax.set_title("H-chain ferromagnet, PBE, 2S = 1 per cell", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "h_chain_spin_bands.png")
    plt.close(fig)
    return out / "h_chain_spin_bands.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/spin_bands")
    out = Path(parser.parse_args().out)
    ai2dft.enable_float64()
    record, converged = spin_crystal_record(CHAIN, SETTINGS, "fixed")
    assert converged
    write_deeph_dock(out / "folder", record)
    elct(["bands", "--folder", str(out / "folder"), "--out", str(out), "--path", "GX", "--npoints", "30",
          "--nbands", "0", "--fermi-kmesh", "16", "1", "1"])
    mf = _run_kuks(build_cell(CHAIN, SETTINGS), SETTINGS, "fixed")
    kpts = np.load(out / "bands_up.npz")["kpts_frac"]
    reference = np.sort(np.asarray(mf.get_bands(mf.cell.get_abs_kpts(kpts))[0]), axis=-1)  # [2, n_k, n_ao]
    up, down = (np.load(out / f"bands_{s}.npz")["energies_hartree"] for s in ("up", "down"))
    print(f"max |elct bands - PySCF KUKS bands| = {max(np.abs(up - reference[0]).max(), np.abs(down - reference[1]).max()):.2e} Ha")
    print(f"exchange splitting of the lowest band at Gamma: {(down[0, 0] - up[0, 0]) * HARTREE_TO_EV:.3f} eV")
    print(f"figure: {plot(out, reference)}")


if __name__ == "__main__":
    main()

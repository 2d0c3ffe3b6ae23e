"""Memory of value + gradient of Omega(H) with exact exchange, against molecule size; the largest that fits.

Linear alkanes C_n H_2n+2 (zig-zag chain) at B3LYP/def2-SVP with its JK-fit auxiliary basis
(def2-svp-jkfit) and PySCF's level-3 grid. For each n, PySCF gives nao, naux and the number of grid
points; XLA's compiled memory analysis of ``jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))``
for those shapes (abstract arrays: nothing is allocated) gives the arguments (the System: AO values
and gradients on the grid [4, ngrid, nao], the DF tensor [naux, nao, nao], ...) and the temporaries at
XLA's peak. Beyond the largest --measure size, ngrid, nao and naux are extrapolated linearly per CH2
unit and the same analysis finds the largest n under --budget-gib (bisection on compiled sizes).

    python benchmarks/exchange_memory.py [--measure 2 4 8] [--budget-gib 24]
"""
from __future__ import annotations

import argparse

import jax
import numpy as np
from pyscf import dft, gto
from pyscf.df.addons import make_auxmol

import ai2dft

ai2dft.enable_float64()
GIB = 2.0**30


def alkane(n: int) -> str:
    """Zig-zag C_n H_2n+2 in Angstrom: C-C 1.54 A, C-H 1.09 A."""
    atoms = []
    for i in range(n):
        x, y, s = 1.26 * i, 0.445 * (-1) ** i, (-1) ** i
        atoms += [f"C {x} {y} 0", f"H {x} {y + 0.63 * s} 0.89", f"H {x} {y + 0.63 * s} -0.89"]
    atoms += [f"H -1.03 {0.445 - 0.36} 0", f"H {1.26 * (n - 1) + 1.03} {0.445 * (-1) ** (n - 1) * 0.2} 0"]
    return "; ".join(atoms)


def sizes(n: int) -> tuple[int, int, int]:
    """(nao, naux, ngrid) of C_n H_2n+2 at def2-SVP / def2-svp-jkfit / grid level 3."""
    mol = gto.M(atom=alkane(n), basis="def2-svp", verbose=0)
    grids = dft.gen_grid.Grids(mol)
    grids.level = 3
    grids.build(with_non0tab=False)
    return mol.nao, make_auxmol(mol, "def2-svp-jkfit").nao, grids.weights.size


def compiled_memory(nao: int, naux: int, ngrid: int) -> dict[str, float]:
    """GiB of arguments, temporaries and output of jit(value_and_grad(free_energy)) for a B3LYP System of these shapes."""
    f64, i32 = np.float64, np.int32
    shapes = dict(overlap=((nao, nao), f64), hcore=((nao, nao), f64), ao=((ngrid, nao), f64),
                  ao_grad=((3, ngrid, nao), f64), weights=((ngrid,), f64), cderi=((naux, nao, nao), f64),
                  n_electrons=((), f64), e_nuc=((), f64), sigma=((), f64), ao_mask=((nao,), f64),
                  ao_atom=((nao,), i32), ao_l=((nao,), i32), ao_m=((nao,), i32))
    system = ai2dft.System(**{k: jax.ShapeDtypeStruct(*v) for k, v in shapes.items()}, xc="b3lyp", smearing_kind="fermi")
    H = jax.ShapeDtypeStruct((nao, nao), f64)
    m = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1)).lower(system, H).compile().memory_analysis()
    return dict(args=m.argument_size_in_bytes / GIB, temp=m.temp_size_in_bytes / GIB,
                out=m.output_size_in_bytes / GIB, cderi=naux * nao * nao * 8 / GIB, ao_grid=4 * ngrid * nao * 8 / GIB)


def total(m: dict[str, float]) -> float:
    return m["args"] + m["temp"] + m["out"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", nargs="+", type=int, default=[2, 4, 8], help="alkane lengths n measured")
    parser.add_argument("--budget-gib", type=float, default=24.0)
    args = parser.parse_args()
    print(f"{'n':>4} {'atoms':>5} {'nao':>5} {'naux':>6} {'ngrid':>9} | GiB: {'args':>7} {'temp':>7} {'total':>7} "
          f"{'cderi':>7} {'ao grid':>7}")
    rows = []
    for n in args.measure:
        nao, naux, ngrid = sizes(n)
        rows.append((n, nao, naux, ngrid))
        m = compiled_memory(nao, naux, ngrid)
        print(f"{n:>4} {3 * n + 2:>5} {nao:>5} {naux:>6} {ngrid:>9,} | {m['args']:>12.3f} {m['temp']:>7.3f} "
              f"{total(m):>7.3f} {m['cderi']:>7.3f} {m['ao_grid']:>7.3f}")
    n_arr = np.array([r[0] for r in rows], float)
    fits = [np.polyfit(n_arr, [r[k] for r in rows], 1) for k in (1, 2, 3)]  # nao, naux, ngrid linear in n

    def extrapolated(n: int) -> dict[str, float]:
        return compiled_memory(*(int(round(np.polyval(c, n))) for c in fits))

    lo, hi = rows[-1][0], rows[-1][0] * 2
    while total(extrapolated(hi)) < args.budget_gib:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(extrapolated(mid)) < args.budget_gib else (lo, mid)
    for n in (lo, hi):
        m = extrapolated(n)
        shape = ", ".join(f"{k} {int(round(np.polyval(c, n)))}" for k, c in zip(("nao", "naux", "ngrid"), fits))
        print(f"extrapolated n = {n} ({3 * n + 2} atoms; {shape}): args {m['args']:.2f} temp {m['temp']:.2f} "
              f"total {total(m):.2f} GiB (cderi {m['cderi']:.2f}, AO values on the grid {m['ao_grid']:.2f})")
    print(f"largest C_n H_2n+2 under {args.budget_gib} GiB: n = {lo} heavy atoms")


if __name__ == "__main__":
    main()

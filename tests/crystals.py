"""Shared crystal structures and PySCF reference calculations for the tests (built once per process).

PySCF KRKS references (FFTDF, GTH, Fermi smearing 0.01 Ha, PBE) converged to conv_tol 1e-12; graphene
supercells with seeded displacements; real-space one-electron integrals S_ij(R) from translated copies.
"""
from __future__ import annotations

import functools

import ase
import numpy as np
from pyscf import gto
from pyscf.pbc import gto as pbc_gto

from ai2dft.crystal import CrystalSystem
from ai2dft.pyscf_bridge.cell import make_krks
from elct_jax.data.sampling import make_supercell
from elct_jax.geometry.structure import Structure

GRAPHENE_A, GRAPHENE_C = 2.46, 8.0  # Angstrom; c is the slab period (vacuum ~ 8 A)


def graphene_atoms(pbc=True) -> ase.Atoms:
    a, c = GRAPHENE_A, GRAPHENE_C
    cell = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    return ase.Atoms("C2", positions=[[0, 0, 0], [0, a / np.sqrt(3), 0]], cell=cell, pbc=pbc)


def h_chain(box_ang=8.0, atoms=2) -> Structure:
    """H every 2.0 A along x, ``atoms`` per cell, in a square box (the magnet of tests/test_spin_bands.py)."""
    positions = [[2.0 * n, box_ang / 2, box_ang / 2] for n in range(atoms)]
    return Structure(("H",) * atoms, positions, np.diag([2.0 * atoms, box_ang, box_ang]), (True, False, False))


def graphene_cell(basis: str, pseudo: str = "gth-pbe") -> pbc_gto.Cell:
    atoms = graphene_atoms()
    return pbc_gto.M(a=np.asarray(atoms.cell), atom=[("C", p) for p in atoms.positions], basis=basis,
                     pseudo=pseudo, verbose=0)


def bcc_na_cell() -> pbc_gto.Cell:
    half = 4.23 / 2  # Angstrom, conventional cubic a = 4.23
    lattice = half * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
    return pbc_gto.M(a=lattice, atom="Na 0 0 0", basis="gth-dzvp", pseudo="gth-pbe", spin=1, verbose=0)


def converged_krks(cell, kmesh, ke_cutoff, sigma=0.01, xc="pbe"):
    mf = make_krks(cell, xc=xc, kmesh=kmesh, smearing=("fermi", sigma), ke_cutoff=ke_cutoff)
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    assert mf.converged
    return mf


REFERENCES = {  # name -> (cell builder, k-mesh, ke_cutoff in Hartree); Fermi smearing 0.01 Ha, PBE
    "graphene-szv-331": (lambda: graphene_cell("gth-szv"), (3, 3, 1), 30.0),
    "graphene-dzvp-211": (lambda: graphene_cell("gth-dzvp"), (2, 1, 1), 20.0),
    "graphene-dzvp-441": (lambda: graphene_cell("gth-dzvp"), (4, 4, 1), 50.0),
    "na-dzvp-444": (bcc_na_cell, (4, 4, 4), 50.0),
}


@functools.lru_cache(maxsize=None)
def reference(name: str):
    """(converged PySCF KRKS, CrystalSystem on its mesh), computed once per test session."""
    build, kmesh, ke_cutoff = REFERENCES[name]
    mf = converged_krks(build(), kmesh, ke_cutoff)
    return mf, CrystalSystem.from_pyscf(mf, chunk_size=1024)


def graphene_supercell(repeat, sigma=0.05, seed=0) -> Structure:
    """Flat graphene (a = GRAPHENE_A, 10 A slab period) repeated ``repeat`` times, atoms displaced by N(0, sigma) A."""
    base = Structure(("C", "C"), [[0, 0, 5], [GRAPHENE_A / 2, GRAPHENE_A / (2 * np.sqrt(3)), 5]],
                     [[GRAPHENE_A, 0, 0], [GRAPHENE_A / 2, GRAPHENE_A * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))
    s = make_supercell(base, repeat)
    rng = np.random.default_rng(seed)
    return Structure(s.symbols, s.positions_ang + sigma * rng.normal(size=s.positions_ang.shape), s.lattice_ang, s.pbc)


def real_space_overlaps(structure, basis, graph, intor="int1e_ovlp"):
    """S_ij(R) = <i, home cell | j, cell R> (or another one-electron ``intor``) from PySCF molecular
    integrals between the home cell and translated copies, internal order, keyed (R1, R2, R3, i, j)."""
    shifts = sorted({tuple(map(int, R)) for R in graph.edges["cell_shift"]} | {(0, 0, 0)})
    home = list(zip(structure.symbols, structure.positions_ang.tolist()))
    images = [(s, (p + np.array(R) @ structure.lattice_ang).tolist()) for R in shifts for s, p in home]
    mol0 = gto.M(atom=home, basis=basis.name, spin=None, verbose=0)
    mol_r = gto.M(atom=images, basis=basis.name, spin=None, verbose=0)
    S = gto.intor_cross(intor, mol0, mol_r)
    images_syms = [s for s, _ in images]
    S = S[basis.permutation(structure.symbols, "pyscf")][:, basis.permutation(images_syms, "pyscf")]
    off0 = basis.ao_offsets(structure.symbols)
    off_r = basis.ao_offsets(images_syms)
    n = structure.n_atoms
    return {
        (*R, i, j): S[off0[i] : off0[i + 1], off_r[r * n + j] : off_r[r * n + j + 1]]
        for r, R in enumerate(shifts)
        for i in range(n)
        for j in range(n)
    }

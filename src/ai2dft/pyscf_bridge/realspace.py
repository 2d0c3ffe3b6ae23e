"""Real-space blocks M_ij(R) = <i, 0|M|j, R> of crystal matrices from a k-mesh, unaliased and checked.

The inverse Bloch transform of M(k) on a Gamma-centred k-mesh gives M(R) exactly only when the Born-von Karman
supercell of the mesh covers the interaction range (DESIGN.md section 3). :func:`real_space_mesh` picks the blocks
(atom pairs and R with max |S_ij(R)| above ``overlap_tol``, from direct real-space overlaps: molecular integrals
between the cell and translated copies), the smallest k-mesh covering them (or the one given), and checks the
transformed S(R) against the direct overlaps. The crystal labels (``labels.crystal_labels``, KRKS, and
``spin_labels.spin_crystal_labels``, KUKS) transform their Fock and density matrices on that mesh.
Convention: M(k) = sum_R exp(i k.R) M(R) (PySCF's and DeepH's); blocks in PySCF AO order within each atom.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from pyscf import gto

from ai2dft.bloch import phases

Block = dict  # {(R1, R2, R3, i, j): ndarray [n_ao(i), n_ao(j)]}, atoms 0-based, Hartree


@dataclass(frozen=True)
class RealSpaceMesh:
    """keys: the kept blocks (R1, R2, R3, i, j); mesh: the k-mesh of the transform; kpts [n_k, 3] its absolute
    k-points (1/Bohr); S_k [n_k, n_ao, n_ao] S(k) there; S: the blocks of S(R) from it; max_overlap_deviation:
    max |S(R) transformed - S(R) direct| over the kept blocks."""

    keys: list
    mesh: tuple[int, int, int]
    kpts: np.ndarray
    S_k: np.ndarray
    S: Block
    max_overlap_deviation: float


def real_space_mesh(cell, pbc, settings) -> RealSpaceMesh:
    """The blocks, k-mesh and S(R) of a crystal at the label ``settings`` (``overlap_tol``, ``alias_tol``,
    ``on_alias``, ``realspace_kmesh``: None picks the smallest covering mesh); raises (or warns, ``on_alias``)
    when S(R) from the mesh differs from the direct overlaps by more than ``alias_tol``. Cheap: no SCF."""
    S_direct = direct_overlaps(cell, settings.overlap_tol, pbc, vacuum_tol=settings.alias_tol)
    keys = _kept_keys(cell, S_direct, settings.overlap_tol)
    mesh = settings.realspace_kmesh or _covering_mesh(keys)
    kpts = cell.make_kpts(mesh)
    S_k = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kpts))
    S = blocks_from_kmesh(cell, S_k, mesh, keys, settings.alias_tol)
    return RealSpaceMesh(keys, mesh, kpts, S_k, S, _check_aliasing(cell, S, S_direct, mesh, settings))


def direct_overlaps(cell, tol: float, pbc=(True, True, True), vacuum_tol: float = 1e-6) -> dict:
    """{R: S(R) [n_ao, n_ao]} = <i, 0|j, R> from molecular integrals between the cell and its copy
    translated by R (integer lattice coordinates). Shells of growing max |R_a| (periodic directions
    only) are added until one whole shell has max |S| <= tol. Raises when an image across a
    non-periodic (vacuum) direction overlaps by more than vacuum_tol."""
    overlap = _translated_overlap(cell)
    out, n = {}, 0
    while True:
        ranges = [range(-n, n + 1) if p else range(1) for p in pbc]
        shell = [R for R in itertools.product(*ranges) if max(map(abs, R)) == n]
        out.update({R: overlap(R) for R in shell})
        if max(np.abs(out[R]).max() for R in shell) <= tol:
            break
        n += 1
    across = [R for R in itertools.product(*[range(-n, n + 1) if p else (-1, 0, 1) for p in pbc])
              if any(r and not p for r, p in zip(R, pbc))]  # every image across a vacuum direction (faces too)
    worst = max((np.abs(overlap(R)).max(), R) for R in across) if not all(pbc) else (0.0, None)
    if worst[0] > vacuum_tol:
        raise ValueError(f"the vacuum is too thin: overlap {worst[0]:.2e} with the periodic image at "
                         f"R={worst[1]} across a non-periodic direction (tolerance {vacuum_tol:.0e}); "
                         f"lengthen that lattice vector")
    return out


def _translated_overlap(cell):
    """Function R -> [n_ao, n_ao] overlap of the cell's AOs with those of the cell shifted by R."""
    mol = cell.to_mol()
    coords, lattice = cell.atom_coords(), cell.lattice_vectors()
    shifted = mol.copy()

    def overlap(R):
        shifted.set_geom_(coords + np.asarray(R) @ lattice, unit="Bohr")
        return gto.intor_cross("int1e_ovlp", mol, shifted)

    return overlap


def _kept_keys(cell, S_direct: dict, tol: float) -> list:
    pairs = list(itertools.product(range(cell.natm), repeat=2))
    return [(*R, i, j) for R, s in S_direct.items() for i, j in pairs
            if np.abs(_atom_block(cell, s, i, j)).max() > tol]


def _covering_mesh(keys: list) -> tuple[int, int, int]:
    """Smallest k-mesh whose Born-von Karman supercell holds every kept R exactly once."""
    R = np.array([k[:3] for k in keys])
    return tuple(int(n) for n in R.max(axis=0) - R.min(axis=0) + 1)


def _phases(cell, mesh, R: np.ndarray) -> np.ndarray:
    """[n_k, n_R] exp(i k.R) for the Gamma-centred mesh of cell.make_kpts(mesh)."""
    frac = cell.get_scaled_kpts(cell.make_kpts(mesh))  # [n_k, 3], k in units of reciprocal vectors
    return phases(frac, R)


def blocks_from_kmesh(cell, mat_k: np.ndarray, mesh, keys: list, imag_tol: float) -> Block:
    """Inverse Bloch transform M(R) = 1/N_k sum_k exp(-i k.R) M(k) of mat_k [n_k, n_ao, n_ao] at the
    R of ``keys``, cut into atom blocks. Raises if an imaginary part exceeds imag_tol."""
    R_list = sorted({k[:3] for k in keys})
    phase = _phases(cell, mesh, np.array(R_list))  # [n_k, n_R]
    mat_R = np.einsum("kr,kij->rij", phase.conj(), mat_k) / len(mat_k)
    if np.abs(mat_R.imag).max() > imag_tol:  # M(-k) != conj(M(k)): integration noise of the mesh
        raise RuntimeError(f"real-space matrices have imaginary parts up to {np.abs(mat_R.imag).max():.2e} "
                           f"(tolerance {imag_tol:.0e}): the FFT/multigrid mesh is too coarse for matrix "
                           f"elements this accurate; raise ke_cutoff_Ha")
    index = {R: n for n, R in enumerate(R_list)}
    return {k: _atom_block(cell, mat_R[index[k[:3]]].real, k[3], k[4]) for k in keys}


def _atom_block(cell, matrix: np.ndarray, i: int, j: int) -> np.ndarray:
    """[n_ao(i), n_ao(j)] copy of the atom-(i, j) block of a cell matrix [..., n_ao, n_ao]."""
    off = cell.aoslice_by_atom()[:, 2:4]
    return np.array(matrix[..., off[i, 0]:off[i, 1], off[j, 0]:off[j, 1]])


def _check_aliasing(cell, S: Block, S_direct: dict, mesh, settings) -> float:
    """Max |S(R) transformed - S(R) direct| over the kept blocks; error or warn above alias_tol."""
    worst, where = 0.0, None
    for key, block in S.items():
        dev = float(np.abs(block - _atom_block(cell, S_direct[key[:3]], key[3], key[4])).max())
        if dev > worst:
            worst, where = dev, key
    if worst > settings.alias_tol:
        bigger = tuple(2 * n if n > 1 else 1 for n in mesh)
        message = (f"real-space overlaps from the {mesh} k-mesh differ from direct real-space overlaps by "
                   f"{worst:.3e} (block {where}, tolerance {settings.alias_tol:.1e}): the Born-von Karman "
                   f"supercell does not cover the interaction range, H(R) is aliased; use a larger "
                   f"realspace_kmesh (e.g. {bigger}) or leave it None to choose one automatically")
        if settings.on_alias == "error":
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
    return worst

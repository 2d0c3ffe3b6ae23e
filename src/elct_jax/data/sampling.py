"""Structure sampling recipes for dataset generation: normal modes at a temperature, random Gaussian
displacements, random strains + displacements of crystal supercells.

Every sampler takes an explicit ``numpy.random.Generator``; ``rng_for(seed, index)`` makes the
generator of structure ``index`` so a dataset is a deterministic function of (seed, index).
Samples with two atoms (or periodic images) closer than ``min_distance_ang`` are rejected and
redrawn from the same generator. Periodic samples come back with their atoms wrapped into the home cell.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.neighborlist import primitive_neighbor_list

from elct_jax.geometry.structure import Structure

from ai2dft.units import AMU_ME, BOHR_ANG, HARTREE_CM, KB_HARTREE


def rng_for(seed: int, index: int) -> np.random.Generator:
    """The generator of structure ``index`` of a dataset with ``seed`` (independent streams)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


@dataclass(frozen=True)
class NormalModes:
    """Vibrational normal modes of a molecule (translations and rotations projected out).

    frequencies  [n_modes] angular frequencies omega (Hartree, hbar = 1), ascending
    modes        [n_modes, n_atoms, 3] Cartesian displacement (Bohr) per unit mass-weighted normal
                 coordinate q (Bohr * sqrt(m_e)): dx = sum_k q_k modes[k]
    """

    frequencies: np.ndarray
    modes: np.ndarray

    def save(self, path: str | Path) -> None:
        np.savez(path, frequencies=self.frequencies, modes=self.modes)

    @classmethod
    def load(cls, path: str | Path) -> "NormalModes":
        with np.load(path, allow_pickle=False) as f:
            return cls(f["frequencies"], f["modes"])


def rigid_body_basis(positions_bohr: np.ndarray, masses_amu: np.ndarray) -> np.ndarray:
    """[3 n_atoms, n_rigid] orthonormal mass-weighted translations and rotations (5 for linear)."""
    m = np.sqrt(np.asarray(masses_amu) * AMU_ME)[:, None]  # [n_atoms, 1]
    r = positions_bohr - (m**2 * positions_bohr).sum(0) / (m**2).sum()
    vectors = [(m * e).ravel() for e in np.eye(3)]
    vectors += [(m * np.cross(e, r)).ravel() for e in np.eye(3)]
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s > 1e-6 * s.max()]


def normal_modes(hessian: np.ndarray, masses_amu: np.ndarray, positions_ang: np.ndarray,
                 soft_cm: float = 50.0) -> NormalModes:
    """Normal modes from a Cartesian Hessian [3 n_atoms, 3 n_atoms] (Hartree/Bohr^2, atom-major).

    The mass-weighted Hessian is diagonalised in the complement of the rigid-body motions, so every
    mode has zero net translation and rotation to first order (Eckart conditions). Modes with
    |frequency| < soft_cm (cm^-1) are dropped with a warning; a larger imaginary frequency means
    the geometry is not a minimum and raises.
    """
    masses = np.asarray(masses_amu, dtype=np.float64)
    n = len(masses)
    if hessian.shape != (3 * n, 3 * n):
        raise ValueError(f"hessian must have shape ({3 * n}, {3 * n}), got {hessian.shape}")
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses * AMU_ME), 3)  # [3 n]
    h_mw = 0.5 * (hessian + hessian.T) * np.outer(inv_sqrt_m, inv_sqrt_m)
    rigid = rigid_body_basis(np.asarray(positions_ang) / BOHR_ANG, masses)
    u, _, _ = np.linalg.svd(rigid, full_matrices=True)
    internal = u[:, rigid.shape[1]:]  # [3 n, n_vib] orthonormal complement
    w2, vecs = np.linalg.eigh(internal.T @ h_mw @ internal)
    freq_cm = np.sign(w2) * np.sqrt(np.abs(w2)) * HARTREE_CM
    if freq_cm.min() < -soft_cm:
        raise ValueError(f"imaginary frequencies {freq_cm[freq_cm < -soft_cm].round(1)} cm^-1: the base "
                         f"geometry is not a minimum; optimise it before normal-mode sampling")
    keep = freq_cm >= soft_cm
    if not keep.all():
        warnings.warn(f"dropping {int((~keep).sum())} soft mode(s) {freq_cm[~keep].round(1)} cm^-1", stacklevel=2)
    modes = (internal @ vecs[:, keep]).T * inv_sqrt_m  # [n_modes, 3 n]
    return NormalModes(np.sqrt(w2[keep]), modes.reshape(-1, n, 3))


def mode_variances(frequencies: np.ndarray, temperature_K: float, quantum: bool) -> np.ndarray:
    """[n_modes] <q_k^2> of the harmonic Boltzmann distribution (Bohr^2 m_e): kT/omega^2 classically,
    coth(omega / 2kT) / (2 omega) quantum mechanically (the exact position distribution, Gaussian too)."""
    kT = KB_HARTREE * temperature_K
    if temperature_K < 0 or (kT == 0 and not quantum):
        raise ValueError(f"temperature_K must be > 0 (>= 0 for quantum sampling), got {temperature_K}")
    if not quantum:
        return kT / frequencies**2
    x = frequencies / (2 * kT) if kT > 0 else np.full_like(frequencies, np.inf)
    return 1.0 / (2 * frequencies * np.tanh(x))


def sample_normal_modes(base: Structure, modes: NormalModes, temperature_K: float, rng: np.random.Generator,
                        quantum: bool = False, min_distance_ang: float = 0.5,
                        max_attempts: int = 100) -> Structure:
    """Harmonic displacement sum_k q_k modes[k], q_k ~ N(0, <q_k^2>(T)) independently per mode."""
    sd = np.sqrt(mode_variances(modes.frequencies, temperature_K, quantum))

    def draw():
        q = rng.standard_normal(len(sd)) * sd
        return base.positions_ang + np.einsum("k,kai->ai", q, modes.modes) * BOHR_ANG

    return _first_valid(base, draw, min_distance_ang, max_attempts)


def sample_random_displacements(base: Structure, sigma_ang: float, rng: np.random.Generator,
                                min_distance_ang: float = 0.5, max_attempts: int = 100) -> Structure:
    """Independent Gaussian displacement of every Cartesian coordinate, standard deviation sigma_ang."""
    if sigma_ang < 0:
        raise ValueError(f"sigma_ang must be >= 0, got {sigma_ang}")
    draw = lambda: base.positions_ang + sigma_ang * rng.standard_normal(base.positions_ang.shape)  # noqa: E731
    return _first_valid(base, draw, min_distance_ang, max_attempts)


def sample_crystal(base: Structure, sigma_ang: float, strain: float, rng: np.random.Generator,
                   min_distance_ang: float = 0.5, max_attempts: int = 100) -> Structure:
    """Random symmetric Cartesian strain (components uniform in [-strain, strain], projected onto the
    span of the periodic lattice vectors, so vacuum directions stay unstrained) applied to lattice and
    positions, followed by Gaussian displacements of standard deviation sigma_ang. Atoms are returned
    wrapped into the home cell (``Structure.wrapped``), as every sampler here returns crystals."""
    if base.lattice_ang is None or not base.is_periodic:
        raise ValueError("sample_crystal needs a periodic structure with a lattice")
    if not 0 <= strain < 0.5 or sigma_ang < 0:
        raise ValueError(f"need 0 <= strain < 0.5 and sigma_ang >= 0, got strain={strain}, sigma_ang={sigma_ang}")
    q, _ = np.linalg.qr(base.lattice_ang[np.array(base.pbc)].T)  # [3, n_periodic] orthonormal
    project = q @ q.T
    for _ in range(max_attempts):
        eps = np.triu(rng.uniform(-strain, strain, (3, 3)))
        deform = np.eye(3) + project @ (eps + np.triu(eps, 1).T) @ project
        lattice = base.lattice_ang @ deform
        positions = base.positions_ang @ deform + sigma_ang * rng.standard_normal(base.positions_ang.shape)
        if _is_valid(base, positions, lattice, min_distance_ang):
            return Structure(base.symbols, positions, lattice, base.pbc).wrapped()
    raise RuntimeError(_rejection_message(max_attempts, min_distance_ang))


def make_supercell(base: Structure, repeats: tuple[int, int, int]) -> Structure:
    """The base crystal repeated ``repeats`` times along a1, a2, a3 (ase ordering of atoms)."""
    repeats = tuple(int(n) for n in repeats)
    if len(repeats) != 3 or min(repeats) < 1:
        raise ValueError(f"supercell repeats must be three positive integers, got {repeats}")
    if any(n > 1 and not p for n, p in zip(repeats, base.pbc)):
        raise ValueError(f"cannot repeat {repeats} along a non-periodic direction (pbc={base.pbc})")
    return Structure.from_ase(base.to_ase().repeat(repeats))


def min_distance_ang(positions_ang: np.ndarray, lattice_ang, pbc, cutoff_ang: float) -> float:
    """Smallest distance between two atoms or periodic images, or inf if none is within cutoff_ang."""
    cell = np.zeros((3, 3)) if lattice_ang is None else lattice_ang
    d = primitive_neighbor_list("d", pbc, cell, positions_ang, cutoff_ang, self_interaction=False)
    return float(d.min()) if len(d) else float("inf")


def _is_valid(base: Structure, positions: np.ndarray, lattice, min_dist: float) -> bool:
    return min_distance_ang(positions, lattice, base.pbc, min_dist) >= min_dist


def _first_valid(base: Structure, draw, min_dist: float, max_attempts: int) -> Structure:
    for _ in range(max_attempts):
        positions = draw()
        if _is_valid(base, positions, base.lattice_ang, min_dist):
            return Structure(base.symbols, positions, base.lattice_ang, base.pbc).wrapped()
    raise RuntimeError(_rejection_message(max_attempts, min_dist))


def _rejection_message(max_attempts: int, min_dist: float) -> str:
    return (f"{max_attempts} samples in a row had atoms closer than {min_dist} A; lower the temperature, "
            f"sigma_ang or strain, or min_distance_ang")

"""Structure sampling: normal modes against a real PySCF Hessian (Eckart conditions, harmonic energy
distribution), random displacements, crystal strains, rejection and determinism."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from ai2dft.pyscf_bridge.labels import DFTSettings, molecule_hessian
from ai2dft.units import BOHR_ANG, HARTREE_CM
from elct_jax.data import sampling
from elct_jax.geometry.structure import Structure

WATER = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
A = 2.46
GRAPHENE = Structure(("C", "C"), [[0, 0, 5], [A / 2, A / (2 * np.sqrt(3)), 5]],
                     [[A, 0, 0], [A / 2, A * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))
N_SAMPLES = 2000


@pytest.fixture(scope="module")
def water_hessian():
    """Cartesian Hessian (Hartree/Bohr^2) and masses (amu) of water, LDA/STO-3G, from PySCF."""
    return molecule_hessian(WATER, DFTSettings(basis="sto-3g", xc="lda", grid_level=3))


@pytest.fixture(scope="module")
def water_modes(water_hessian):
    return sampling.normal_modes(*water_hessian, WATER.positions_ang)


def _displacements_bohr(structures) -> np.ndarray:
    """[n_samples, 3 n_atoms] displacements from WATER, Bohr."""
    return np.array([(s.positions_ang - WATER.positions_ang).ravel() for s in structures]) / BOHR_ANG


def _harmonic_energies(structures, hessian) -> np.ndarray:
    """[n_samples] 0.5 dx^T H dx with PySCF's raw Cartesian Hessian, Hartree."""
    dx = _displacements_bohr(structures)
    return 0.5 * np.einsum("si,ij,sj->s", dx, hessian, dx)


def _samples(modes, temperature_K, quantum, seed=0):
    return [sampling.sample_normal_modes(WATER, modes, temperature_K, sampling.rng_for(seed, i), quantum)
            for i in range(N_SAMPLES)]


def test_normal_modes_have_no_net_translation_or_rotation(water_hessian, water_modes):
    _, masses = water_hessian
    assert water_modes.modes.shape == (3, 3, 3)  # 3N - 6 vibrations of a bent triatomic
    assert np.all(water_modes.frequencies * HARTREE_CM > 1000)  # O-H bend and stretches
    structures = _samples(water_modes, 300.0, False)[:200]
    dx = _displacements_bohr(structures).reshape(-1, 3, 3)  # [s, atom, xyz]
    r0 = WATER.positions_ang / BOHR_ANG
    r0 = r0 - (masses[:, None] * r0).sum(0) / masses.sum()
    translation = np.einsum("a,sai->si", masses, dx)
    rotation = np.einsum("a,sai->si", masses, np.cross(r0[None], dx))
    scale = np.einsum("a,sai->s", masses, np.abs(dx)).max()
    assert np.abs(translation).max() < 1e-12 * scale
    assert np.abs(rotation).max() < 1e-12 * scale * np.abs(r0).max()
    assert np.abs(dx).max() > 1e-3  # the samples do move


def test_classical_harmonic_energy_matches_temperature(water_hessian, water_modes):
    """2U/kT of classical samples is chi^2 with n_modes degrees of freedom (equipartition)."""
    temperature = 300.0
    kT = sampling.KB_HARTREE * temperature
    energies = _harmonic_energies(_samples(water_modes, temperature, False), water_hessian[0])
    n_modes = len(water_modes.frequencies)
    x = 2 * energies / kT
    # mean of chi^2_n is n, variance 2n: 5 standard errors of N_SAMPLES draws
    assert abs(x.mean() - n_modes) < 5 * np.sqrt(2 * n_modes / N_SAMPLES)
    assert scipy.stats.kstest(x, scipy.stats.chi2(n_modes).cdf).pvalue > 1e-3
    # a wrong temperature is detected
    assert scipy.stats.kstest(x / 1.2, scipy.stats.chi2(n_modes).cdf).pvalue < 1e-6


def test_quantum_sampling_at_zero_temperature_has_zero_point_potential_energy(water_hessian, water_modes):
    """Ground-state oscillators: <U> = sum_k omega_k / 4 (half the zero-point energy, virial theorem)."""
    energies = _harmonic_energies(_samples(water_modes, 0.0, True, seed=1), water_hessian[0])
    expected = water_modes.frequencies.sum() / 4
    per_mode_sd = water_modes.frequencies / 4 * np.sqrt(2)  # U_k = (omega/4) chi^2_1
    stderr = np.sqrt((per_mode_sd**2).sum() / N_SAMPLES)
    assert abs(energies.mean() - expected) < 5 * stderr
    assert expected > 5 * 1.5 * sampling.KB_HARTREE * 300  # far above the classical 300 K value 3/2 kT


def test_imaginary_frequency_is_refused(water_hessian):
    hessian, masses = water_hessian
    with pytest.raises(ValueError, match="imaginary"):
        sampling.normal_modes(-hessian, masses, WATER.positions_ang)


def test_modes_survive_save_and_load(tmp_path, water_modes):
    water_modes.save(tmp_path / "modes.npz")
    loaded = sampling.NormalModes.load(tmp_path / "modes.npz")
    np.testing.assert_array_equal(loaded.modes, water_modes.modes)
    np.testing.assert_array_equal(loaded.frequencies, water_modes.frequencies)


def test_random_displacements_are_gaussian_seeded_and_reject_close_atoms():
    sigma = 0.1
    samples = [sampling.sample_random_displacements(WATER, sigma, sampling.rng_for(5, i)) for i in range(400)]
    dx = np.array([s.positions_ang - WATER.positions_ang for s in samples]).ravel()
    assert abs(dx.std() - sigma) < 5 * sigma / np.sqrt(2 * dx.size)
    assert abs(dx.mean()) < 5 * sigma / np.sqrt(dx.size)
    again = sampling.sample_random_displacements(WATER, sigma, sampling.rng_for(5, 3))
    np.testing.assert_array_equal(again.positions_ang, samples[3].positions_ang)
    assert not np.allclose(samples[3].positions_ang, samples[4].positions_ang)
    # large displacements: every accepted sample respects the threshold, although raw draws would not
    wild = [sampling.sample_random_displacements(WATER, 0.4, sampling.rng_for(0, i), min_distance_ang=0.8)
            for i in range(100)]
    closest = [sampling.min_distance_ang(s.positions_ang, None, s.pbc, 5.0) for s in wild]
    assert min(closest) >= 0.8
    raw = WATER.positions_ang + 0.4 * np.random.default_rng(0).standard_normal((100, 3, 3))
    raw_closest = [sampling.min_distance_ang(p, None, WATER.pbc, 5.0) for p in raw]
    assert min(raw_closest) < 0.8


def test_impossible_threshold_raises():
    with pytest.raises(RuntimeError, match="closer than 2.0 A"):
        sampling.sample_random_displacements(WATER, 0.01, sampling.rng_for(0, 0), min_distance_ang=2.0,
                                             max_attempts=5)


def test_crystal_strain_stays_in_the_periodic_plane():
    strain = 0.05
    epsilons = []
    for i in range(50):
        s = sampling.sample_crystal(GRAPHENE, 0.0, strain, sampling.rng_for(2, i))
        eps = np.linalg.solve(GRAPHENE.lattice_ang, s.lattice_ang) - np.eye(3)
        np.testing.assert_allclose(eps, eps.T, atol=1e-12)
        np.testing.assert_allclose(s.lattice_ang[2], GRAPHENE.lattice_ang[2], atol=1e-12)  # vacuum vector
        frac = np.linalg.solve(s.lattice_ang.T, s.positions_ang.T).T
        frac0 = np.linalg.solve(GRAPHENE.lattice_ang.T, GRAPHENE.positions_ang.T).T
        np.testing.assert_allclose(frac, frac0, atol=1e-12)
        epsilons.append(eps)
    eps = np.array(epsilons)
    assert np.abs(eps).max() <= strain
    assert np.abs(eps[:, 2, :]).max() < 1e-12 and np.abs(eps[:, :, 2]).max() < 1e-12
    assert np.abs(eps[:, :2, :2]).max() > 0.8 * strain  # the in-plane range is used


def test_crystal_displacements_and_supercell():
    cell = sampling.make_supercell(GRAPHENE, (2, 2, 1))
    assert cell.n_atoms == 8
    np.testing.assert_allclose(cell.lattice_ang[:2], 2 * GRAPHENE.lattice_ang[:2])
    s = sampling.sample_crystal(cell, 0.05, 0.0, sampling.rng_for(0, 0))
    frac = (s.positions_ang - cell.positions_ang) @ np.linalg.inv(cell.lattice_ang)
    displacement = (frac - np.round(frac)) @ cell.lattice_ang  # up to the lattice vectors of wrapping
    assert 0.01 < np.abs(displacement).max() < 0.5
    with pytest.raises(ValueError, match="non-periodic"):
        sampling.make_supercell(GRAPHENE, (1, 1, 2))
    with pytest.raises(ValueError, match="periodic structure"):
        sampling.sample_crystal(WATER, 0.05, 0.01, sampling.rng_for(0, 0))


def test_crystal_samples_are_wrapped_into_the_home_cell():
    """An atom displaced across a cell face is stored inside the cell at the same periodic position."""
    lattice = np.array([[2.46, 0.0, 0.0], [-1.23, 2.13, 0.0], [0.0, 0.0, 10.0]])
    base = Structure(("C", "C"), np.array([[0.0, 0.0, 5.0], [0.0, 1.42, 5.0]]), lattice, (True, True, True))
    samples = [sampling.sample_crystal(base, 0.05, 0.01, sampling.rng_for(0, n)) for n in range(20)]
    fracs = np.array([s.positions_ang @ np.linalg.inv(s.lattice_ang) for s in samples])
    assert np.all((fracs >= 0) & (fracs < 1))
    unwrapped = Structure(("C", "C"), np.array([[-0.1, -0.1, 5.0], [0.0, 1.42, 5.0]]), lattice, (True, True, True))
    wrapped = unwrapped.wrapped()
    shift = (wrapped.positions_ang - unwrapped.positions_ang) @ np.linalg.inv(lattice)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-12)  # moved by lattice vectors only
    assert np.any(np.round(shift) != 0)


def test_labels_need_a_functional_the_dft_layer_evaluates():
    """--xc tpss (a meta-GGA) would write labels the DFT layer cannot use: refused when the settings are made."""
    with pytest.raises(ValueError, match="xc='tpss': labels must use a functional the DFT layer"):
        DFTSettings(basis="sto-3g", xc="tpss")
    assert DFTSettings(basis="sto-3g", xc="PBE").xc == "PBE"
    assert DFTSettings(basis="sto-3g", xc="B3LYP").xc == "B3LYP"  # global hybrids label molecules

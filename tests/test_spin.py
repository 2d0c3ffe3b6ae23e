"""The collinear spin-polarized molecule kind (SpinSystem, H [2, nao, nao]) against libxc and PySCF UKS, float64.

References: density-fitted UKS, def2-SVP, grid level 2 (the parity does not depend on it; PySCF's level-3 default
costs half as much again), PySCF's default auxiliary basis, conv_tol 1e-12: O2 triplet (PBE), OH doublet (LSDA:
Slater + VWN5, through the UKS labels), CH2 triplet (B3LYP: exact exchange per spin).
The solvers (free_energy, scf, minimize_free_energy) are the closed-shell ones, unchanged.
"""
import dataclasses
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from pyscf import dft, gto
from pyscf.dft import libxc
from pyscf.scf.addons import smearing_

import ai2dft
from ai2dft import xc, xc_spin
from ai2dft.pyscf_bridge.labels import DFTSettings, build_molecule, molecule_labels
from ai2dft.pyscf_bridge.spin_labels import spin_molecule_labels

GEOMETRIES = {  # Angstrom; 2S = N_alpha - N_beta
    "O2": ("O 0 0 0; O 0 0 1.2075", 2),
    "OH": ("O 0 0 0; H 0 0 0.9697", 1),
    "CH2": ("C 0 0 0.1030; H 0 0.9944 -0.3090; H 0 -0.9944 -0.3090", 2),
}
XC_NAMES = [",vwn", ",vwn_rpa", ",pw", ",pw_mod", ",pbe", ",lyp", "lda,vwn", "pbe", "b3lyp"]  # every part
SLATER = 0.75 * (3.0 / np.pi) ** (1.0 / 3.0)

ENERGY, FOCK = jax.jit(ai2dft.energy), jax.jit(ai2dft.fock)
OMEGA_AND_GRAD = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))


def mole(name: str) -> gto.Mole:
    atoms, spin = GEOMETRIES[name]
    return gto.M(atom=atoms, basis="def2-svp", spin=spin, verbose=0)


@functools.lru_cache(maxsize=None)
def uks(name: str, functional: str) -> dft.uks.UKS:
    mf = dft.UKS(mole(name), xc=functional).density_fit()
    mf.grids.level = 2
    mf.conv_tol = 1e-12
    mf.kernel()
    assert mf.converged
    return mf


@functools.lru_cache(maxsize=None)
def spin_system(name: str, functional: str) -> ai2dft.SpinSystem:
    return ai2dft.SpinSystem.from_pyscf(uks(name, functional))


@pytest.fixture(scope="module")
def o2_densities():
    """libxc's spin=1 GGA input [2, 4, ngrid] of the O2 triplet on its grid, with 50 points added from dense
    regions made fully (rho_beta = 0) and strongly (rho_beta = rho_alpha / 1000) polarized."""
    mf = uks("O2", "pbe")
    ao = dft.numint.eval_ao(mf.mol, mf.grids.coords, deriv=1)
    dm = mf.make_rdm1()
    rho = np.stack([dft.numint.eval_rho(mf.mol, ao, dm[s], xctype="GGA") for s in (0, 1)])
    dense = rho[:, :, rho[0, 0] > 1e-4][:, :, :50].copy()
    dense[1, :, :25] = 0.0
    dense[1, :, 25:] = 1e-3 * dense[0, :, 25:]
    return np.concatenate([rho, dense], axis=2)


@pytest.mark.parametrize("name", XC_NAMES)
def test_xc_matches_libxc_point_by_point(name, o2_densities):
    """e, vrho (alpha, beta) and vsigma (aa, ab, bb) equal libxc's eval_xc(spin=1), relative to |libxc| + the Slater
    scale of that quantity: to 1e-12 wherever both spin densities exceed 1e-10 (strongly polarized points included);
    at fully polarized points (rho_beta = 0, which libxc raises to its threshold before evaluating) e to 1e-10, vrho to
    1e-8 and vsigma to 1e-5 (there libxc's own values jitter by ~4e-6 between rho_beta = 1e-14 and 1e-13: LYP's
    vsigma_bb is 14.86729, 14.86725, 14.86725 at 1e-14, 1e-13, 1e-12, ours 14.86726 throughout); e everywhere to
    1e-10 relative + 1e-12 |exc| (libxc's exc is that of the density with each spin raised to its threshold, at most
    1e-12 Bohr^-3, so (rho_a + rho_b) exc differs from its energy density by up to that much)."""
    r = o2_densities
    gga = xc.is_gga(name)
    rho = r[:, 0]
    sigma = np.stack([np.sum(r[a, 1:] * r[b, 1:], axis=0) for a, b in ((0, 0), (0, 1), (1, 1))])
    exc, vxc = libxc.eval_xc(name, r if gga else rho, spin=1, deriv=1)[:2]
    total = rho.sum(0)
    refs = (total * exc, vxc[0].T) + ((vxc[1].T,) if gga else ())
    ours = xc_spin.potentials(name, jnp.asarray(rho), jnp.asarray(sigma) if gga else None)
    ex = SLATER * total ** (4.0 / 3.0)
    scales = (ex, ex / total, ex / (4.0 * (3.0 * np.pi**2) ** (2.0 / 3.0) * total ** (8.0 / 3.0)))
    both = rho.min(0) > 1e-10
    full = (rho[0] > 1e-10) & (rho[1] == 0.0)
    assert both.sum() > 0.8 * both.size and full.sum() == 25
    for label, a, b, scale, tol_full in zip(("e", "vrho", "vsigma"), ours, refs, scales, (1e-10, 1e-8, 1e-5)):
        relative = np.abs(np.asarray(a) - b) / (np.abs(b) + scale)
        assert np.max(relative[..., both]) <= 1e-12, f"{name} {label}: {np.max(relative[..., both]):.2e}"
        assert np.max(relative[..., full]) <= tol_full, f"{name} {label}, rho_beta = 0: {np.max(relative[..., full]):.2e}"
    assert np.all(np.abs(np.asarray(ours[0]) - refs[0]) <= 1e-10 * (np.abs(refs[0]) + ex) + 1e-12 * np.abs(exc))


def test_unpolarized_limit_equals_closed_shell_xc(o2_densities):
    """rho_alpha = rho_beta = rho/2 (sigma_ss = sigma_ab = sigma/4) gives the closed-shell functional of ai2dft.xc
    (to 1e-13 relative; 1e-18 Ha/Bohr^3 absolute where rho/2 is below a threshold, which libxc applies per spin)."""
    rho = jnp.asarray(o2_densities[:, 0].sum(0))
    sigma = jnp.asarray(np.sum(o2_densities[:, 1:].sum(0) ** 2, axis=0))
    for name in ("lda,vwn", "pbe", "b3lyp"):
        e = xc_spin.energy_density(name, jnp.stack([rho, rho]) / 2, jnp.stack([sigma, sigma, sigma]) / 4)
        np.testing.assert_allclose(np.asarray(e), np.asarray(xc.energy_density(name, rho, sigma)), rtol=1e-13, atol=1e-18)


@pytest.mark.parametrize("name, functional", [("O2", "pbe"), pytest.param("CH2", "b3lyp", marks=pytest.mark.slow)])
def test_energy_and_fock_match_pyscf_uks(name, functional):
    """At PySCF's converged density: E_KS = mf.e_tot (1e-8 Ha), F_alpha, F_beta = mf.get_fock (1e-8 Ha), and with
    no smearing Omega(F_pyscf) = mf.e_tot (1e-8 Ha). (LSDA: the OH doublet in ``test_spin_labels_and_their_errors``.)"""
    mf, system = uks(name, functional), spin_system(name, functional)
    D = jnp.asarray(mf.make_rdm1())
    assert abs(float(ENERGY(system, D)) - mf.e_tot) < 1e-8
    np.testing.assert_allclose(np.asarray(FOCK(system, D)), mf.get_fock(dm=np.asarray(D)), atol=1e-8)
    omega, _ = OMEGA_AND_GRAD(system, jnp.asarray(mf.get_fock()))
    assert abs(float(omega) - mf.e_tot) < 1e-8


@pytest.mark.parametrize("case", ["triplet", pytest.param("singlet", marks=pytest.mark.slow), "free"])
def test_free_energy_gradient_matches_finite_differences(case):
    """dOmega/dH (jax.grad, divided differences) along a random symmetric direction equals central differences
    to 1e-6 relative, for O2 with Fermi smearing 0.01 Ha at H = F_pyscf + (0.05, -0.03) hcore: its pi* pair
    (levels 8 and 9 of each spin) stays exactly degenerate (full / empty per spin for the triplet, half-filled per
    spin for the UKS singlet); "free" shares one chemical potential between the spins. Electron counts hold."""
    mf = uks("O2", "pbe")
    system = ai2dft.SpinSystem.from_pyscf(mf, smearing=("fermi", 0.01),
                                          magnetisation="free" if case == "free" else "fixed")
    if case == "singlet":
        system = dataclasses.replace(system, spin=jnp.asarray(0.0))
    H = jnp.asarray(mf.get_fock() + np.array([0.05, -0.03])[:, None, None] * mf.get_hcore())
    S = mf.get_ovlp()
    for s in (0, 1):
        eps = scipy.linalg.eigh(np.asarray(H[s]), S, eigvals_only=True)
        assert abs(eps[7] - eps[8]) < 1e-9
    dH = np.random.default_rng(3).normal(size=H.shape)
    dH = jnp.asarray((dH + dH.transpose(0, 2, 1)) / np.linalg.norm(dH + dH.transpose(0, 2, 1)))
    _, grad = OMEGA_AND_GRAD(system, H)

    def central(step):
        return (float(OMEGA_AND_GRAD(system, H + step * dH)[0]) - float(OMEGA_AND_GRAD(system, H - step * dH)[0])) / (2 * step)

    fd = (4.0 * central(1e-4) - central(2e-4)) / 3.0  # Richardson: the plain central difference is off by ~1e-6 here
    assert abs(float(jnp.sum(grad * dH)) - fd) <= 1e-6 * abs(fd), (float(jnp.sum(grad * dH)), fd)
    counts = np.einsum("sij,ji->s", np.asarray(ai2dft.density_matrix(system, H)), S)
    if case == "free":
        assert abs(counts.sum() - 16.0) < 1e-10 and abs(counts[0] - counts[1] - 2.0) > 1e-3
    else:
        np.testing.assert_allclose(counts, np.asarray(system.spin_electrons), atol=1e-10)


def test_scf_from_core_guess_reaches_pyscf_uks():
    """The JAX SCF of the O2 triplet from the core Hamiltonian (both spins) converges to PySCF's UKS energy to
    1e-8 Ha, and its H equals PySCF's Fock matrices of its density to 1e-8 Ha."""
    mf, system = uks("O2", "pbe"), spin_system("O2", "pbe")
    result = ai2dft.scf(system, on_failure="raise")
    assert result.H.shape == (2, 28, 28) and abs(float(result.energy) - mf.e_tot) < 1e-8
    np.testing.assert_allclose(np.asarray(result.H), mf.get_fock(dm=np.asarray(result.D)), atol=1e-8)


@pytest.mark.slow
def test_free_magnetisation_scf_and_variational_reach_pyscf():
    """Free magnetisation with Fermi smearing (PySCF: smearing_ without fix_spin): the JAX SCF from PySCF's MINAO
    guess and minimize_free_energy from the same start reach PySCF's free energy e_free to 1e-8 Ha."""
    mf = smearing_(dft.UKS(mole("O2"), xc="pbe").density_fit(), sigma=0.01, method="fermi")
    mf.conv_tol = 1e-12
    mf.kernel()
    system = ai2dft.SpinSystem.from_pyscf(mf)
    assert system.spin is None
    H0 = jnp.asarray(mf.get_fock(dm=mf.get_init_guess(key="minao")))
    assert abs(float(ai2dft.scf(system, H0=H0, on_failure="raise").free_energy) - mf.e_free) < 1e-8
    result = ai2dft.minimize_free_energy(system, H0=H0, max_iter=200)
    assert bool(result.converged) and abs(float(result.free_energy) - mf.e_free) < 1e-8


def test_spin_labels_and_their_errors():
    """UKS labels of OH (LSDA, def2-SVP, DFTSettings.spin = 1, recorded in the settings) rebuild their SpinSystem:
    E_KS[D] = PySCF's e_tot and F[D] = PySCF's Fock matrices H to 1e-8 Ha; N_alpha, N_beta = 5, 4. Bad spin settings name the numbers; UKS objects and open shells are
    refused by the closed-shell System with a pointer to SpinSystem."""
    atoms = [("O", (0.0, 0.0, 0.0)), ("H", (0.0, 0.0, 0.9697))]
    oh = types.SimpleNamespace(symbols=[a for a, _ in atoms], positions_ang=np.array([p for _, p in atoms]),
                               lattice_ang=None, pbc=(False, False, False))
    settings = DFTSettings(xc="lda,vwn", grid_level=3, conv_tol=1e-12, spin=1)  # level 2: no convergence to 1e-12
    assert dataclasses.asdict(settings)["spin"] == 1
    labels = spin_molecule_labels(oh, settings)
    assert labels.converged and labels.n_electrons == (5, 4) and labels.H.shape == labels.H0.shape == (2, 19, 19)
    system = ai2dft.SpinSystem.from_pyscf(build_molecule(oh, settings), xc=settings.xc, grid_level=3)
    assert abs(float(ENERGY(system, jnp.asarray(labels.D))) - labels.e_tot) < 1e-8
    np.testing.assert_allclose(np.asarray(FOCK(system, jnp.asarray(labels.D))), labels.H, atol=1e-8)
    for s, n in enumerate(labels.n_electrons):  # each spin's chemical potential lies in its HOMO-LUMO gap
        eps = scipy.linalg.eigh(labels.H[s], labels.S, eigvals_only=True)
        assert eps[n - 1] < labels.fermi_energy[s] < eps[n]
    assert build_molecule(oh, DFTSettings(spin=3)).nelec == (6, 3)
    with pytest.raises(ValueError, match=r"9 electrons \(charge 0\): RKS labels need an even count.*DFTSettings.spin"):
        build_molecule(oh, DFTSettings())
    with pytest.raises(ValueError, match=r"spin 2S = 2 \(multiplicity 3\) is impossible for 9 electrons \(charge 0\)"):
        build_molecule(oh, DFTSettings(spin=2))
    with pytest.raises(ValueError, match=r"spin 2S = 11 \(multiplicity 12\) is impossible for 9 electrons"):
        build_molecule(oh, DFTSettings(spin=11))
    with pytest.raises(ValueError, match="spin must be None"):
        DFTSettings(spin=-1)
    with pytest.raises(ValueError, match="spin_molecule_labels"):
        molecule_labels(oh, settings)
    with pytest.raises(TypeError, match="got UKS.*SpinSystem.from_pyscf"):
        ai2dft.System.from_pyscf(dft.UKS(mole("OH"), xc="pbe"))
    with pytest.raises(ValueError, match="9 electrons.*SpinSystem"):
        ai2dft.System.from_pyscf(mole("OH"), xc="pbe")
    with pytest.raises(ValueError, match="magnetisation must be one of"):
        ai2dft.SpinSystem.from_pyscf(mole("OH"), xc="pbe", magnetisation="ferro")

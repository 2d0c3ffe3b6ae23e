"""The spin-orbit (spinor) molecule kind (SpinorSystem, H [2 nao, 2 nao] complex) against PySCF's X2C1e GKS, float64.

References: HBr, STO-3G (Br has s, p, d shells; the spin-orbit splitting of its 4p levels is ~0.3 eV), PySCF
``dft.GKS(mol).x2c1e().density_fit()``, grid level 2, PySCF's default auxiliary basis, conv_tol 1e-12. E_KS and F
are checked at PySCF's converged density and at a magnetised (perturbed, complex) density, where the "col"
(XC of n, m_z) and "ncol" (XC of n, |m|) schemes differ; Omega's gradient at Kramers-degenerate levels half
filled at the Fermi level (HBr+ with Fermi smearing) against central differences; the generic JAX SCF.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto

import ai2dft
from ai2dft.spinor_molecule import energy_terms, spin_blocks

HBR = "H 0 0 0; Br 0 0 1.414"
ENERGY, FOCK = jax.jit(ai2dft.energy), jax.jit(ai2dft.fock)
OMEGA_AND_GRAD = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))


@functools.cache
def converged(xc: str, collinear: str, charge: int = 0):
    """A converged density-fitted X2C1e GKS run of HBr (PySCF object)."""
    mol = gto.M(atom=HBR, basis="sto-3g", charge=charge, spin=charge % 2, verbose=0)
    mf = dft.GKS(mol).x2c1e().density_fit()
    mf.xc, mf.collinear, mf.conv_tol = xc, collinear, 1e-12
    mf.grids.level = 2
    mf.kernel()
    assert mf.converged
    return mf


def hermitian_noise(n: int, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    return scale * (a + a.conj().T)


@pytest.mark.parametrize("xc, collinear", [("lda,vwn", "ncol"), ("pbe", "col")])
def test_energy_and_fock_equal_pyscf_gks(xc, collinear):
    mf = converged(xc, collinear)
    system = ai2dft.SpinorSystem.from_pyscf(mf)
    D = mf.make_rdm1()
    assert abs(float(ENERGY(system, jnp.asarray(D))) - mf.e_tot) < 1e-8
    np.testing.assert_allclose(FOCK(system, jnp.asarray(D)), mf.get_fock(dm=D), rtol=0, atol=1e-8)
    # a magnetised density (m_x, m_y, m_z all nonzero): the non-collinear XC itself
    D_m = D + hermitian_noise(D.shape[0], 0.01, seed=0)
    uu, dd, ud = spin_blocks(D_m)
    assert np.abs(ud).max() > 0.01 and np.abs(np.diag(uu - dd)).max() > 0.01
    assert abs(float(ENERGY(system, jnp.asarray(D_m))) - mf.energy_tot(dm=D_m)) < 1e-8
    np.testing.assert_allclose(FOCK(system, jnp.asarray(D_m)), mf.get_fock(dm=D_m), rtol=0, atol=1e-8)


def test_col_and_ncol_differ_only_for_a_transverse_magnetisation():
    """At D with m along z only the two schemes agree; with m_x, m_y they differ (what the PySCF parity above
    then checks separately for each)."""
    mf = converged("lda,vwn", "ncol")
    ncol = ai2dft.SpinorSystem.from_pyscf(mf)
    col = ai2dft.SpinorSystem(ncol.base, ncol.hcore_so, "col")
    D = mf.make_rdm1() + hermitian_noise(2 * mf.mol.nao, 0.01, seed=1)
    n = mf.mol.nao
    D_z = D.copy()
    D_z[:n, n:] = D_z[n:, :n] = 0
    xc = {name: [float(energy_terms(s, jnp.asarray(d))["xc"]) for d in (D_z, D)] for name, s in (("col", col), ("ncol", ncol))}
    assert abs(xc["col"][0] - xc["ncol"][0]) < 1e-10
    assert abs(xc["col"][1] - xc["ncol"][1]) > 1e-4


def test_free_energy_at_the_scf_solution_and_its_density():
    mf = converged("lda,vwn", "ncol")
    system = ai2dft.SpinorSystem.from_pyscf(mf)
    D = mf.make_rdm1()
    H = jnp.asarray(mf.get_fock(dm=D))
    np.testing.assert_allclose(ai2dft.density_matrix(system, H), D, rtol=0, atol=1e-8)
    assert abs(float(OMEGA_AND_GRAD(system, H)[0]) - mf.e_tot) < 1e-8


def test_free_energy_gradient_at_half_filled_kramers_pair_matches_finite_differences():
    """HBr+ (17 valence + core electrons, odd) with Fermi smearing 0.01 Ha: the highest occupied Kramers pair holds
    one electron, both levels exactly degenerate at the Fermi level (time-reversal symmetric H of the neutral)."""
    neutral = converged("lda,vwn", "ncol")
    mol = gto.M(atom=HBR, basis="sto-3g", charge=1, spin=1, verbose=0)
    cation = dft.GKS(mol).x2c1e().density_fit()
    cation.xc, cation.collinear, cation.grids.level = "lda,vwn", "ncol", 2
    system = ai2dft.SpinorSystem.from_pyscf(cation, smearing=("fermi", 0.01))
    H = neutral.get_fock(dm=neutral.make_rdm1())
    eps = np.linalg.eigvalsh(np.asarray(ai2dft.kind.orthogonalizer(system)) @ H @ np.asarray(ai2dft.kind.orthogonalizer(system)))
    n = mol.nelectron
    assert abs(eps[n - 1] - eps[n]) < 1e-10 and abs(eps[n] - eps[n + 1]) > 1e-3  # the pair straddles N
    direction = hermitian_noise(H.shape[0], 1.0, seed=2)
    omega = lambda h: float(OMEGA_AND_GRAD(system, jnp.asarray(h))[0])  # noqa: E731
    central = lambda step: (omega(H + step * direction) - omega(H - step * direction)) / (2 * step)  # noqa: E731
    numeric = (4 * central(1e-5) - central(2e-5)) / 3  # Richardson: the O(step^2) error (3e-6 at 1e-5) removed
    grad = np.asarray(OMEGA_AND_GRAD(system, jnp.asarray(H))[1])  # conj(dOmega/dH)
    analytic = float(np.real(np.sum(grad * direction)))
    assert abs(analytic - numeric) < 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)


def test_jax_scf_reaches_pyscf_energy():
    mf = converged("lda,vwn", "ncol")
    result = ai2dft.scf(ai2dft.SpinorSystem.from_pyscf(mf))
    assert abs(float(result.energy) - mf.e_tot) < 1e-8


def test_unsupported_settings_are_named():
    mol = gto.M(atom=HBR, basis="sto-3g", verbose=0)
    hybrid = dft.GKS(mol).x2c1e()
    hybrid.xc = "b3lyp"
    with pytest.raises(ValueError, match="hybrid"):
        ai2dft.SpinorSystem.from_pyscf(hybrid)
    gga = dft.GKS(mol).x2c1e()
    gga.xc, gga.collinear = "pbe", "ncol"
    with pytest.raises(ValueError, match="'ncol' takes LDAs only"):
        ai2dft.SpinorSystem.from_pyscf(gga)
    mcol = dft.GKS(mol).x2c1e()
    mcol.collinear = "mcol"
    with pytest.raises(ValueError, match="multi-collinear"):
        ai2dft.SpinorSystem.from_pyscf(mcol)
    with pytest.raises(ValueError, match="needs a PySCF GKS object"):
        ai2dft.SpinorSystem.from_pyscf(dft.RKS(mol))

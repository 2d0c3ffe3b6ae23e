"""JAX SCF and variational minimization of Omega(H) against PySCF density-fitted RKS (H2O, def2-SVP)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, scf as pyscf_scf

from ai2dft import free_energy, minimize_free_energy
from ai2dft.scf import ScfNotConverged, scf
from ai2dft.system import System
from molecules import mole, rks

XCS = ["lda,vwn", "pbe"]


@pytest.fixture(scope="module")
def references():
    """{xc: (converged PySCF RKS of H2O, System from it)} with the same grid and auxiliary basis."""
    return {xc: (rks("H2O", xc), System.from_pyscf(rks("H2O", xc))) for xc in XCS}


@pytest.fixture(scope="module")
def scf_results(references):
    return {xc: scf(system) for xc, (_, system) in references.items()}


@pytest.fixture(scope="module")
def omega_grad():
    return jax.jit(jax.value_and_grad(free_energy, argnums=1))


@pytest.mark.parametrize("xc", XCS)
def test_scf_reproduces_pyscf(xc, references, scf_results):
    mf, system = references[xc]
    result = scf_results[xc]
    assert bool(result.converged) and int(result.n_iter) < 30
    assert abs(float(result.energy) - mf.e_tot) < 1e-8
    assert float(result.free_energy) == float(result.energy)  # sigma = 0
    np.testing.assert_allclose(np.asarray(result.D), mf.make_rdm1(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(result.H), mf.get_fock(dm=np.asarray(result.D)), atol=1e-8)


@pytest.mark.slow  # PySCF smeared SCF converges slowly: ~1-3 min on 2 cores
def test_scf_with_fermi_smearing_matches_pyscf(references):
    """Mermin free energy of a smeared SCF equals PySCF's e_free (same System shapes: no recompile)."""
    mf = pyscf_scf.addons.smearing_(dft.RKS(mole("H2O"), xc="lda,vwn").density_fit(), sigma=0.05, method="fermi")
    mf.conv_tol = 1e-12
    mf.kernel()
    result = scf(System.from_pyscf(mf))
    assert bool(result.converged)
    assert abs(float(result.free_energy) - mf.e_free) < 1e-8
    assert abs(float(result.energy) - mf.e_tot) < 1e-8


def test_scf_from_converged_hamiltonian_and_non_convergence(references, scf_results):
    mf, system = references["lda,vwn"]
    restart = scf(system, H0=jnp.asarray(mf.get_fock()))
    assert bool(restart.converged) and int(restart.n_iter) <= 3
    with pytest.warns(RuntimeWarning, match="SCF not converged after 2 iterations"):
        short = scf(system, max_iter=2)
    assert not bool(short.converged) and int(short.n_iter) == 2 and float(short.error) > 1e-8
    with pytest.raises(ScfNotConverged, match="commutator error"):
        scf(system, max_iter=2, on_failure="raise")
    with pytest.raises(ValueError, match="H0 has shape"):
        scf(system, H0=jnp.zeros((3, 3)))


def test_gradient_vanishes_at_pyscf_fock_and_matches_finite_differences(references, omega_grad):
    mf, system = references["pbe"]
    _, g = omega_grad(system, jnp.asarray(mf.get_fock()))
    assert float(jnp.max(jnp.abs(g))) < 1e-6
    rng = np.random.default_rng(0)
    H = np.asarray(mf.get_fock()) + 0.05 * rng.standard_normal(g.shape)
    H = jnp.asarray(0.5 * (H + H.T))
    _, g = omega_grad(system, H)
    assert float(jnp.max(jnp.abs(g))) > 1e-3  # away from self-consistency
    h = 1e-5  # truncation ~ 3e-8 relative here (the perturbed gap is 0.09 Ha); round-off ~1e-9
    for _ in range(2):
        v = rng.standard_normal(g.shape)
        v = jnp.asarray(0.5 * (v + v.T))
        fd = (float(omega_grad(system, H + h * v)[0]) - float(omega_grad(system, H - h * v)[0])) / (2 * h)
        np.testing.assert_allclose(float(jnp.sum(g * v)), fd, rtol=1e-6)


def test_variational_minimum_is_the_scf_solution(references, scf_results):
    """From the core Hamiltonian, preconditioned L-BFGS on Omega(H) reaches the SCF energy (1 uHa)
    and H itself up to a constant shift c*S."""
    _, system = references["pbe"]
    result = minimize_free_energy(system, max_iter=60, gtol=1e-8)
    reference = scf_results["pbe"]
    assert bool(result.converged)
    assert abs(float(result.free_energy) - float(reference.free_energy)) < 1e-6
    path = np.asarray(result.free_energy_path)
    assert np.all(np.diff(path) <= 1e-12 * abs(path[0]))  # every step is downhill
    dH = result.H - reference.H
    S = system.overlap
    shift = jnp.sum(S * dH) / jnp.sum(S * S)
    assert float(jnp.max(jnp.abs(dH - shift * S))) < 1e-6

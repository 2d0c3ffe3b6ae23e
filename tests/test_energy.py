"""Kohn-Sham energy, Fock matrix and Mermin free energy against PySCF density-fitted RKS."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, scf

from ai2dft.density import density_and_entropy
from ai2dft import free_energy
from ai2dft.energy import energy, energy_terms, fock
from ai2dft.system import System, pad_system
from molecules import mole, rks

CASES = [("H2O", "lda,vwn"), ("H2O", "pbe"), ("NH3", "lda,vwn"), ("NH3", "pbe"), ("H2O", "pbe0"), ("H2O", "b3lyp")]


@pytest.fixture(scope="module")
def references():
    """{(molecule, xc): (converged PySCF RKS, System from it)}."""
    return {case: (rks(*case), System.from_pyscf(rks(*case))) for case in CASES}


@pytest.fixture(scope="module")
def jitted():
    """Jitted functions shared by the tests (one compilation per shape and functional)."""
    return dict(
        energy=jax.jit(energy),
        terms=jax.jit(energy_terms),
        fock=jax.jit(fock),
        grad=jax.jit(jax.grad(energy, argnums=1)),
        free_energy=jax.jit(free_energy),
        free_energy_grad=jax.jit(jax.grad(free_energy, argnums=1)),
        density=jax.jit(density_and_entropy, static_argnames="kind"),
    )


@pytest.mark.parametrize("case", CASES)
def test_energy_and_fock_match_pyscf(case, references, jitted):
    """At PySCF's converged density: E_KS = mf.e_tot (1e-8 Ha), each term matches PySCF's, and
    F[D] = mf.get_fock(dm=D) (1e-8 Ha). PySCF's exc of a hybrid includes its exact exchange."""
    mf, system = references[case]
    D = jnp.asarray(mf.make_rdm1())
    assert abs(float(jitted["energy"](system, D)) - mf.e_tot) < 1e-8
    veff = mf.get_veff(dm=np.asarray(D))
    terms = jitted["terms"](system, D)
    assert abs(float(terms["one_electron"]) - np.einsum("ij,ji", mf.get_hcore(), D)) < 1e-9
    assert abs(float(terms["hartree"]) - veff.ecoul) < 1e-9
    assert abs(float(terms["xc"] + terms.get("exact_exchange", 0.0)) - veff.exc) < 1e-9
    assert ("exact_exchange" in terms) == (case[1] in ("pbe0", "b3lyp"))
    assert abs(float(terms["nuclear"]) - mf.energy_nuc()) < 1e-12
    np.testing.assert_allclose(np.asarray(jitted["fock"](system, D)), mf.get_fock(dm=np.asarray(D)), atol=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_autodiff_gradient_is_fock(case, references, jitted):
    """jax.grad of E_KS equals the explicit Fock matrix away from self-consistency, also for a
    non-symmetric D (D is symmetrized on entry)."""
    mf, system = references[case]
    rng = np.random.default_rng(0)
    D = jnp.asarray(mf.make_rdm1() + 0.02 * rng.standard_normal((system.n_ao, system.n_ao)))
    np.testing.assert_allclose(
        np.asarray(jitted["grad"](system, D)), np.asarray(jitted["fock"](system, D)), rtol=0, atol=1e-10
    )


def test_fock_is_energy_derivative_by_finite_differences(references, jitted):
    """Central finite difference of E_KS along a random symmetric direction equals <F, dD>."""
    mf, system = references[("H2O", "pbe")]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((system.n_ao, system.n_ao))
    dD, D = 0.5 * (X + X.T), mf.make_rdm1() + 0.01 * (X + X.T)
    h = 1e-4
    energy_jit = jitted["energy"]
    fd = (float(energy_jit(system, D + h * dD)) - float(energy_jit(system, D - h * dD))) / (2 * h)
    assert abs(fd - float(np.sum(np.asarray(jitted["fock"](system, D)) * dD))) < 1e-7 * max(1.0, abs(fd))


@pytest.mark.parametrize("case", CASES)
def test_free_energy_at_pyscf_fock(case, references, jitted):
    """Issue criterion: with sigma = 0, Omega(F_pyscf) and E_KS[D(F_pyscf)] equal mf.e_tot to 1e-8 Ha."""
    mf, system = references[case]
    F = jnp.asarray(mf.get_fock())
    D, entropy = jitted["density"](F, system.overlap, system.n_electrons, 0.0, kind="fermi")
    assert abs(float(jitted["energy"](system, D)) - mf.e_tot) < 1e-8
    assert abs(float(jitted["free_energy"](system, F)) - mf.e_tot) < 1e-8
    assert float(entropy) == 0.0


def test_free_energy_stationary_at_scf(references, jitted):
    """dOmega/dH = chi (F[D(H)] - H) vanishes at PySCF's self-consistent Fock matrix (|grad| ~ 1e-8
    from the SCF convergence) but not at a perturbed H."""
    mf, system = references[("H2O", "pbe")]
    F = jnp.asarray(mf.get_fock())
    assert float(jnp.max(jnp.abs(jitted["free_energy_grad"](system, F)))) < 1e-6
    H = F + 0.01 * jnp.asarray(mf.get_ovlp())[:, ::-1]  # a non-commuting perturbation
    H = 0.5 * (H + H.T)
    assert float(jnp.max(jnp.abs(jitted["free_energy_grad"](system, H)))) > 1e-4


def test_free_energy_with_smearing_matches_pyscf(jitted):
    """Fermi smearing of 0.05 Ha (fractional LUMO occupation ~1e-2): Omega(F_pyscf) equals PySCF's
    Mermin free energy e_free = e_tot - sigma * entropy; the System takes sigma and kind from mf."""
    mf = scf.addons.smearing_(dft.RKS(mole("H2O"), xc="lda,vwn").density_fit(), sigma=0.05, method="fermi")
    mf.conv_tol = 1e-12
    mf.kernel()
    system = System.from_pyscf(mf)
    assert system.smearing_kind == "fermi" and float(system.sigma) == 0.05
    assert mf.entropy > 1e-3  # the smearing is not negligible
    assert abs(float(jitted["free_energy"](system, jnp.asarray(mf.get_fock()))) - mf.e_free) < 1e-8


def test_jit_equals_eager(references, jitted):
    mf, system = references[("H2O", "pbe")]
    D = jnp.asarray(mf.make_rdm1())
    assert abs(float(jitted["energy"](system, D)) - float(energy(system, D))) < 1e-11
    np.testing.assert_allclose(np.asarray(jitted["fock"](system, D)), np.asarray(fock(system, D)), atol=1e-12)


def _pad_density(D, nao_pad):
    return jnp.zeros((nao_pad, nao_pad)).at[: D.shape[0], : D.shape[1]].set(D)


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe", "b3lyp"])
def test_padded_system_same_energy_fock_and_free_energy(xc, references, jitted):
    mf, system = references[("H2O", xc)]
    nao, ngrid, naux = system.n_ao, system.weights.shape[0], system.cderi.shape[0]
    padded = pad_system(system, nao + 5, ngrid + 333, naux + 7)
    D = _pad_density(jnp.asarray(mf.make_rdm1()), nao + 5)
    assert abs(float(jitted["energy"](padded, D)) - mf.e_tot) < 1e-8
    F = jitted["fock"](padded, D)
    np.testing.assert_allclose(F[:nao, :nao], np.asarray(jitted["fock"](system, D[:nao, :nao])), atol=1e-12)
    assert np.all(np.asarray(F[:nao, nao:]) == 0.0)
    assert abs(float(jitted["free_energy"](padded, F)) - mf.e_tot) < 1e-8
    if xc == "pbe":  # padded grid points and AOs give finite gradients (stationary, as unpadded)
        grad = np.asarray(jitted["free_energy_grad"](padded, F))
        assert np.all(np.isfinite(grad)) and np.max(np.abs(grad)) < 1e-6


def test_vmap_over_stacked_padded_molecules(references, jitted):
    """H2O and NH3 padded to common shapes, stacked into one System and vmapped: each energy is
    PySCF's; one jitted energy for the padded shape serves both molecules."""
    pairs = [references[("H2O", "pbe")], references[("NH3", "pbe")]]
    nao = max(s.n_ao for _, s in pairs)
    ngrid = max(s.weights.shape[0] for _, s in pairs)
    naux = max(s.cderi.shape[0] for _, s in pairs)
    padded = [pad_system(s, nao, ngrid, naux) for _, s in pairs]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *padded)
    Ds = jnp.stack([_pad_density(jnp.asarray(mf.make_rdm1()), nao) for mf, _ in pairs])
    energies = jax.jit(jax.vmap(energy))(stacked, Ds)
    for i, (mf, _) in enumerate(pairs):
        assert abs(float(energies[i]) - mf.e_tot) < 1e-8
        assert abs(float(jitted["energy"](padded[i], Ds[i])) - mf.e_tot) < 1e-8

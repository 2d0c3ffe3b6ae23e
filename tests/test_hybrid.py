"""Global hybrids (PBE0, B3LYP) for molecules: density-fitted exact exchange against PySCF, dOmega/dH
against finite differences, the JAX SCF against PySCF's density-fitted RKS, and hybrid labels that
rebuild their DFT system exactly (crystals refuse hybrids: no periodic exact exchange)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ai2dft
from ai2dft import exchange
from ai2dft.exchange import exchange_matrix
from ai2dft.pyscf_bridge.labels import DFTSettings, crystal_labels
from ai2dft.scf import scf
from ai2dft.system import System
from elct_jax.data.generate import label_record
from elct_jax.data.systems import system_from_record
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dict_to_dense
from molecules import rks

HYBRIDS = ["pbe0", "b3lyp"]
WATER = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])


@pytest.fixture(scope="module")
def references():
    """{xc: (converged density-fitted PySCF RKS of H2O / def2-SVP, System from it)}."""
    return {xc: (rks("H2O", xc), System.from_pyscf(rks("H2O", xc))) for xc in HYBRIDS}


def test_exchange_matrix_is_pyscfs_density_fitted_k(references):
    """K[D] equals PySCF's DF exchange matrix (same JK-fit tensor) at a non-idempotent symmetric D."""
    mf, system = references["b3lyp"]
    X = np.random.default_rng(0).standard_normal((system.n_ao, system.n_ao))
    D = mf.make_rdm1() + 0.05 * (X + X.T)
    k_pyscf = mf.with_df.get_jk(D, hermi=1, with_j=False)[1]
    assert "jkfit" in mf.with_df.auxbasis
    np.testing.assert_allclose(np.asarray(exchange_matrix(system.cderi, jnp.asarray(D))), k_pyscf, atol=1e-12)


def _unblocked_exchange_energy(cderi, D):
    """-1/4 tr(D K) with K = sum_P L_P D L_P^T as two plain einsums, for autodiff."""
    return -0.25 * jnp.sum(D * jnp.einsum("pil,pjl->ij", jnp.einsum("pik,kl->pil", cderi, D), cderi))


@pytest.mark.parametrize("naux", [None, 37, 5])
def test_blocked_exchange_and_its_vjp_equal_autodiff_of_the_unblocked_sum(naux, references):
    """exchange_energy (K summed over AUX_CHUNK blocks, custom VJP) at a non-symmetric D: energy, D-gradient
    (-K/2) and cderi-gradient equal autodiff of the plain einsums, also when naux is not a multiple of
    AUX_CHUNK (the last block overlaps) or smaller than it; and under jax.vmap over two systems."""
    mf, system = references["pbe0"]
    cderi = system.cderi[:naux]
    D = jnp.asarray(mf.make_rdm1() + 0.05 * np.random.default_rng(2).standard_normal((system.n_ao, system.n_ao)))
    assert naux is None or naux % exchange.AUX_CHUNK != 0
    got = jax.jit(jax.value_and_grad(exchange.exchange_energy, argnums=(0, 1)))(cderi, D)
    want = jax.value_and_grad(_unblocked_exchange_energy, argnums=(0, 1))(cderi, D)
    assert abs(float(got[0] - want[0])) < 1e-13 * abs(float(want[0]))
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(w))))
    batched = jax.jit(jax.vmap(jax.grad(exchange.exchange_energy, argnums=1)))(jnp.stack([cderi, cderi[::-1]]),
                                                                            jnp.stack([D, D.T]))
    np.testing.assert_allclose(batched[0], want[1][1], rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(want[1][1]))))


@pytest.mark.parametrize("xc", HYBRIDS)
def test_free_energy_gradient_matches_finite_differences(xc, references):
    """dOmega/dH along a random symmetric direction at an H away from self-consistency equals the
    central finite difference (exact exchange enters through F[D(H)])."""
    mf, system = references[xc]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((system.n_ao, system.n_ao))
    dH = 0.5 * (X + X.T)
    H = jnp.asarray(mf.get_fock() + 0.01 * dH)
    omega = jax.jit(ai2dft.free_energy)
    grad = jax.jit(jax.grad(ai2dft.free_energy, argnums=1))(system, H)
    h = 1e-6  # truncation error ~0.4 h^2 here (h = 1e-4 would give 4e-5); round-off ~1e-16 * 76 Ha / h
    fd = (float(omega(system, H + h * dH)) - float(omega(system, H - h * dH))) / (2 * h)
    assert abs(fd - float(jnp.sum(grad * dH))) < 1e-6 * max(1.0, abs(fd))
    assert abs(fd) > 1e-3  # away from the stationary point


@pytest.mark.parametrize("xc", HYBRIDS)
def test_jax_scf_reaches_pyscf_energy(xc, references):
    mf, system = references[xc]
    result = scf(system)
    assert bool(result.converged)
    assert abs(float(result.energy) - mf.e_tot) < 1e-8
    np.testing.assert_allclose(np.asarray(result.H), mf.get_fock(dm=np.asarray(result.D)), atol=1e-8)


def test_b3lyp_labels_rebuild_their_system():
    """A B3LYP label record rebuilds a System whose E_KS and F at the record's D are the labels'."""
    settings = DFTSettings(basis="sto-3g", xc="b3lyp", conv_tol=1e-11)
    record, converged = label_record(WATER, settings)
    assert converged
    system = system_from_record(record)
    assert system.xc == "b3lyp"
    D, H = (jnp.asarray(dict_to_dense(record.matrices[name], record.basis, WATER.symbols))
            for name in ("density_matrix", "hamiltonian"))
    assert abs(float(ai2dft.energy(system, D)) - record.dft["e_tot_hartree"]) < 1e-8
    np.testing.assert_allclose(np.asarray(ai2dft.fock(system, D)), np.asarray(H), atol=1e-8)


def test_crystal_labels_refuse_hybrids():
    graphene = Structure(("C", "C"), [[0, 0, 5], [1.23, 0.7101, 5]],
                         [[2.46, 0, 0], [-1.23, 2.1304, 0], [0, 0, 10]], (True, True, True))
    with pytest.raises(ValueError, match="xc='pbe0'.*periodic exact exchange is not implemented"):
        crystal_labels(graphene, DFTSettings(basis="gth-szv", xc="pbe0", pseudo="gth-pbe"))

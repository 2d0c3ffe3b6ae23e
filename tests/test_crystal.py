"""Crystal Kohn-Sham layer against PySCF KRKS (FFTDF, GTH, uniform grid, same mesh), float64.

Default: graphene (2 C, gth-szv, PBE, Fermi smearing 0.01 Ha, 3x3x1 k including K, 30 Ha mesh).
Slow: graphene gth-dzvp 4x4x1 and bcc Na gth-dzvp 4x4x4 (Fermi), plus peak memory.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.pbc import df as pbc_df
from pyscf.pbc import dft as pbc_dft
from pyscf.pbc import gto as pbc_gto

from ai2dft import crystal_energy
from ai2dft.xc import canonical_xc
from ai2dft.crystal import CrystalSystem, bloch_sum, bvk_translations, inverse_bloch_sum
from ai2dft.pyscf_bridge.cell import make_krks

GRAPHENE_A, GRAPHENE_C = 2.46, 8.0  # Angstrom; c is the slab period (vacuum ~ 8 A)

# jitted once per module: every test on the same shapes reuses the compiled code
ENERGY = jax.jit(crystal_energy.energy)
ENERGY_GRAD = jax.jit(jax.grad(crystal_energy.energy, argnums=1))
FOCK = jax.jit(crystal_energy.fock)
OMEGA = jax.jit(crystal_energy.free_energy)
OMEGA_AND_GRAD = jax.jit(jax.value_and_grad(crystal_energy.free_energy, argnums=1))


def graphene_atoms() -> ase.Atoms:
    a, c = GRAPHENE_A, GRAPHENE_C
    cell = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    return ase.Atoms("C2", positions=[[0, 0, 0], [0, a / np.sqrt(3), 0]], cell=cell, pbc=True)


def graphene_cell(basis: str) -> pbc_gto.Cell:
    atoms = graphene_atoms()
    return pbc_gto.M(a=np.asarray(atoms.cell), atom=[("C", p) for p in atoms.positions], basis=basis,
                     pseudo="gth-pbe", verbose=0)


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


def hermitian(rng, shape):
    a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return a + np.conj(np.swapaxes(a, -1, -2))


def parity_report(mf, system):
    """Errors of the JAX layer at PySCF's converged state (Hartree per cell)."""
    dm = jnp.asarray(np.asarray(mf.make_rdm1()))
    F = jnp.asarray(np.asarray(mf.get_fock(dm=np.asarray(dm))))
    omega, grad = OMEGA_AND_GRAD(system, F)
    return dict(
        energy=abs(float(ENERGY(system, dm)) - mf.e_tot),
        fock=float(jnp.max(jnp.abs(FOCK(system, dm) - F))),
        omega=abs(float(omega) - mf.e_free),
        grad=float(jnp.max(jnp.abs(grad))),
    )


@pytest.fixture(scope="module")
def graphene():
    mf = converged_krks(graphene_cell("gth-szv"), (3, 3, 1), ke_cutoff=30.0)
    return mf, CrystalSystem.from_pyscf(mf, chunk_size=1024)


def test_system_from_krks_takes_its_settings(graphene):
    mf, system = graphene
    assert system.mesh == tuple(mf.with_df.mesh) == tuple(mf.cell.cutoff_to_mesh(30.0))
    assert system.xc == canonical_xc("pbe") and system.smearing == "fermi" and float(system.sigma) == 0.01
    assert system.n_k == 9 and system.n_ao == 8 and float(system.n_electrons) == 8.0
    np.testing.assert_allclose(float(system.e_nuc), mf.cell.energy_nuc(), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(system.hcore), np.asarray(mf.get_hcore()), atol=1e-13)
    assert system.ao.shape[:3] == (-(-system.n_grid // 1024), 9, 4)


def test_parity_with_pyscf_at_convergence(graphene):
    mf, system = graphene
    errors = parity_report(mf, system)
    assert errors["energy"] < 1e-10, errors  # same numbers as PySCF up to summation order
    assert errors["fock"] < 1e-10, errors
    assert errors["omega"] < 1e-8, errors  # second order in PySCF's residual (conv_tol 1e-12)
    assert errors["grad"] < 1e-6, errors


def test_energy_terms_match_pyscf_summary(graphene):
    mf, system = graphene
    terms = jax.jit(crystal_energy.energy_terms)(system, jnp.asarray(np.asarray(mf.make_rdm1())))
    for ours, theirs in (("one_electron", "e1"), ("hartree", "coul"), ("xc", "exc")):
        assert abs(float(terms[ours]) - mf.scf_summary[theirs]) < 1e-10, ours


def test_lda_energy_and_fock_at_any_density(graphene):
    """Non-self-consistent parity of E[D] and F[D] for an LDA (value-only AO path)."""
    mf_pbe, _ = graphene
    mf = make_krks(mf_pbe.cell, xc="lda,vwn", kmesh=(2, 2, 1), smearing=("fermi", 0.01), ke_cutoff=30.0)
    system = CrystalSystem.from_pyscf(mf, chunk_size=4096)
    assert system.ao.shape[2] == 1
    dm = np.asarray(mf.get_init_guess())
    assert abs(float(ENERGY(system, jnp.asarray(dm))) - mf.energy_tot(dm=dm)) < 1e-10
    F = FOCK(system, jnp.asarray(dm))
    assert float(jnp.max(jnp.abs(F - np.asarray(mf.get_fock(dm=dm))))) < 1e-10


def test_energy_gradient_is_weighted_fock_for_any_direction(graphene):
    """E is defined through the Hermitian part of D: dE = sum_k w_k Re tr(dD F) for every dD."""
    mf, system = graphene
    dm = jnp.asarray(np.asarray(mf.make_rdm1()))
    rng = np.random.default_rng(0)
    direction = jnp.asarray(rng.normal(size=dm.shape) + 1j * rng.normal(size=dm.shape))  # not Hermitian
    step = 1e-4
    fd = (ENERGY(system, dm + step * direction) - ENERGY(system, dm - step * direction)) / (2 * step)
    F = FOCK(system, dm)
    predicted = jnp.sum(system.kweights * jnp.real(jnp.einsum("kij,kji->k", direction, F)))
    grad = ENERGY_GRAD(system, dm)
    assert abs(float(fd - predicted)) < 1e-7 * abs(float(predicted))
    assert abs(float(jnp.sum(jnp.real(grad * direction)) - predicted)) < 1e-10 * abs(float(predicted))


def test_free_energy_gradient_matches_finite_differences(graphene):
    mf, system = graphene
    rng = np.random.default_rng(1)
    H = jnp.asarray(np.asarray(mf.get_fock())) + 0.02 * jnp.asarray(hermitian(rng, system.S.shape))
    direction = jnp.asarray(hermitian(rng, system.S.shape))
    omega, grad = OMEGA_AND_GRAD(system, H)
    step = 1e-5
    fd = (OMEGA(system, H + step * direction) - OMEGA(system, H - step * direction)) / (2 * step)
    predicted = jnp.sum(jnp.real(grad * direction))  # jax.grad is conj(dOmega/dH)
    assert abs(float(predicted)) > 1e-3  # away from the stationary point
    assert abs(float(fd - predicted)) < 1e-6 * abs(float(predicted))
    assert float(omega) > mf.e_free  # variational: perturbing H raises Omega


def test_real_space_blocks_round_trip_and_gradient(graphene):
    mf, system = graphene
    F = jnp.asarray(np.asarray(mf.get_fock()))
    R = jnp.asarray(bvk_translations((3, 3, 1)))
    # complex: PySCF's FFT non-local GTH term breaks F(-k) = conj F(k) by 2e-4 Ha on this coarse
    # mesh (3e-8 at 60 Ha, 2e-13 at 120 Ha), so H(R) has a small imaginary part
    blocks = inverse_bloch_sum(F, system.kweights, system.kpts_frac, R)
    np.testing.assert_allclose(np.asarray(bloch_sum(blocks, R, system.kpts_frac)), np.asarray(F), atol=1e-12)
    value_and_grad = jax.jit(jax.value_and_grad(crystal_energy.free_energy_real_space, argnums=1))
    omega, grad = value_and_grad(system, blocks, R)
    assert abs(float(omega) - mf.e_free) < 1e-8
    assert float(jnp.max(jnp.abs(grad))) < 1e-6
    rng = np.random.default_rng(2)
    shifted = blocks + 0.02 * jnp.asarray(rng.normal(size=blocks.shape))
    direction = jnp.asarray(rng.normal(size=blocks.shape) + 1j * rng.normal(size=blocks.shape))
    _, grad = value_and_grad(system, shifted, R)
    f = jax.jit(crystal_energy.free_energy_real_space)
    step = 1e-5
    fd = (f(system, shifted + step * direction, R) - f(system, shifted - step * direction, R)) / (2 * step)
    predicted = jnp.sum(jnp.real(grad * direction))
    assert abs(float(fd - predicted)) < 1e-6 * abs(float(predicted))


def test_chunking_does_not_change_the_energy(graphene):
    mf, system = graphene
    dm = jnp.asarray(np.asarray(mf.make_rdm1()))
    other = CrystalSystem.from_pyscf(mf, chunk_size=3000)
    assert other.ao.shape[0] != system.ao.shape[0]
    assert abs(float(ENERGY(other, dm)) - float(ENERGY(system, dm))) < 1e-11


def test_from_cell_and_from_ase_agree(graphene):
    mf, system = graphene
    from_cell = CrystalSystem.from_pyscf(graphene_cell("gth-szv"), xc="pbe", kmesh=(3, 3, 1),
                                         smearing=("fermi", 0.01), ke_cutoff=30.0)
    from_ase = CrystalSystem.from_ase(graphene_atoms(), basis="gth-szv", xc="pbe", kmesh=(3, 3, 1),
                                      smearing=("fermi", 0.01), ke_cutoff=30.0)
    for other in (from_cell, from_ase):
        assert other.mesh == system.mesh
        np.testing.assert_allclose(np.asarray(other.hcore), np.asarray(system.hcore), atol=1e-12)
        np.testing.assert_allclose(np.asarray(other.S), np.asarray(system.S), atol=1e-12)
        assert float(other.e_nuc) == pytest.approx(float(system.e_nuc), abs=1e-12)


def test_bad_inputs_are_named(graphene):
    mf, _ = graphene
    cell = mf.cell
    with pytest.raises(ValueError, match="conflict with the KRKS"):
        CrystalSystem.from_pyscf(mf, ke_cutoff=20.0)
    gdf = pbc_dft.KRKS(cell, cell.make_kpts([1, 1, 1])).density_fit()
    with pytest.raises(ValueError, match="FFTDF"):
        CrystalSystem.from_pyscf(gdf)
    assert isinstance(gdf.with_df, pbc_df.GDF)
    with pytest.raises(ValueError, match="hybrid"):
        CrystalSystem.from_pyscf(cell, xc="pbe0", ke_cutoff=20.0)
    with pytest.raises(ValueError, match="smearing"):
        CrystalSystem.from_pyscf(cell, smearing=("cold", 0.01), ke_cutoff=20.0)
    with pytest.raises(ValueError, match="kmesh"):
        CrystalSystem.from_pyscf(cell, kmesh=(0, 1, 1), ke_cutoff=20.0)
    slab = graphene_atoms()
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic in all three"):
        CrystalSystem.from_ase(slab, basis="gth-szv")
    with pytest.raises(TypeError, match="KRKS"):
        CrystalSystem.from_pyscf("graphene")

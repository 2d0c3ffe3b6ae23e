"""Crystal Kohn-Sham layer against PySCF KRKS (FFTDF, GTH, uniform grid, same mesh), float64.

Default: graphene (2 C, gth-szv, PBE, Fermi smearing 0.01 Ha, 3x3x1 k including K, 30 Ha mesh).
Slow: graphene gth-dzvp 4x4x1 and bcc Na gth-dzvp 4x4x4 (Fermi), plus peak memory.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.pbc import df as pbc_df
from pyscf.pbc import dft as pbc_dft

import ai2dft
from ai2dft import crystal_energy
from ai2dft.crystal_real_space import free_energy_real_space
from ai2dft.xc import canonical_xc
from ai2dft.crystal import CrystalSystem, bloch_sum, bvk_translations, inverse_bloch_sum
from ai2dft.pyscf_bridge.cell import make_krks
from crystals import graphene_atoms, graphene_cell, reference


# jitted once per module: every test on the same shapes reuses the compiled code
ENERGY = jax.jit(crystal_energy.energy)
ENERGY_GRAD = jax.jit(jax.grad(crystal_energy.energy, argnums=1))
FOCK = jax.jit(crystal_energy.fock)
OMEGA_AND_GRAD = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))


def hermitian(rng, shape):
    a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return a + np.conj(np.swapaxes(a, -1, -2))


def directional_fd(f, x, direction, step=1e-4):
    """Fourth-order central finite difference of f along direction (error ~ step^4)."""
    plus = f(x + step * direction) - f(x - step * direction)
    plus2 = f(x + 2 * step * direction) - f(x - 2 * step * direction)
    return float((8 * plus - plus2) / (12 * step))


def unit(a):
    return a / jnp.max(jnp.abs(a))


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
    return reference("graphene-szv-331")


def test_system_from_krks_takes_its_settings(graphene):
    mf, system = graphene
    assert system.mesh == tuple(mf.with_df.mesh) == tuple(mf.cell.cutoff_to_mesh(30.0))
    assert system.xc == canonical_xc("pbe") and system.smearing_kind == "fermi" and float(system.sigma) == 0.01
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


def test_linear_dependency_removal_matches_pyscf():
    """gth-dzvp graphene has an S(k) eigenvalue of 6e-7 at M; PySCF drops it (< 1e-6), and so do we."""
    mf, system = reference("graphene-dzvp-211")
    rank = np.rint(np.trace(np.asarray(system.basis_projector), axis1=1, axis2=2).real).astype(int)
    assert rank[0] == system.n_ao and min(rank) == system.n_ao - 1
    errors = parity_report(mf, system)
    assert errors["omega"] < 1e-8 and errors["grad"] < 1e-6, errors


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
    direction = unit(jnp.asarray(rng.normal(size=dm.shape) + 1j * rng.normal(size=dm.shape)))  # not Hermitian
    fd = directional_fd(lambda d: ENERGY(system, d), dm, direction)
    F = FOCK(system, dm)
    predicted = jnp.sum(system.kweights * jnp.real(jnp.einsum("kij,kji->k", direction, F)))
    grad = ENERGY_GRAD(system, dm)
    assert abs(fd - float(predicted)) < 1e-8 * abs(float(predicted))
    assert abs(float(jnp.sum(jnp.real(grad * direction)) - predicted)) < 1e-10 * abs(float(predicted))


def test_free_energy_gradient_matches_finite_differences(graphene):
    mf, system = graphene
    rng = np.random.default_rng(1)
    H = jnp.asarray(np.asarray(mf.get_fock())) + 0.02 * jnp.asarray(hermitian(rng, system.overlap.shape))
    direction = unit(jnp.asarray(hermitian(rng, system.overlap.shape)))
    omega, grad = OMEGA_AND_GRAD(system, H)
    fd = directional_fd(lambda h: OMEGA_AND_GRAD(system, h)[0], H, direction)
    predicted = float(jnp.sum(jnp.real(grad * direction)))  # jax.grad is conj(dOmega/dH)
    assert abs(predicted) > 1e-3  # away from the stationary point
    assert abs(fd - predicted) < 1e-7 * abs(predicted)
    assert float(omega) > mf.e_free  # variational: perturbing H raises Omega


def test_real_space_blocks_round_trip_and_gradient(graphene):
    mf, system = graphene
    F = jnp.asarray(np.asarray(mf.get_fock()))
    R = jnp.asarray(bvk_translations((3, 3, 1)))
    # complex: PySCF's FFT non-local GTH term breaks F(-k) = conj F(k) by 2e-4 Ha on this coarse
    # mesh (3e-8 at 60 Ha, 2e-13 at 120 Ha), so H(R) has a small imaginary part
    blocks = inverse_bloch_sum(F, system.kweights, system.kpts_frac, R)
    np.testing.assert_allclose(np.asarray(bloch_sum(blocks, R, system.kpts_frac)), np.asarray(F), atol=1e-12)
    value_and_grad = jax.jit(jax.value_and_grad(free_energy_real_space, argnums=1))
    omega, grad = value_and_grad(system, blocks, R)
    assert abs(float(omega) - mf.e_free) < 1e-8
    assert float(jnp.max(jnp.abs(grad))) < 1e-6
    rng = np.random.default_rng(2)
    shifted = blocks + 0.02 * jnp.asarray(rng.normal(size=blocks.shape))
    direction = unit(jnp.asarray(rng.normal(size=blocks.shape) + 1j * rng.normal(size=blocks.shape)))
    _, grad = value_and_grad(system, shifted, R)
    fd = directional_fd(lambda b: value_and_grad(system, b, R)[0], shifted, direction)
    predicted = float(jnp.sum(jnp.real(grad * direction)))
    assert abs(fd - predicted) < 1e-7 * abs(predicted)


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
        np.testing.assert_allclose(np.asarray(other.overlap), np.asarray(system.overlap), atol=1e-12)
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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["graphene-dzvp-441", "na-dzvp-444"])
def test_parity_with_pyscf_large(name):
    mf, system = reference(name)
    errors = parity_report(mf, system)
    print(name, system.mesh, errors)
    assert errors["energy"] < 1e-9 and errors["fock"] < 1e-9, errors
    assert errors["omega"] < 1e-7 and errors["grad"] < 1e-6, errors
    rng = np.random.default_rng(3)
    H = jnp.asarray(np.asarray(mf.get_fock())) + 0.01 * jnp.asarray(hermitian(rng, system.overlap.shape))
    direction = unit(jnp.asarray(hermitian(rng, system.overlap.shape)))
    _, grad = OMEGA_AND_GRAD(system, H)
    fd = directional_fd(lambda h: OMEGA_AND_GRAD(system, h)[0], H, direction)
    predicted = float(jnp.sum(jnp.real(grad * direction)))
    print(name, "finite difference", fd, "gradient", predicted)
    assert abs(fd - predicted) < 1e-7 * abs(predicted)


PEAK_MEMORY_SCRIPT = textwrap.dedent("""
    import sys, time
    import jax
    import ai2dft
    ai2dft.enable_float64()
    sys.path.insert(0, {tests!r})
    from crystals import graphene_cell
    from ai2dft.crystal import CrystalSystem
    from ai2dft.pyscf_bridge.cell import make_krks
    start = time.perf_counter()
    mf = make_krks(graphene_cell("gth-dzvp"), xc="pbe", kmesh=(4, 4, 1), smearing=("fermi", 0.01), ke_cutoff={ke})
    system = CrystalSystem.from_pyscf(mf)
    omega, grad = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))(system, system.hcore)
    grad.block_until_ready()
    assert bool(ai2dft.scf(system).converged)
    # VmHWM, not getrusage: ru_maxrss survives exec and would report the forking pytest process
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 2**20
    print(peak, system.ao.nbytes / 2**30, "x".join(map(str, system.mesh)), time.perf_counter() - start)
""")


@pytest.mark.slow
@pytest.mark.parametrize("ke_cutoff", [50.0, 100.0])
def test_peak_memory_graphene_dzvp_441(ke_cutoff):
    """Build + Omega + gradient + JAX SCF for graphene gth-dzvp 4x4x1 in a fresh process: < 4 GiB."""
    script = PEAK_MEMORY_SCRIPT.format(tests=str(pathlib.Path(__file__).parent), ke=ke_cutoff)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_gib, ao_gib, mesh, seconds = out.stdout.split()[-4:]
    print(f"ke_cutoff {ke_cutoff} Ha, mesh {mesh}: peak {float(peak_gib):.2f} GiB "
          f"(AO values {float(ao_gib):.2f} GiB), {float(seconds):.0f} s")
    assert float(peak_gib) < 4.0

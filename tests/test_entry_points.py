"""One entry point for molecules and crystals: ``ai2dft.System.from_pyscf`` / ``from_ase`` return a
``System`` or a ``CrystalSystem``, and the public functions dispatch on it.

Molecule: H2O PBE/def2-SVP (the shared converged reference of tests/molecules.py). Crystal: graphene
(2 C, gth-szv, gth-pade, LDA, Fermi smearing 0.01 Ha, 2x2x1 k, ke_cutoff 15 Ha: an 11x11x29 mesh).
The public functions must give exactly the numbers of the type-specific modules, and the crystal
options must reach PySCF (energy and Fock matrix equal PySCF's KRKS at a guess density).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from crystals import graphene_atoms, graphene_cell
from molecules import mole, rks

import ai2dft
from ai2dft import crystal_energy, kind
from ai2dft.crystal import CrystalSystem
from ai2dft.density import density_and_entropy
from ai2dft.energy import energy as molecular_energy
from ai2dft.energy import fock as molecular_fock
from ai2dft.pyscf_bridge.cell import make_krks

CRYSTAL_OPTIONS = dict(xc="lda,vwn", kmesh=(2, 2, 1), smearing=("fermi", 0.01), ke_cutoff=15.0)
EXACT = 1e-12


def max_abs(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


@pytest.fixture(scope="module")
def water():
    mf = rks("H2O", "pbe")
    return mf, ai2dft.System.from_pyscf(mf)


@pytest.fixture(scope="module")
def graphene():
    return ai2dft.System.from_pyscf(graphene_cell("gth-szv", pseudo="gth-pade"), **CRYSTAL_OPTIONS)


def test_dispatch_table_is_the_type_specific_functions():
    """Molecules run exactly the molecular energy code (no wrapper in between); crystals the crystal code,
    and every function of the kind interface is implemented for both."""
    table = {
        ai2dft.energy: (molecular_energy, crystal_energy.energy),
        ai2dft.fock: (molecular_fock, crystal_energy.fock),
    }
    for public, (molecular, crystal) in table.items():
        assert public.dispatch(ai2dft.System) is molecular, public
        assert public.dispatch(CrystalSystem) is crystal, public
    for interface in (kind.orthogonalizer, kind.density_and_entropy_of, kind.effective_hamiltonian, kind.kept_part,
                      kind.metric):
        for system_type in (ai2dft.System, CrystalSystem):
            assert interface.dispatch(system_type) is not interface.dispatch(object), (interface, system_type)


def test_molecule_through_the_public_functions(water):
    mf, system = water
    assert type(system) is ai2dft.System
    F = jnp.asarray(mf.get_fock())
    omega, grad = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))(system, F)
    D_ref, entropy = density_and_entropy(F, system.overlap, system.n_electrons, system.sigma, system.smearing_kind)
    assert abs(float(omega) - float(molecular_energy(system, D_ref) - system.sigma * entropy)) < EXACT
    assert abs(float(omega) - mf.e_tot) < 1e-8  # no smearing: Omega at PySCF's Fock matrix is its energy
    assert float(jnp.max(jnp.abs(grad))) < 1e-6  # stationary at self-consistency
    D = ai2dft.density_matrix(system, F)
    assert max_abs(D, mf.make_rdm1()) < 1e-7
    assert abs(float(ai2dft.energy(system, D)) - float(molecular_energy(system, D))) < EXACT
    assert max_abs(ai2dft.fock(system, D), molecular_fock(system, D)) < EXACT
    result = ai2dft.scf(system, tol=1e-9)
    assert bool(result.converged) and abs(float(result.energy) - mf.e_tot) < 1e-8


def test_cell_gives_a_crystal_system_with_its_options(graphene):
    """from_pyscf(Cell) = CrystalSystem.from_pyscf = from_ase(periodic Atoms), and the options reach
    PySCF: energy and Fock matrix at PySCF's initial guess equal those of the KRKS they describe."""
    assert type(graphene) is CrystalSystem
    assert graphene.n_k == 4 and graphene.xc == "lda,vwn" and graphene.smearing_kind == "fermi"
    assert float(graphene.sigma) == 0.01 and graphene.ao.shape[3] == 2048
    direct = CrystalSystem.from_pyscf(graphene_cell("gth-szv", pseudo="gth-pade"), **CRYSTAL_OPTIONS)
    from_ase = ai2dft.System.from_ase(graphene_atoms(), "gth-szv", "lda,vwn", kmesh=(2, 2, 1),
                                      smearing=("fermi", 0.01), ke_cutoff=15.0, chunk_size=1000)
    assert type(from_ase) is CrystalSystem and from_ase.ao.shape[3] == 1000
    for other in (direct, from_ase):
        assert other.mesh == graphene.mesh
        for name in ("overlap", "hcore", "kpts", "coulG", "e_nuc", "n_electrons"):
            assert max_abs(getattr(other, name), getattr(graphene, name)) < EXACT, name
    mf = make_krks(graphene_cell("gth-szv", pseudo="gth-pade"), **CRYSTAL_OPTIONS)
    assert graphene.mesh == tuple(mf.with_df.mesh)
    dm = np.asarray(mf.get_init_guess())
    assert abs(float(ai2dft.energy(graphene, jnp.asarray(dm))) - mf.energy_tot(dm)) < 1e-9
    assert max_abs(ai2dft.fock(graphene, jnp.asarray(dm)), np.asarray(mf.get_fock(dm=dm))) < 1e-9


def test_crystal_through_the_public_functions(graphene):
    system = graphene
    result = ai2dft.scf(system, tol=1e-9)
    assert bool(result.converged)
    assert max_abs(result.H, ai2dft.fock(system, result.D)) < EXACT
    H = result.H + 0.01 * system.overlap  # a shift c*S changes nothing physical
    D = ai2dft.density_matrix(system, H)
    D_ref, entropy = crystal_energy.density_and_entropy_of(system, H)
    assert max_abs(D, D_ref) < EXACT
    n_electrons = jnp.sum(system.kweights * jnp.real(jnp.einsum("kij,kji->k", D, system.overlap)))
    assert abs(float(n_electrons) - float(system.n_electrons)) < 1e-10
    assert abs(float(ai2dft.energy(system, D)) - float(crystal_energy.energy(system, D))) < EXACT
    assert max_abs(ai2dft.fock(system, D), crystal_energy.fock(system, D)) < EXACT
    value_and_grad = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))
    omega, grad = value_and_grad(system, H)
    assert abs(float(omega) - float(crystal_energy.energy(system, D_ref) - system.sigma * entropy)) < EXACT
    assert abs(float(omega) - float(result.free_energy)) < 1e-9 and float(jnp.max(jnp.abs(grad))) < 1e-7
    # away from self-consistency: the gradient through the public function against finite differences
    rng = np.random.default_rng(0)
    shape = system.overlap.shape
    noise = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    H_off = H + 0.01 * (noise + np.conj(np.swapaxes(noise, 1, 2)))
    direction = 0.5 * (noise + np.conj(np.swapaxes(noise, 1, 2))) / np.abs(noise).max()
    step = 1e-4
    f = [float(value_and_grad(system, H_off + t * step * direction)[0]) for t in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * step)
    predicted = float(jnp.sum(jnp.real(value_and_grad(system, H_off)[1] * direction)))
    print("finite difference", fd, "gradient", predicted)
    assert abs(fd - predicted) < 1e-6 * abs(predicted)
    variational_result = ai2dft.minimize_free_energy(system, max_iter=40, gtol=1e-7)
    assert bool(variational_result.converged)
    assert abs(float(variational_result.free_energy) - float(result.free_energy)) < 1e-9


def test_crystal_density_matrix_stays_in_the_basis_pyscf_keeps():
    """gth-dzvp graphene at k = (1/2, 0, 0) has an S(k) eigenvalue of 6.4e-7, below PySCF's 1e-6
    linear-dependency threshold: D(H) must have no weight on that direction (D = P D P), as in
    free_energy and scf. (The molecular density path, used for crystals before, gave |D - P D P| ~ 1e2.)"""
    cell = graphene_cell("gth-szv", pseudo="gth-pade")
    cell.basis, cell.pseudo = "gth-dzvp", "gth-pbe"
    system = ai2dft.System.from_pyscf(cell.build(), xc="lda,vwn", kmesh=(2, 1, 1), smearing=("fermi", 0.01),
                                      ke_cutoff=10.0)
    P = system.basis_projector
    dropped = jnp.real(jnp.trace(jnp.eye(system.n_ao) - P, axis1=1, axis2=2))
    assert np.allclose(np.asarray(dropped), [0, 1])
    D = ai2dft.density_matrix(system, system.hcore)
    assert max_abs(D, P @ D @ P) < 1e-10
    n_electrons = jnp.sum(system.kweights * jnp.real(jnp.einsum("kij,kji->k", D, system.overlap)))
    assert abs(float(n_electrons) - float(system.n_electrons)) < 1e-10


def test_crystal_scf_failure_is_reported_like_the_molecular_one(graphene):
    with pytest.warns(RuntimeWarning, match="SCF not converged after 2 iterations"):
        ai2dft.scf(graphene, max_iter=2)
    with pytest.raises(ai2dft.ScfNotConverged, match="commutator error"):
        ai2dft.scf(graphene, max_iter=2, on_failure="raise")
    with pytest.raises(ValueError, match="on_failure"):
        ai2dft.scf(graphene, on_failure="quiet")


def test_options_of_the_other_kind_are_named(graphene):
    with pytest.raises(ValueError, match=r"kmesh, ke_cutoff do not apply to a molecule \(Mole\)"):
        ai2dft.System.from_pyscf(mole("H2O"), xc="pbe", kmesh=(2, 2, 1), ke_cutoff=20.0)
    with pytest.raises(ValueError, match="kmesh do not apply to a molecule"):
        ai2dft.System.from_ase(graphene_atoms(pbc=False), "def2-svp", "pbe", kmesh=(2, 2, 1))
    with pytest.raises(ValueError, match="grid_level do not apply to a periodic cell"):
        ai2dft.System.from_pyscf(graphene_cell("gth-szv", pseudo="gth-pade"), xc="pbe", grid_level=3)
    with pytest.raises(ValueError, match="auxbasis do not apply to a periodic cell"):
        ai2dft.System.from_ase(graphene_atoms(), "gth-szv", "pbe", auxbasis="weigend")
    with pytest.raises(ValueError, match="must be neutral"):
        ai2dft.System.from_ase(graphene_atoms(), "gth-szv", "pbe", charge=2)
    with pytest.raises(ValueError, match="periodic in all three directions"):
        ai2dft.System.from_ase(graphene_atoms(pbc=[True, True, False]), "gth-szv", "pbe")
    for name, function in (("energy", ai2dft.energy), ("free_energy", ai2dft.free_energy),
                           ("density_matrix", ai2dft.density_matrix), ("scf", ai2dft.scf),
                           ("minimize_free_energy", ai2dft.minimize_free_energy)):
        with pytest.raises(TypeError, match=rf"ai2dft.{name} needs an ai2dft.System, CrystalSystem, SpinSystem, SpinCrystalSystem or SpinorSystem.*ndarray"):
            function(np.eye(8), np.eye(8))
    with pytest.raises(ValueError, match="H has shape"):
        ai2dft.density_matrix(graphene, graphene.hcore[0])

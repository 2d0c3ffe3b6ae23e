"""Label-free training of collinear spin-polarized crystals, float64: a KUKS record from ``elct data generate --spin``'s
labeller becomes an ``ai2dft.SpinCrystalSystem``; at the labelled H its energy and Fock matrices equal PySCF's KUKS
(FFTDF on the record's mesh) and a random collinear model takes a label-free step through the one jitted step.

The magnet: the stretched H chain of tests/test_spin_bands.py (H every 2.0 A, two atoms per cell, gth-dzvp, PBE, Fermi
0.01 Ha, 2 k-points, 2S = 1 per cell held fixed). The record's PySCF energy comes from multigrid numerics and differs
from FFTDF's on the coarse 25 Ha mesh by mHa (3 uHa at 120 Ha), so parity is checked against PySCF's FFTDF KUKS of the
record's own cell, mesh and k-points, at the density D(H) of the labelled H.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.pbc import dft as pbc_dft

import ai2dft
from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell
from ai2dft.spin_crystal import SpinCrystalSystem
from elct_jax.config import AttentionConfig, LossWeights, OptimConfig, preset
from elct_jax.data.generate import label_record
from elct_jax.data.loader import collate, make_example
from elct_jax.data.systems import system_from_record
from elct_jax.geometry.structure import Structure
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.losses import energy_losses, system_hamiltonians
from elct_jax.train.optim import make_optimizer
from elct_jax.train.step import init_state, make_train_step

SETTINGS = DFTSettings(basis="gth-dzvp", xc="pbe", kmesh=(2, 1, 1), ke_cutoff_Ha=25.0, smearing=("fermi", 0.01),
                       spin=1, conv_tol=1e-10)
CHAIN = Structure(("H", "H"), [[0.0, 4.0, 4.0], [2.0, 4.0, 4.0]], np.diag([4.0, 8.0, 8.0]), (True, False, False))
REACH = 8.1  # Angstrom: every stored H(R) block (the farthest is 8.0 A) is an edge of the graph
ENERGY, FOCK, DENSITY = jax.jit(ai2dft.energy), jax.jit(ai2dft.fock), jax.jit(ai2dft.density_matrix)
FREE_ENERGY, LOSSES = jax.jit(ai2dft.free_energy), jax.jit(energy_losses)
SMALL = dict(dtype="float64", l_max=2, channels=4, ffn_channels=4, attention=AttentionConfig(heads=2, alpha_dim=2))


@pytest.fixture(scope="module")
def chain():
    """(record, SpinCrystalSystem, batch with the collinear H target on the full-reach graph)."""
    record, converged = label_record(CHAIN, SETTINGS)
    assert converged
    system = system_from_record(record)
    batch = collate([make_example(record, record.basis, REACH, system, spin="collinear")], record.basis)
    return record, system, batch


def test_the_record_gives_a_spin_crystal_system(chain):
    record, system, _ = chain
    assert isinstance(system, SpinCrystalSystem) and float(system.spin) == 1.0
    assert float(system.n_electrons) == 2.0 and system.base.n_k == 2 and system.base.n_ao == 10
    np.testing.assert_allclose(np.asarray(system.spin_electrons), [1.5, 0.5])
    assert system.base.xc == "pbe,pbe" and float(system.sigma) == 0.01
    free = dataclasses.replace(record, dft={**record.dft, "magnetisation": "free"})
    assert system_from_record(free).spin is None
    with pytest.raises(ValueError, match="magnetisation"):
        system_from_record(dataclasses.replace(record, dft={k: v for k, v in record.dft.items() if k != "magnetisation"}))


def test_energy_and_fock_at_the_labelled_h_equal_pyscf_kuks(chain):
    """H(k) [2, nk, nao, nao] Bloch-summed from the batch's collinear targets: E_KS[D(H)] and F[D(H)] equal PySCF's
    FFTDF KUKS of the same cell at the same density (1e-8 Ha/cell, 1e-8 Ha)."""
    record, system, batch = chain
    onsite, edges = batch.targets["hamiltonian"]
    H = system_hamiltonians(batch.systems, onsite, edges, batch.layout)
    assert H.shape == (1, 2, 2, 10, 10)
    D = DENSITY(system, H[0])
    np.testing.assert_allclose(np.einsum("skij,kji->s", np.asarray(D), np.asarray(system.base.overlap)).real / 2,
                               [1.5, 0.5], atol=1e-10)  # N_up, N_down per cell
    cell = build_cell(CHAIN, SETTINGS)
    mf = pbc_dft.KUKS(cell, cell.make_kpts(SETTINGS.kmesh), xc=SETTINGS.xc)
    assert abs(float(ENERGY(system, D)) - mf.energy_tot(dm=np.asarray(D))) < 1e-8
    np.testing.assert_allclose(np.asarray(FOCK(system, D)), np.asarray(mf.get_fock(dm=np.asarray(D))), atol=1e-8)


@pytest.mark.slow  # compiling the spin-crystal step: ~60 CPU s
def test_label_free_step_from_random_parameters(chain):
    """The loss terms at the labels: Omega / N_e of the labelled H (ai2dft's) and a small residual; then one label-free
    step of a random collinear model: finite loss, nonzero gradient, parameters moved."""
    record, system, batch = chain
    onsite, edges = batch.targets["hamiltonian"]
    omega, sc = LOSSES(batch.systems, onsite, edges, batch.layout, batch.has_system, 1.0, 1.0)
    H = system_hamiltonians(batch.systems, onsite, edges, batch.layout)[0]
    assert abs(float(omega) * 2 - float(FREE_ENERGY(system, H))) < 1e-10
    assert 0 < float(sc) < 1e-2  # the multigrid labels on the coarse FFT mesh: near, not at, self-consistency
    init, apply = make_predict_fn(preset("tiny", spin="collinear", **SMALL), record.basis)
    params = jax.jit(init)(jax.random.PRNGKey(0), batch.graph)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, clip_norm=0.0), 1)
    step = make_train_step(apply, optimizer)
    state, metrics = step(init_state(params, optimizer), batch, LossWeights(mae=0.0, omega=1.0, sc=1.0).array())
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    assert abs(float(metrics["loss"]) - float(metrics["omega"]) - float(metrics["sc"])) < 1e-12
    assert float(metrics["sc"]) > 0 and float(metrics["mae"]) > 0  # labels present, weight 0: the step is label-free
    moved = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), state.params, params)
    assert max(float(x) for x in jax.tree.leaves(moved)) > 0

"""Spin-orbit records in label-free training: a record of PySCF's X2C1e GKS labels (``soc_record``) rebuilds its
``ai2dft.SpinorSystem``; batches pad it, and the network's spin-orbit blocks become its dense spin-outer H
(``losses.system_hamiltonians``) with the same Omega as the unpadded system; one label-free step of a spin-orbit
model (slow). HBr, STO-3G, grid level 2."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ai2dft
from ai2dft.pyscf_bridge.soc import SOCSettings
from elct_jax.config import AttentionConfig, LossWeights, OptimConfig, preset
from elct_jax.data.loader import collate, make_example
from elct_jax.data.soc_record import soc_record
from elct_jax.data.spinful import spinful_dict_to_dense
from elct_jax.data.systems import system_from_record
from elct_jax.geometry.structure import Structure
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.losses import system_hamiltonians
from elct_jax.train.optim import make_optimizer
from elct_jax.train.step import init_state, make_train_step

CUTOFF = 5.0
SETTINGS = SOCSettings(basis="sto-3g", grid_level=2, conv_tol=1e-10, conv_tol_grad=1e-7)


@pytest.fixture(scope="module")
def hbr():
    structure = Structure(("H", "Br"), np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 1.38]]))
    record, converged = soc_record(structure, SETTINGS)
    assert converged
    return record, system_from_record(record)


def test_record_rebuilds_its_spinor_system(hbr):
    record, system = hbr
    assert isinstance(system, ai2dft.SpinorSystem) and system.collinear == "ncol"
    D = spinful_dict_to_dense(record.matrices["density_matrix"], record.basis, record.structure.symbols)
    H = spinful_dict_to_dense(record.matrices["hamiltonian"], record.basis, record.structure.symbols)
    assert abs(float(ai2dft.energy(system, jnp.asarray(D))) - record.dft["e_tot_hartree"]) < 1e-8
    np.testing.assert_allclose(ai2dft.fock(system, jnp.asarray(D)), H, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ai2dft.density_matrix(system, jnp.asarray(H)), D, rtol=0, atol=1e-6)


def test_padded_batch_gives_the_same_hamiltonian_and_free_energy(hbr):
    record, system = hbr
    basis, symbols = record.basis, record.structure.symbols
    batch = collate([make_example(record, basis, CUTOFF, system, spin="soc")], basis)
    onsite, edges = batch.targets["hamiltonian"]
    H_pad = system_hamiltonians(batch.systems, jnp.asarray(onsite), jnp.asarray(edges), batch.layout)[0]
    n, P = system.base.n_ao, H_pad.shape[-1] // 2
    H = spinful_dict_to_dense(record.matrices["hamiltonian"], basis, symbols)
    got = np.block([[np.asarray(H_pad)[s * P:s * P + n, t * P:t * P + n] for t in (0, 1)] for s in (0, 1)])
    np.testing.assert_allclose(got, H, rtol=0, atol=1e-14)
    padded = jax.tree.map(lambda x: x[0], batch.systems)
    assert P > n  # the batch pads the AOs
    np.testing.assert_allclose(float(ai2dft.free_energy(padded, H_pad)), float(ai2dft.free_energy(system, jnp.asarray(H))),
                               rtol=0, atol=1e-9)


def test_spin_orbit_model_takes_only_a_spinor_system(hbr):
    record, system = hbr
    with pytest.raises(ValueError, match=r"spin = 'soc' takes an ai2dft.SpinorSystem, got System"):
        make_example(record, record.basis, CUTOFF, system.base, spin="soc")


@pytest.mark.slow  # compiles a spin-orbit model's label-free step (Omega and 8 Roothaan-DIIS steps on [2 nao, 2 nao])
def test_label_free_step_of_a_spin_orbit_model(hbr):
    record, system = hbr
    basis = record.basis
    batch = collate([make_example(record, basis, CUTOFF, system, spin="soc")], basis)
    config = preset("tiny", dtype="float64", l_max=5, spin="soc", channels=8, ffn_channels=8,
                    attention=AttentionConfig(heads=2, alpha_dim=4))
    init, apply = make_predict_fn(config, basis)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-3, clip_norm=0.0), 1)
    step = make_train_step(apply, optimizer, sc_iterations=8)
    state = init_state(jax.jit(init)(jax.random.PRNGKey(0), batch.graph), optimizer)
    weights = LossWeights(mae=0.0, omega=1.0, sc=1.0).array()
    new, metrics = step(state, batch, weights)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["omega"]) < 0 and float(metrics["sc"]) > 0
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.abs(a - b).max(), new.params, state.params))
    assert max(float(m) for m in moved) > 0

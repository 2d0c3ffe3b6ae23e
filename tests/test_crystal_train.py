"""The jitted training step on crystals: record -> CrystalSystem, crystal batches, Omega and the
self-consistency residual through H(k) = sum_R H(R) e^{2 pi i k.R}, supervised MAE on PySCF labels.

Small and real: 2-atom graphene, gth-szv (s, p: l_max = 2 suffices), LDA, Fermi smearing 0.01 Ha,
3x3x1 k (K included), 60 Ha mesh; labels from the project's generator (PySCF KRKS), float64.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.pbc import gto as pbc_gto

import ai2dft
from ai2dft import crystal_energy
from ai2dft.api import roothaan_diis
from ai2dft.crystal import CrystalSystem
from ai2dft.pyscf_bridge.labels import DFTSettings
from elct_jax.config import DataConfig, LossWeights, OptimConfig, RunConfig, TrainConfig, preset
from elct_jax.data.deeph_dock import DeepHRecord, write_deeph_dock
from elct_jax.data.generate import label_record
from elct_jax.data.loader import collate, make_example
from elct_jax.data.systems import crystal_system_from_record, system_from_record
from elct_jax.geometry.graph import neighbor_graph
from elct_jax.hamiltonian.blocks import block_layout, blocks_from_dict, blocks_to_dict, bloch_sum
from elct_jax.nn.model import make_predict_fn
from elct_jax.geometry.structure import Structure
from elct_jax.train.losses import TARGET_TOL, bloch_hamiltonians, self_consistency_residual
from elct_jax.train.optim import make_optimizer
from elct_jax.train.run import train
from elct_jax.train.saved_model import load_model
from elct_jax.train.step import init_state, make_eval_step, make_loss_fn, make_train_step
from crystals import graphene_supercell
from gradcheck import assert_grad_matches_fd

GRAPHENE = graphene_supercell((1, 1, 1), sigma=0.0)
SETTINGS = DFTSettings(basis="gth-szv", xc="lda", kmesh=(3, 3, 1), ke_cutoff_Ha=60, smearing=("fermi", 0.01))
CUTOFF = 4.0  # graph cutoff, Angstrom (36 edges)
OPTIM = OptimConfig(learning_rate=2e-3, clip_norm=0.0)
FREE_ENERGY = jax.jit(ai2dft.free_energy)  # eager evaluation is several times slower than a compile
RESIDUAL = jax.jit(self_consistency_residual, static_argnums=2)


def _n_real(example):
    return len(example.symbols), len(example.graph.senders)


@pytest.fixture(scope="module")
def setup():
    record, converged = label_record(GRAPHENE, SETTINGS)
    assert converged
    system = system_from_record(record)
    example = make_example(record, record.basis, CUTOFF, system)
    batch = collate([example], record.basis)
    init, apply = make_predict_fn(preset("tiny", dtype="float64", l_max=2), record.basis)
    params = jax.jit(init)(jax.random.PRNGKey(0), batch.graph)  # eager init of the network: 3-4x slower
    return dict(record=record, system=system, example=example, batch=batch, apply=apply, params=params,
                evaluate=make_eval_step(apply), predict=jax.jit(apply))


def test_crystal_system_follows_the_record(setup):
    record, system = setup["record"], setup["system"]
    assert isinstance(system, CrystalSystem) and system.n_k == 9 and system.n_ao == 8
    assert system.xc == "lda," and system.smearing_kind == "fermi" and float(system.sigma) == 0.01
    assert float(system.n_electrons) == 8
    cell = pbc_gto.M(a=GRAPHENE.lattice_ang, atom=list(zip(GRAPHENE.symbols, GRAPHENE.positions_ang)),
                     basis="gth-szv", pseudo="gth-pade", verbose=0)
    assert system.mesh == tuple(cell.cutoff_to_mesh(60))
    np.testing.assert_allclose(np.asarray(system.kpts_frac), cell.get_scaled_kpts(cell.make_kpts((3, 3, 1))), atol=1e-12)
    # the stored (multigrid) PySCF H(R), on every stored block, is self-consistent for the rebuilt system
    structure = record.structure
    graph = neighbor_graph(structure, 11.0, {el: n for n, el in enumerate(record.basis.elements)})
    onsite, edges, found = blocks_from_dict(record.matrices["hamiltonian"], record.basis, structure.symbols, graph)
    assert found.sum() + 2 == len(record.matrices["hamiltonian"])
    H_k = bloch_sum(jnp.asarray(onsite), jnp.asarray(edges), block_layout(record.basis, structure.symbols, graph),
                    system.kpts_frac)
    residual = float(RESIDUAL(system, H_k.astype(system.overlap.dtype)))
    assert residual < 2e-5, f"mean |H_ref - F[D(H_ref)]| = {residual:.2e} Ha"


def test_missing_settings_and_bad_batches_are_named(setup):
    record, example = setup["record"], setup["example"]
    incomplete = dataclasses.replace(record, dft={k: v for k, v in record.dft.items() if k != "ke_cutoff_Ha"})
    with pytest.raises(ValueError, match="ke_cutoff_Ha"):
        system_from_record(incomplete)
    coarse_k = dataclasses.replace(record, dft={**record.dft, "kmesh": [2, 2, 1]})
    other = make_example(coarse_k, record.basis, CUTOFF, crystal_system_from_record(coarse_k))
    with pytest.raises(ValueError, match="one k-mesh"):
        collate([example, other], record.basis)


def test_batched_bloch_sums_equal_each_crystals_own(setup):
    """Two crystals of one shape in a batch: each H(k) equals the Bloch sum over its own graph alone."""
    record, example, basis = setup["record"], setup["example"], setup["record"].basis
    rng = np.random.default_rng(0)
    moved = Structure(GRAPHENE.symbols, GRAPHENE.positions_ang + 0.05 * rng.standard_normal((2, 3)),
                      GRAPHENE.lattice_ang, GRAPHENE.pbc)  # same cell: same FFT mesh
    second = DeepHRecord(moved, basis, {}, None, record.dft)
    examples = [example, make_example(second, basis, CUTOFF, crystal_system_from_record(second))]
    batch = collate(examples, basis)
    onsite = jnp.asarray(rng.standard_normal(batch.onsite_mask.shape))
    edges = jnp.asarray(rng.standard_normal(batch.edge_mask.shape))
    H = bloch_hamiltonians(batch.systems, onsite, edges, batch.layout)  # [2, nk, nao, nao]
    node, edge = 0, 0
    for g, ex in enumerate(examples):
        n_node, n_edge = _n_real(ex)
        own = bloch_sum(onsite[node:node + n_node], edges[edge:edge + n_edge],
                        block_layout(basis, ex.symbols, ex.graph), ex.system.kpts_frac)
        np.testing.assert_allclose(np.asarray(H[g]), np.asarray(own), rtol=0, atol=1e-13)
        node, edge = node + n_node, edge + n_edge


def test_step_omega_is_the_free_energy_of_the_predicted_blocks(setup):
    """(a) Omega of the step = ai2dft.free_energy of H(k) assembled independently from the same blocks."""
    example, system, batch, params = setup["example"], setup["system"], setup["batch"], setup["params"]
    metrics = setup["evaluate"](params, batch, LossWeights(mae=0.0, omega=1.0, sc=1.0).array())
    onsite, edges = setup["predict"](params, batch.graph)
    n_node, n_edge = _n_real(example)
    H_k = bloch_sum(onsite[:n_node], edges[:n_edge], block_layout(setup["record"].basis, example.symbols,
                                                                  example.graph), system.kpts_frac)
    omega = float(FREE_ENERGY(system, H_k)) / float(system.n_electrons)
    assert abs(float(metrics["omega"]) - omega) < 1e-10, (float(metrics["omega"]), omega)
    assert abs(float(metrics["sc"]) - float(RESIDUAL(system, H_k))) < 1e-10


@pytest.mark.parametrize("weights", [LossWeights(mae=0.0, omega=1.0), LossWeights(mae=0.0, sc=1.0)])
def test_each_label_free_term_lowers_its_loss(setup, weights):
    """(b) omega and sc each decrease over a few Adam steps from the random initialisation."""
    optimizer = make_optimizer(OPTIM, 2)
    step = make_train_step(setup["apply"], optimizer)
    state = init_state(setup["params"], optimizer)
    losses = []
    for _ in range(5):
        state, metrics = step(state, setup["batch"], weights.array())
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 1e-2 * abs(losses[0]), losses


def test_gradient_through_bloch_sum_and_free_energy_matches_finite_differences(setup):
    """(c) network -> H(R) -> H(k) -> Omega: jax.grad against central differences on 4 parameters."""
    batch, params = setup["batch"], setup["params"]
    weights = LossWeights(mae=0.0, omega=1.0).array()
    loss = lambda p: setup["evaluate"](p, batch, weights)["loss"]  # noqa: E731
    grads = jax.jit(jax.grad(lambda p: make_loss_fn(setup["apply"])(p, batch, weights)[0]))(params)
    assert_grad_matches_fd(loss, params, grads)


def test_supervised_mae_on_pyscf_labels_in_the_same_step(setup):
    """(d) the step's MAE equals mean |H_pred(R) - H_pyscf(R)| over the record's blocks on the graph, and
    supervised steps lower it; a hybrid loss is the weighted sum of the three terms."""
    record, example, batch, params = setup["record"], setup["example"], setup["batch"], setup["params"]
    onsite, edges = setup["predict"](params, batch.graph)
    n_node, n_edge = _n_real(example)
    pred = blocks_to_dict(onsite[:n_node], edges[:n_edge], record.basis, example.symbols, example.graph)
    ref = record.matrices["hamiltonian"]
    errors = np.concatenate([np.abs(np.asarray(block) - ref[key]).ravel() for key, block in pred.items()])
    metrics = setup["evaluate"](params, batch, LossWeights(mae=1.0, omega=0.5, sc=0.25).array())
    assert abs(float(metrics["mae"]) - errors.mean()) < 1e-12, (float(metrics["mae"]), errors.mean())
    expected = float(metrics["mae"]) + 0.5 * float(metrics["omega"]) + 0.25 * float(metrics["sc"])
    assert abs(float(metrics["loss"]) - expected) < 1e-12
    optimizer = make_optimizer(OPTIM, 2)
    step = make_train_step(setup["apply"], optimizer)
    state = init_state(params, optimizer)
    maes = []
    for _ in range(5):
        state, m = step(state, batch, LossWeights(mae=1.0).array())
        maes.append(float(m["mae"]))
    assert maes[-1] < 0.9 * maes[0], maes


def test_iterated_self_consistency_target_approaches_the_crystal_scf(setup):
    """The crystal sc target after n Roothaan-DIIS steps: F[D(H)](k) for n = 1, near the SCF H(k) for n = 10,
    so the residual measures |H(k) - H_scf(k)| (k-weighted)."""
    system = setup["system"]
    H_scf = ai2dft.scf(system, tol=1e-9, on_failure="raise").H
    rng = np.random.default_rng(2)
    noise = 0.01 * (rng.standard_normal(H_scf.shape) + 1j * rng.standard_normal(H_scf.shape))
    H = H_scf + jnp.asarray(noise + np.conj(np.swapaxes(noise, -1, -2)))
    F_of_D = crystal_energy.fock(system, crystal_energy.density_and_entropy_of(system, H)[0])
    T1 = roothaan_diis(system, H, 1, 0.0)[0]
    T10 = roothaan_diis(system, H, 10, TARGET_TOL)[0]
    assert float(jnp.max(jnp.abs(T1 - F_of_D))) < 1e-12
    far, near = float(jnp.mean(jnp.abs(T1 - H_scf))), float(jnp.mean(jnp.abs(T10 - H_scf)))
    assert near < 1e-2 * far, (near, far)
    X = system.basis_projector @ system.s_inv_sqrt
    dH = H - H_scf
    both = jnp.abs(dH) + jnp.abs(jnp.conj(jnp.swapaxes(X, -1, -2)) @ dH @ X)  # AO and orthonormal basis
    weighted = float(jnp.sum(system.kweights * jnp.mean(both, axis=(-2, -1))))
    np.testing.assert_allclose(float(RESIDUAL(system, H, 10)), weighted, rtol=1e-2)


def test_residual_counts_an_error_along_a_near_null_overlap_direction_at_full_size(setup):
    """An error eps S c c^+ S (c^+ S c = 1) along the eigenvector w of S(k) with the smallest eigenvalue s is
    eps s w w^+ in the AO basis but eps w w^+ in the orthonormal one: the residual counts it at full size,
    as band energies do, and not reduced by s (the failure of an AO-only residual at zone-boundary k)."""
    system = setup["system"]
    H_scf = ai2dft.scf(system, tol=1e-9, on_failure="raise").H
    s_k, w_k = np.linalg.eigh(np.asarray(system.overlap))
    k = int(np.argmin(s_k[:, 0]))
    s, w = s_k[k, 0], w_k[k, :, 0]
    assert s < 0.5, s  # a direction the AO basis shrinks
    eps = 1e-3
    H = H_scf.at[k].add(eps * s * np.outer(w, np.conj(w)))
    n_ao = H.shape[-1]
    expected = float(system.kweights[k]) * eps * (1 + s) * np.sum(np.abs(w)) ** 2 / n_ao**2
    increase = float(RESIDUAL(system, H, 10)) - float(RESIDUAL(system, H_scf, 10))
    np.testing.assert_allclose(increase, expected, rtol=2e-2)


def test_label_free_run_on_a_crystal_dataset_end_to_end(setup, tmp_path):
    """``elct train``'s path for crystals: a DeepH-dock folder -> systems rebuilt from the record's settings ->
    fit on Omega + SC with a 2-step DIIS target -> metrics.csv and an orbax checkpoint that load_model restores."""
    write_deeph_dock(tmp_path / "data" / "graphene", setup["record"])
    config = RunConfig(
        data=DataConfig(path=str(tmp_path / "data"), cutoff_ang=CUTOFF, batch_size=1, split=(1.0, 0.0, 0.0)),
        model=preset("tiny", dtype="float64", l_max=2, edge_init_scale=0.1),
        train=TrainConfig(run_dir=str(tmp_path / "run"), epochs=3, weights=LossWeights(mae=0.0, omega=1.0, sc=1.0),
                          optim=OPTIM, progress=False, sc_iterations=2))
    state, dataset, _ = train(config)
    assert isinstance(dataset.batches["train"][0].systems, CrystalSystem)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header, last = rows[0].split(","), dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert len(rows) == 4 and "train_omega" in header and "train_sc" in header, rows
    first = dict(zip(header, rows[1].split(",")))
    assert np.isfinite(float(last["train_omega"])) and 0 < float(last["train_sc"]) < float(first["train_sc"]), rows
    loaded = load_model(tmp_path / "run", which="latest")
    assert loaded.config.edge_init_scale == 0.1
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

"""The jitted training step and loop: every loss mode trains, weights never recompile, hybrid batches,
exact resume, NaN guard, and a finite-difference check through network -> H -> Omega (float64).

Small and real: STO-3G water (s, p shells, so l_max = 2 suffices) with LDA labels from PySCF.
"""
import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import assert_grad_matches_fd
from pyscf import dft, gto

from ai2dft import density_matrix
from ai2dft.energy import fock
from ai2dft.scf import roothaan_diis, scf
from ai2dft.system import System
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.config import LossWeights, OptimConfig, RunConfig, TrainConfig, preset
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.loader import collate, make_example
from elct_jax.hamiltonian.blocks import blocks_to_dense, dense_to_dict
from elct_jax.nn.model import make_predict_fn
from elct_jax.geometry.structure import Structure
from elct_jax.train.checkpoint import Checkpointer
from elct_jax.analysis.curve import History
from elct_jax.train.losses import TARGET_TOL, orthonormal_mae, self_consistency_residual
from elct_jax.train.loop import MetricsLog, TrainingDiverged, fit
from elct_jax.train.optim import make_optimizer
from elct_jax.train.step import init_state, make_eval_step, make_loss_fn, make_train_step, train_step

SYMBOLS = ("O", "H", "H")
WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
BASIS, XC, CUTOFF = "sto-3g", "lda,vwn", 5.0


def _example(positions, labelled: bool, basis: OrbitalBasis):
    mol = gto.M(atom=list(zip(SYMBOLS, positions)), basis=BASIS, verbose=0)
    mf = dft.RKS(mol, xc=XC).density_fit()
    mf.conv_tol = 1e-11
    mf.kernel()
    assert mf.converged
    matrices = {"overlap": dense_to_dict(mf.get_ovlp(), basis, SYMBOLS)}
    if labelled:
        matrices["hamiltonian"] = dense_to_dict(mf.get_fock(), basis, SYMBOLS)
    record = DeepHRecord(Structure(SYMBOLS, positions), basis, matrices)
    return make_example(record, basis, CUTOFF, System.from_pyscf(mf))


@pytest.fixture(scope="module")
def setup():
    basis = OrbitalBasis.from_pyscf(BASIS, SYMBOLS)
    rng = np.random.default_rng(0)
    examples = [_example(WATER + 0.03 * rng.standard_normal(WATER.shape), labelled, basis)
                for labelled in (True, True, False)]
    config = preset("tiny", dtype="float64", l_max=2)
    init, apply = make_predict_fn(config, basis)
    batch = collate(examples[:1], basis)
    params = jax.jit(init)(jax.random.PRNGKey(0), batch.graph)  # eager init is ~3x slower
    return dict(basis=basis, examples=examples, apply=apply, params=params, batch=batch)


OPTIM = OptimConfig(learning_rate=2e-3, clip_norm=0.0)
STEPS_PER_EPOCH = 2  # every test builds the same optimizer, so all share one compiled step per shape


@pytest.mark.parametrize("weights", [LossWeights(mae=1.0), LossWeights(mae=0.0, omega=1.0),
                                     LossWeights(mae=0.0, sc=1.0), LossWeights(mae=1.0, omega=0.1, sc=0.1),
                                     LossWeights(mae=0.0, mae_orth=1.0), LossWeights(mae=0.0, mae_onsite=1.0)])
def test_each_mode_lowers_its_loss(setup, weights):
    optimizer = make_optimizer(OPTIM, STEPS_PER_EPOCH)
    step = make_train_step(setup["apply"], optimizer)
    state = init_state(setup["params"], optimizer)
    w = weights.array()
    losses = []
    for _ in range(8):
        state, metrics = step(state, setup["batch"], w)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 1e-3 * abs(losses[0]), losses


def test_onsite_mae_is_the_error_of_the_atom_diagonal_blocks(setup):
    """weights.mae_onsite: mean |H - H_ref| over the entries of the atoms' own blocks of the dense H, and the
    loss adds it with its weight."""
    batch, apply, params = setup["batch"], setup["apply"], setup["params"]
    metrics = make_eval_step(apply)(params, batch, LossWeights(mae=1.0, mae_onsite=0.5).array())
    err = np.asarray(blocks_to_dense(*apply(params, batch.graph), batch.layout)
                     - blocks_to_dense(*batch.targets["hamiltonian"], batch.layout))[0]
    atoms = [slice(0, 5), slice(5, 6), slice(6, 7)]  # O (1s 2s 2p), H 1s, H 1s in STO-3G
    expected = np.mean(np.concatenate([np.abs(err[a, a]).ravel() for a in atoms]))
    assert abs(float(metrics["mae_onsite"]) - expected) < 1e-12 * expected, (float(metrics["mae_onsite"]), expected)
    assert abs(float(metrics["loss"]) - float(metrics["mae"]) - 0.5 * expected) < 1e-12 * expected


def test_orthonormal_mae_is_the_error_in_the_loewdin_basis(setup):
    """weights.mae_orth: mean |S^-1/2 (H - H_ref) S^-1/2| over AO pairs, against numpy on PySCF's S and Fock."""
    batch, apply, params = setup["batch"], setup["apply"], setup["params"]
    metrics = make_eval_step(apply)(params, batch, LossWeights(mae=1.0, mae_orth=1.0).array())
    H = np.asarray(blocks_to_dense(*apply(params, batch.graph), batch.layout))[0]
    H_ref = np.asarray(blocks_to_dense(*batch.targets["hamiltonian"], batch.layout))[0]
    S = np.asarray(blocks_to_dense(*batch.targets["overlap"], batch.layout, pad_diagonal=1.0))[0]
    n = setup["examples"][0].system.overlap.shape[0]
    w, U = np.linalg.eigh(S[:n, :n])
    X = U @ np.diag(w ** -0.5) @ U.T
    expected = np.mean(np.abs(X @ (H - H_ref)[:n, :n] @ X))
    assert abs(float(metrics["mae_orth"]) - expected) < 1e-10 * expected, (float(metrics["mae_orth"]), expected)
    assert abs(float(metrics["loss"]) - float(metrics["mae"]) - expected) < 1e-10 * expected
    off = make_eval_step(apply)(params, batch, LossWeights(mae=1.0).array())
    assert float(off["mae_orth"]) == 0.0  # not computed at weight 0
    onsite, edges = apply(params, batch.graph)
    no_overlap = {k: v for k, v in batch.targets.items() if k != "overlap"}
    assert float(orthonormal_mae(onsite, edges, no_overlap, batch.target_masks, batch.layout, 1.0)) == 0.0


def test_changing_weights_does_not_recompile(setup):
    optimizer = make_optimizer(OPTIM, STEPS_PER_EPOCH)
    step = make_train_step(setup["apply"], optimizer)
    state = init_state(setup["params"], optimizer)
    state, _ = step(state, setup["batch"], LossWeights(mae=1.0).array())
    before = train_step._cache_size()
    for w in (LossWeights(mae=0.0, omega=1.0), LossWeights(mae=0.0, sc=1.0), LossWeights(mae=0.3, omega=0.5, sc=0.2)):
        state, _ = step(state, setup["batch"], w.array())
    assert train_step._cache_size() == before


def test_hybrid_batch_counts_labels_only_where_present(setup):
    basis, apply, params = setup["basis"], setup["apply"], setup["params"]
    hybrid = collate([setup["examples"][0], setup["examples"][2]], basis)  # labelled + unlabelled
    labelled = collate([setup["examples"][0]], basis)
    evaluate = make_eval_step(apply)
    weights = LossWeights(mae=1.0, omega=1.0, sc=1.0).array()
    m_h = evaluate(params, hybrid, weights)
    m_l = evaluate(params, labelled, weights)
    assert np.isclose(float(m_h["mae"]), float(m_l["mae"]), rtol=1e-10)  # the unlabelled one adds no MAE
    assert np.isfinite(float(m_h["omega"])) and np.isfinite(float(m_h["sc"]))
    assert not np.isclose(float(m_h["omega"]), float(m_l["omega"]))  # but it does enter Omega


def _config(tmp_path, name, epochs):
    return TrainConfig(run_dir=str(tmp_path / name), epochs=epochs, seed=3, optim=OPTIM,
                       weights=LossWeights(mae=1.0, omega=0.1, sc=0.0), progress=False)


def test_in_memory_fit_with_exponential_schedule_equals_the_bare_step_loop(setup, tmp_path, monkeypatch):
    """run_dir "" writes nothing; fit's steps are the jitted step's with the same optimizer; the lr decays
    exponentially to final_learning_rate; History records its metrics at steps 0, every n and the last."""
    apply, params, batch = setup["apply"], setup["params"], setup["batch"]
    monkeypatch.chdir(tmp_path)
    optim = OptimConfig(learning_rate=2e-3, schedule="exponential", final_learning_rate=2e-4, clip_norm=0.0)
    config = TrainConfig(run_dir="", epochs=5, weights=LossWeights(mae=1.0), optim=optim, progress=False)
    evaluate = make_eval_step(apply)
    history = History(lambda p: {"mae": evaluate(p, batch, LossWeights().array())["mae"]}, params, 2, 5)
    lrs = []
    state = fit(apply, params, [batch], [], config, callbacks=[history, lambda end: lrs.append(end.row["lr"])])
    assert list(tmp_path.iterdir()) == []
    optimizer = make_optimizer(optim, 1, 5)
    step, expected = make_train_step(apply, optimizer), init_state(params, optimizer)
    for _ in range(5):
        expected, _ = step(expected, batch, LossWeights(mae=1.0).array())
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(lrs, 2e-3 * 0.1 ** (np.arange(5) / 5), rtol=1e-6)
    rows = history.arrays()
    assert rows["step"].tolist() == [0, 2, 4, 5] and np.isnan(rows["loss"][0]) and len(history.step_seconds) == 5
    assert rows["mae"][-1] < rows["mae"][0]


# the EMA case covers every array the plain one resumes, plus the EMA copy: the plain case runs with -m slow
@pytest.mark.parametrize("ema_decay", [pytest.param(0.0, marks=pytest.mark.slow), 0.9])
def test_resume_reaches_the_same_parameters(setup, tmp_path, ema_decay):
    basis, apply, params = setup["basis"], setup["apply"], setup["params"]
    batches = [collate([ex], basis) for ex in setup["examples"][:2]]

    def config(name):
        return dataclasses.replace(_config(tmp_path, name, 3), optim=dataclasses.replace(OPTIM, ema_decay=ema_decay))

    full = fit(apply, params, batches, batches[:1], config("full"))
    interrupted = fit(apply, params, batches, batches[:1], config("cut"), stop_after_steps=3)
    assert int(interrupted.step) == 3
    resumed = fit(apply, params, batches, batches[:1], config("cut"))
    assert int(resumed.step) == int(full.step) == 6
    kept = [jax.tree.leaves((s.params, s.ema_params)) for s in (full, resumed)]
    for a, b in zip(*kept, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    first_params, first_ema = jax.tree.leaves(full.params)[0], jax.tree.leaves(full.ema_params)[0]
    assert np.array_equal(np.asarray(first_params), np.asarray(first_ema)) == (ema_decay == 0)


def test_checkpoints_hold_one_training_state_and_the_best_validated_parameters(setup, tmp_path):
    """A save every epoch keeps one latest step (what resume needs) and, in best/, the parameters alone of the
    epoch with the lowest validation loss: those of a run stopped at that step."""
    import csv

    basis, apply, params = setup["basis"], setup["apply"], setup["params"]
    batches = [collate([ex], basis) for ex in setup["examples"][:2]]
    config = dataclasses.replace(_config(tmp_path, "kept", 4), checkpoint_seconds=0.0, validate_every_epochs=1)
    fit(apply, params, batches, batches[1:], config)
    checkpoints = tmp_path / "kept" / "checkpoints"
    assert [p.name for p in (checkpoints / "latest").iterdir()] == [str(4 * STEPS_PER_EPOCH)]
    with open(tmp_path / "kept" / "metrics.csv") as fh:
        best_row = min(csv.DictReader(fh), key=lambda r: float(r["val_loss"]))
    checkpointer = Checkpointer(config.run_dir)
    assert checkpointer.best_step() == int(best_row["step"])
    assert checkpointer.best_path() == checkpoints / "best" / best_row["step"]
    best = checkpointer.restore_best(params)
    checkpointer.close()
    at_best = fit(apply, params, batches, batches[1:], _config(tmp_path, "short", 4),
                  stop_after_steps=int(best_row["step"]))
    for a, b in zip(jax.tree.leaves(at_best.params), jax.tree.leaves(best), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_nan_stops_training_and_keeps_last_good_checkpoint(setup, tmp_path):
    basis, apply, params = setup["basis"], setup["apply"], setup["params"]
    good = [collate([ex], basis) for ex in setup["examples"][:2]]
    t_on, t_ed = good[0].targets["hamiltonian"]
    bad = dataclasses.replace(good[0], targets={**good[0].targets, "hamiltonian": (t_on * np.nan, t_ed)})
    config = _config(tmp_path, "nan", 1)
    with pytest.raises(TrainingDiverged, match="no checkpoint had been written yet, so nothing was saved"):
        fit(apply, params, [bad], good[:1], dataclasses.replace(config, run_dir=str(tmp_path / "fresh")))
    state = fit(apply, params, good, good[:1], config)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        fit(apply, params, [bad, bad], good[:1], dataclasses.replace(config, epochs=2))
    checkpointer = Checkpointer(config.run_dir)
    assert checkpointer.latest_step() == STEPS_PER_EPOCH
    restored = checkpointer.restore(state)
    checkpointer.close()
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gradient_through_network_and_free_energy_matches_finite_differences(setup):
    apply, batch = setup["apply"], setup["batch"]
    weights = LossWeights(mae=0.0, omega=1.0).array()  # pure label-free Omega: network -> H -> D(H) -> E_KS
    params = setup["params"]
    evaluate = make_eval_step(apply)
    loss = lambda p: evaluate(p, batch, weights)["loss"]
    grads = jax.jit(jax.grad(lambda p: make_loss_fn(apply)(p, batch, weights)[0]))(params)
    assert_grad_matches_fd(loss, params, grads)


def test_self_consistency_target_iterations_approach_the_scf_solution(setup):
    """T(H) after n Roothaan-DIIS steps: F[D(H)] for n = 1, the SCF solution as n grows; the residual
    |H - T(H)| then measures |H - H_scf| itself (what label-free training with n iterations minimises)."""
    system = jax.tree.map(lambda x: x[0], setup["batch"].systems)
    H_scf = scf(system, tol=1e-10, on_failure="raise").H
    noise = 0.02 * np.random.default_rng(1).standard_normal(H_scf.shape)
    H = H_scf + jnp.asarray(noise + noise.T)
    F_of_D = fock(system, density_matrix(system, H))
    T1 = roothaan_diis(system, H, 1, 0.0)[0]
    T8 = roothaan_diis(system, H, 8, TARGET_TOL)[0]
    assert float(jnp.max(jnp.abs(T1 - F_of_D))) < 1e-12
    far, near = float(jnp.mean(jnp.abs(T1 - H_scf))), float(jnp.mean(jnp.abs(T8 - H_scf)))
    assert near < 1e-3 * far, (near, far)
    residual = jax.jit(self_consistency_residual, static_argnums=2)
    assert float(residual(system, H_scf, 8)) < 1e-8
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]  # the batch pads the AO axis
    real_mean = lambda a: float(jnp.sum(jnp.abs(a) * pair) / jnp.sum(pair))  # noqa: E731
    np.testing.assert_allclose(float(residual(system, H, 8)), real_mean(H - H_scf), rtol=1e-4)
    assert abs(float(residual(system, H, 1)) - real_mean(H - F_of_D)) < 1e-12


def test_iterated_self_consistency_training_approaches_the_scf_solution(setup):
    """sc with a 4-step DIIS target, 5 Adam steps from the random initialisation: |H - H_scf| falls."""
    batch = setup["batch"]
    system = jax.tree.map(lambda x: x[0], batch.systems)
    H_scf = scf(system, tol=1e-10, on_failure="raise").H
    n_ao = H_scf.shape[0]
    predict = jax.jit(setup["apply"])  # eager evaluation of the network is several times slower than a compile

    def error(params):
        onsite, edges = predict(params, batch.graph)
        H = blocks_to_dense(onsite, edges, batch.layout, order="pyscf")[0, :n_ao, :n_ao]
        return float(jnp.mean(jnp.abs(H - H_scf)))

    optimizer = make_optimizer(OPTIM, STEPS_PER_EPOCH)
    step = make_train_step(setup["apply"], optimizer, sc_iterations=4)
    state, weights, losses = init_state(setup["params"], optimizer), LossWeights(mae=0.0, sc=1.0).array(), []
    for _ in range(5):
        state, metrics = step(state, batch, weights)
        losses.append(float(metrics["sc"]))
    assert losses[-1] < losses[0] and error(state.params) < error(setup["params"]), losses


def test_run_config_reads_sc_iterations_and_names_bad_values():
    assert RunConfig.from_dict({"train": {"sc_iterations": 8}}).train.sc_iterations == 8
    assert RunConfig.from_dict({}).train.sc_iterations == 1
    with pytest.raises(ValueError, match="sc_iterations"):
        RunConfig.from_dict({"train": {"sc_iterations": 0}})
    with pytest.raises(ValueError, match="sc_iteration"):
        RunConfig.from_dict({"train": {"sc_iteration": 8}})  # a misspelt key is named, not ignored


def test_ctrl_c_during_an_async_checkpoint_write_keeps_it_and_resumes_exactly(setup, tmp_path, monkeypatch):
    """KeyboardInterrupt right after a save was started (its files still being written in the background):
    the loop finishes that write before exiting, and the resumed run equals an uninterrupted one."""
    basis, apply, params = setup["basis"], setup["apply"], setup["params"]
    batches = [collate([ex], basis) for ex in setup["examples"][:2]]
    full = fit(apply, params, batches, batches[:1], _config(tmp_path, "full", 3))
    config = dataclasses.replace(_config(tmp_path, "cut", 3), checkpoint_seconds=0.0)
    original = Checkpointer.save

    def save_then_interrupt(self, step, state):
        original(self, step, state)
        if step == 2 * STEPS_PER_EPOCH:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(apply, params, batches, batches[:1], config)
    monkeypatch.undo()
    checkpointer = Checkpointer(config.run_dir)
    assert checkpointer.latest_step() == 2 * STEPS_PER_EPOCH
    checkpointer.close()
    resumed = fit(apply, params, batches, batches[:1], config)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_metrics_csv_keeps_one_header_when_validation_is_sparse(setup, tmp_path):
    import csv

    basis, apply, params = setup["basis"], setup["apply"], setup["params"]
    batches = [collate([ex], basis) for ex in setup["examples"][:2]]
    config = dataclasses.replace(_config(tmp_path, "sparse", 3), validate_every_epochs=2)
    fit(apply, params, batches, batches[:1], config)
    with open(tmp_path / "sparse" / "metrics.csv") as fh:
        rows = list(csv.reader(fh))
    assert len({len(r) for r in rows}) == 1, rows  # every row has the header's columns
    table = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [r["val_loss"] == "" for r in table] == [True, False, False]  # epochs 2 and 3 (the last) validate
    assert float(table[1]["val_loss"]) > 0 and float(table[2]["lr"]) > 0


@pytest.mark.parametrize("ema", [False, True])
def test_best_checkpoint_of_an_older_run_directory_still_loads(setup, tmp_path, ema):
    """Run directories written before the best checkpoint held parameters alone stored a whole training state
    there (params, opt_state, ema_params, step): restore_best reads the parameters validation judged."""
    import orbax.checkpoint as ocp

    params = setup["params"]
    ema_params = jax.tree.map(lambda x: x + 1.0, params)
    state = {"params": params, "opt_state": make_optimizer(OPTIM, 1).init(params), "ema_params": ema_params,
             "step": np.int32(7)}
    old = ocp.CheckpointManager(tmp_path / "old" / "checkpoints" / "best",
                                options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                                                     best_fn=lambda m: m["val_loss"], best_mode="min"))
    old.save(7, args=ocp.args.StandardSave(state), metrics={"val_loss": 0.5})
    old.close()
    checkpointer = Checkpointer(tmp_path / "old", ema=ema)
    restored = checkpointer.restore_best(params)
    checkpointer.close()
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(ema_params if ema else params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_scaled_heads_start_at_the_targets_spread(setup):
    """scale_heads: the initial blocks vary `ratio` times as much as the labelled targets (on-site around each
    species' mean, off-site around zero) and the on-site biases are fitted again."""
    from elct_jax.train.init import _species_centred, scale_heads

    batches = [collate(setup["examples"][:2], setup["basis"])]
    apply = jax.jit(setup["apply"])
    params = scale_heads(setup["params"], apply, batches, setup["basis"], 0.1)
    batch = batches[0]
    out, species = apply(params, batch.graph), np.asarray(batch.graph.nodes["species"])
    for part in (0, 1):
        mask = np.asarray(batch.target_masks["hamiltonian"][part], bool)
        pred, target = np.asarray(out[part]), np.asarray(batch.targets["hamiltonian"][part])
        if part == 0:
            for sp in np.unique(species):  # biases refitted: the s-s entry (all invariant) has no mean residual
                atoms = (species == sp) & mask[:, 0, 0]
                assert abs(np.mean((target - pred)[atoms, 0, 0])) < 1e-10
            pred, target = (_species_centred(x, species, mask) for x in (pred, target))
        rms = [np.sqrt(np.sum(np.where(mask, x, 0.0) ** 2) / mask.sum()) for x in (pred, target)]
        assert abs(rms[0] / rms[1] - 0.1) < 1e-6, (part, rms)


def test_metrics_log_keeps_the_columns_of_a_resumed_runs_file(tmp_path):
    """A run resumed by a newer version (more loss terms) appends rows under the file's own header."""
    (tmp_path / "metrics.csv").write_text("epoch,step,train_mae\n0,1,0.5\n")
    log = MetricsLog(tmp_path)
    log.write(1, 2, {"train_mae": 0.25, "train_mae_orth": 0.125})
    log.close()
    with (tmp_path / "metrics.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["epoch", "step", "train_mae"], ["0", "1", "0.5"], ["1", "2", "0.25"]], rows

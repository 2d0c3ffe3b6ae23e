"""Data-parallel training step on two (host) devices equals the single-device computation.

Runs in a subprocess because the host-device count must be set before JAX starts.
"""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from pyscf import dft, gto
    import ai2dft
    ai2dft.enable_float64()
    from elct_jax.geometry.basis import OrbitalBasis
    from elct_jax.config import LossWeights, OptimConfig, preset
    from elct_jax.data.deeph_dock import DeepHRecord
    from elct_jax.data.loader import make_example
    from elct_jax.hamiltonian.blocks import dense_to_dict
    from elct_jax.nn.model import make_predict_fn
    from elct_jax.geometry.structure import Structure
    from elct_jax.train.optim import make_optimizer
    from elct_jax.train.parallel import data_mesh, replicate, shard_batch, stack_shards
    from elct_jax.train.step import init_state, make_loss_fn, make_train_step

    assert len(jax.devices()) == 2, jax.devices()
    sy = ("O", "H", "H")
    base = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
    basis = OrbitalBasis.from_pyscf("sto-3g", sy)
    examples = []
    for k in range(2):
        pos = base + 0.04 * np.random.default_rng(k).standard_normal(base.shape)
        mf = dft.RKS(gto.M(atom=list(zip(sy, pos)), basis="sto-3g", verbose=0), xc="lda,vwn").density_fit().run()
        rec = DeepHRecord(Structure(sy, pos), basis, {"hamiltonian": dense_to_dict(mf.get_fock(), basis, sy)})
        examples.append(make_example(rec, basis, 5.0))
    stacked = stack_shards([[examples[0]], [examples[1]]], basis)
    init, apply = make_predict_fn(preset("tiny", dtype="float64", l_max=2), basis)
    params = init(jax.random.PRNGKey(0), jax.tree.map(lambda x: x[0], stacked.graph))
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-3), 1)
    weights = LossWeights(mae=1.0).array()
    mesh = data_mesh()
    step = make_train_step(apply, optimizer, sharded=True)
    state, metrics = step(replicate(init_state(params, optimizer), mesh), shard_batch(stacked, mesh), weights)
    assert len(metrics["loss"].sharding.device_set) == 2

    loss_fn = make_loss_fn(apply)
    shards = [jax.tree.map(lambda x, k=k: x[k], stacked) for k in range(2)]
    grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, b, weights)[0]))
    losses = [float(loss_fn(params, b, weights)[0]) for b in shards]
    g_mean = jax.tree.map(lambda a, b: 0.5 * (a + b), *[grad(params, b) for b in shards])
    reference = init_state(params, optimizer)
    updates, _ = optimizer.update(g_mean, reference.opt_state, params, value=jnp.mean(jnp.array(losses)))
    expected = jax.tree.map(lambda p, u: p + u, params, updates)
    assert abs(float(metrics["loss"]) - np.mean(losses)) < 1e-12, (float(metrics["loss"]), losses)
    err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)))
    assert err < 1e-12, err
    print("PARALLEL_OK", err)
    """
)


@pytest.mark.slow  # two compiles in a fresh process (~1-5 min on 2 cores); run with -m slow
def test_two_device_data_parallel_step_matches_single_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    script = tmp_path / "parallel_check.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "PARALLEL_OK" in out.stdout

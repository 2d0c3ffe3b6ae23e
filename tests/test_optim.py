"""The optimizer's warm restarts (``OptimConfig.restart_learning_rates``): one schedule equals separate Adam runs."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from elct_jax.config import OptimConfig
from elct_jax.train.optim import current_learning_rate, cycle_starts, make_optimizer

PEAKS, FINAL, CYCLE = (1e-2, 1e-3, 3e-4), 1e-5, 40


def _gradients(n_steps: int):
    """Gradients 1e4x larger in the first cycle's first steps than later (the label-free Omega pattern)."""
    rng = np.random.default_rng(0)
    return [{"w": jnp.asarray(rng.normal(size=(3, 2)) * (1e2 if k < 10 else 1e-2))} for k in range(n_steps)]


def test_warm_restarts_equal_one_fresh_adam_per_cycle():
    config = OptimConfig(learning_rate=PEAKS[0], schedule="exponential", final_learning_rate=FINAL,
                         restart_learning_rates=PEAKS[1:], clip_norm=0.0)
    total = CYCLE * len(PEAKS)
    assert cycle_starts(config, total) == (0, CYCLE, 2 * CYCLE)
    optimizer = make_optimizer(config, 1, total)
    update = jax.jit(optimizer.update)
    params = ref = {"w": jnp.ones((3, 2), jnp.float64)}
    state = optimizer.init(params)
    for k, g in enumerate(_gradients(total)):
        if k % CYCLE == 0:  # the manual recipe: a new Adam for each cycle, its lr decaying peak -> FINAL
            peak = PEAKS[k // CYCLE]
            ref_opt = optax.adam(optax.exponential_decay(peak, CYCLE, FINAL / peak))
            ref_state, ref_update = ref_opt.init(ref), jax.jit(ref_opt.update)
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        ref_updates, ref_state = ref_update(g, ref_state, ref)
        ref = optax.apply_updates(ref, ref_updates)
        np.testing.assert_allclose(params["w"], ref["w"], rtol=0, atol=1e-14)
        lr = float(current_learning_rate(state, k + 1, config, total))
        np.testing.assert_allclose(lr, peak * (FINAL / peak) ** ((k % CYCLE) / CYCLE), rtol=1e-6)


def test_without_restarts_the_adam_moments_carry_the_early_gradients():
    """The control: one Adam over the same gradients moves less per step after the large ones (why restarts)."""
    config = OptimConfig(learning_rate=1e-3, schedule="exponential", final_learning_rate=1e-3, clip_norm=0.0)
    restarted = OptimConfig(learning_rate=1e-3, schedule="exponential", final_learning_rate=1e-3, clip_norm=0.0,
                            restart_learning_rates=(1e-3,))
    steps = {}
    for name, c in (("one", config), ("restarted", restarted)):
        opt = make_optimizer(c, 1, 2 * CYCLE)
        params = {"w": jnp.ones((3, 2), jnp.float64)}
        state = opt.init(params)
        for g in _gradients(CYCLE + 1):
            updates, state = opt.update(g, state, params)
        steps[name] = float(jnp.abs(updates["w"]).max())  # the first update of the second cycle
    assert steps["restarted"] > 10 * steps["one"]  # measured 30x

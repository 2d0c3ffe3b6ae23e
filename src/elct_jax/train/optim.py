"""Optimizer of the universal-model paper: Adam, learning rate halved on plateau, stop at a floor; or Adam
with an exponentially decaying learning rate over a fixed budget (``OptimConfig.schedule``).

Defaults: the DeepH-2 universal model's schedule (factor 0.5, patience 20 epochs) with lr 1e-3 (its 4e-4
at batch 1 reached 3x the test error at equal CPU time on water-md17 with batch 4, benchmarks/RESULTS.md
"Accuracy") and a minimum lr of 1e-6 (1e-5 stopped runs that were still improving). The plateau
is judged on the training loss averaged over an epoch (``accumulation_size = steps_per_epoch``), inside the
jitted update, so the schedule costs no host round trip.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from elct_jax.config import OptimConfig


def make_optimizer(config: OptimConfig, steps_per_epoch: int, total_steps: int = 1
                   ) -> optax.GradientTransformationExtraArgs:
    """Clip -> Adam(lr) -> reduce-on-plateau, or clip -> Adam(exponential schedule over ``total_steps``,
    which only that schedule depends on). ``update(..., value=loss)`` must be given the step's loss."""
    return _make_optimizer(config, steps_per_epoch, total_steps if config.schedule == "exponential" else 1)


@functools.lru_cache(maxsize=None)  # one optimizer object per config: jitted steps are shared
def _make_optimizer(config: OptimConfig, steps_per_epoch: int, total_steps: int):
    parts = []
    if config.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.clip_norm))
    if config.schedule == "exponential" and config.restart_learning_rates:
        adam = restarted(optax.scale_by_adam(b2=config.adam_b2), cycle_starts(config, total_steps)[1:])
        return optax.chain(*parts, adam, optax.scale_by_learning_rate(exponential_schedule(config, total_steps)))
    if config.schedule == "exponential":
        return optax.chain(*parts, optax.adam(exponential_schedule(config, total_steps), b2=config.adam_b2))
    parts.append(optax.adam(config.learning_rate, b2=config.adam_b2))
    parts.append(
        optax.contrib.reduce_on_plateau(
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            accumulation_size=max(1, steps_per_epoch),
            # one halving below the floor is allowed so the loop can see the floor was crossed
            min_scale=config.min_learning_rate * config.plateau_factor / config.learning_rate,
        )
    )
    return optax.chain(*parts)


def exponential_schedule(config: OptimConfig, total_steps: int) -> optax.Schedule:
    """step -> lr, from ``learning_rate`` at step 0 to ``final_learning_rate`` at ``total_steps``; with
    warm restarts, the same within each cycle from its own peak (:func:`cycle_starts`)."""
    peaks = (config.learning_rate, *config.restart_learning_rates)
    starts = cycle_starts(config, total_steps)
    ends = (*starts[1:], max(total_steps, len(peaks)))
    cycles = [optax.exponential_decay(peak, transition_steps=end - start,
                                      decay_rate=config.final_learning_rate / peak)
              for peak, start, end in zip(peaks, starts, ends)]
    return cycles[0] if len(cycles) == 1 else optax.join_schedules(cycles, list(starts[1:]))


def cycle_starts(config: OptimConfig, total_steps: int) -> tuple[int, ...]:
    """First step of each warm-restart cycle: 1 + len(restart_learning_rates) near-equal parts of the budget."""
    n = 1 + len(config.restart_learning_rates)
    total = max(total_steps, n)
    return tuple(total * c // n for c in range(n))


def restarted(inner: optax.GradientTransformation, restart_steps: tuple[int, ...]) -> optax.GradientTransformation:
    """``inner`` whose state is re-initialised (e.g. Adam's moments and bias correction) before the update
    of each step in ``restart_steps`` (0-based step counts)."""
    restart_at = jnp.asarray(restart_steps, jnp.int32)

    def init(params):
        return jnp.zeros([], jnp.int32), inner.init(params)

    def update(updates, state, params=None):
        count, inner_state = state
        fresh = inner.init(updates)  # the gradient has the parameters' shapes and dtypes
        restart = jnp.any(count == restart_at)
        inner_state = jax.tree.map(lambda f, s: jnp.where(restart, f, s), fresh, inner_state)
        updates, inner_state = inner.update(updates, inner_state, params)
        return updates, (count + 1, inner_state)

    return optax.GradientTransformation(init, update)


def current_learning_rate(opt_state, step, config: OptimConfig, total_steps: int) -> jnp.ndarray:
    """The learning rate of the last of ``step`` steps: the exponential schedule's value, or the base lr
    times the plateau scale (last element of the chain state)."""
    if config.schedule == "exponential":
        return exponential_schedule(config, total_steps)(step - 1)
    return config.learning_rate * opt_state[-1].scale


def ema_update(ema_params, params, decay: float):
    """Exponential moving average of parameters (pytrees of the same structure)."""
    return optax.incremental_update(params, ema_params, step_size=1.0 - decay)

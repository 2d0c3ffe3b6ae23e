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
    if config.schedule == "exponential":
        return optax.chain(*parts, optax.adam(exponential_schedule(config, total_steps)))
    parts.append(optax.adam(config.learning_rate))
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
    """step -> lr, from ``learning_rate`` at step 0 to ``final_learning_rate`` at ``total_steps``."""
    return optax.exponential_decay(config.learning_rate, transition_steps=max(total_steps, 1),
                                   decay_rate=config.final_learning_rate / config.learning_rate)


def current_learning_rate(opt_state, step, config: OptimConfig, total_steps: int) -> jnp.ndarray:
    """The learning rate of the last of ``step`` steps: the exponential schedule's value, or the base lr
    times the plateau scale (last element of the chain state)."""
    if config.schedule == "exponential":
        return exponential_schedule(config, total_steps)(step - 1)
    return config.learning_rate * opt_state[-1].scale


def ema_update(ema_params, params, decay: float):
    """Exponential moving average of parameters (pytrees of the same structure)."""
    return optax.incremental_update(params, ema_params, step_size=1.0 - decay)

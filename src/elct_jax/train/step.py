"""ONE jitted training step for supervised, label-free (Omega), self-consistency and hybrid training.

    loss = w_mae * MAE(H, H_ref) + w_omega * mean(Omega(H) / N_e) + w_sc * mean|H - T(H)|
           + w_mae_orth * MAE(S^-1/2 H S^-1/2, S^-1/2 H_ref S^-1/2) + w_mae_onsite * MAE(on-site blocks)

T(H) is the self-consistency target: the Fock matrix after ``sc_iterations`` (static) Roothaan-DIIS
steps from H, F[D(H)] for one (``elct_jax.train.losses``).

Molecules and crystals go through the same code: ``train.losses.energy_losses`` assembles the system's H
from the blocks (dense H for an ``ai2dft.System``, H(k) for a ``CrystalSystem``: dispatched on the pytree
type at trace time) and takes Omega and T from ai2dft. One jitted step, one compilation per batch shape.

The weights are a traced array ``[w_mae, w_omega, w_sc, w_mae_orth, w_mae_onsite]``: changing them never recompiles. A batch may
carry a leading shard axis (one slice per device, see ``elct_jax.train.parallel``); the loss is then the
mean over shards and XLA inserts the gradient all-reduce.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from elct_jax.data.baseline import with_baseline
from elct_jax.data.loader import Batch
from elct_jax.train.losses import abs_errors, energy_losses, masked_mean, orthonormal_mae
from elct_jax.train.optim import ema_update

LOSS_NAMES = ("mae", "omega", "sc", "mae_orth", "mae_onsite")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a resumed run needs: parameters, optimizer state, EMA parameters, step counter."""

    params: dict
    opt_state: optax.OptState
    ema_params: dict
    step: jax.Array


def init_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params=params, opt_state=optimizer.init(params), ema_params=params,
                      step=jnp.zeros((), jnp.int32))


def hamiltonian_mae(onsite, edges, batch: Batch):
    """([], []) MAE (Hartree) over every labelled entry of the batch's "hamiltonian" target, and over its
    on-site blocks (i = j, R = 0) alone (0 if no target); the network output against H - H0 when the batch
    carries a baseline H0 (the same error as H against H). Spinful blocks (``elct_jax.hamiltonian.spinor``) the
    same way; complex ones over real and imaginary parts."""
    real = jnp.real(onsite).dtype
    if "hamiltonian" not in batch.targets:
        return jnp.zeros((), real), jnp.zeros((), real)
    (t_on, t_ed), (m_on, m_ed) = batch.targets["hamiltonian"], batch.target_masks["hamiltonian"]
    pred = jnp.concatenate([onsite.reshape(-1), edges.reshape(-1)])
    target = jnp.concatenate([t_on.reshape(-1), t_ed.reshape(-1)]).astype(pred.dtype)
    mask = jnp.concatenate([m_on.reshape(-1), m_ed.reshape(-1)]).astype(real)
    errors, mask = abs_errors(pred, target, mask)
    n_on = onsite.size  # the on-site entries come first
    return masked_mean(errors, mask), masked_mean(errors[..., :n_on], mask[..., :n_on])


def make_loss_fn(apply_fn: Callable, sc_iterations: int = 1) -> Callable:
    """loss(params, batch, weights) -> (loss, metrics) for one shard. ``apply_fn(params, graph)`` returns
    (onsite, edge_blocks) in internal order (Hartree); sc_iterations: DIIS steps of the sc target."""

    def loss_fn(params, batch: Batch, weights):
        onsite, edges = apply_fn(params, batch.graph)
        mae, mae_onsite = hamiltonian_mae(onsite, edges, batch)
        orth = orthonormal_mae(onsite, edges, batch.targets, batch.target_masks, batch.layout, weights[3])
        onsite, edges = with_baseline(onsite, edges, batch)  # the full H for the energy terms
        if batch.systems is None:
            omega = sc = jnp.zeros((), mae.dtype)
        else:
            omega, sc = energy_losses(batch.systems, onsite, edges, batch.layout, batch.has_system, weights[1],
                                      weights[2], sc_iterations)
        terms = jnp.stack([mae, omega.astype(mae.dtype), sc.astype(mae.dtype), orth.astype(mae.dtype), mae_onsite])
        return jnp.dot(weights.astype(terms.dtype), terms), dict(zip(LOSS_NAMES, terms))

    return loss_fn


def _sharded(loss_fn: Callable, sharded: bool) -> Callable:
    if not sharded:
        return loss_fn

    def mean_over_shards(params, batch, weights):
        losses, metrics = jax.vmap(loss_fn, in_axes=(None, 0, None))(params, batch, weights)
        return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)

    return mean_over_shards


@functools.partial(jax.jit, static_argnames=("apply_fn", "optimizer", "ema_decay", "sharded", "sc_iterations"))
def train_step(state: TrainState, batch: Batch, weights, *, apply_fn: Callable,
               optimizer: optax.GradientTransformationExtraArgs, ema_decay: float = 0.0, sharded: bool = False,
               sc_iterations: int = 1):
    """One optimisation step -> (state, metrics); metrics include "loss" and "grad_norm".

    Module-level and jitted with the model/optimizer as static arguments, so every caller with the same
    (cached) ``apply_fn`` and ``optimizer`` shares one compilation per batch shape.
    """
    loss_fn = _sharded(make_loss_fn(apply_fn, sc_iterations), sharded)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, weights)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema_params, params, ema_decay) if ema_decay > 0 else params
    new = TrainState(params=params, opt_state=opt_state, ema_params=ema, step=state.step + 1)
    return new, {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}


@functools.partial(jax.jit, static_argnames=("apply_fn", "sharded", "sc_iterations"))
def eval_step(params, batch: Batch, weights, *, apply_fn: Callable, sharded: bool = False, sc_iterations: int = 1):
    """Loss terms without gradient -> metrics (``"loss"``, ``"mae"``, ``"omega"``, ``"sc"``)."""
    loss, metrics = _sharded(make_loss_fn(apply_fn, sc_iterations), sharded)(params, batch, weights)
    return {**metrics, "loss": loss}


def make_train_step(apply_fn: Callable, optimizer: optax.GradientTransformationExtraArgs,
                    ema_decay: float = 0.0, sharded: bool = False, sc_iterations: int = 1) -> Callable:
    """``step(state, batch, weights) -> (state, metrics)`` bound to a model and optimizer."""
    return functools.partial(train_step, apply_fn=apply_fn, optimizer=optimizer, ema_decay=ema_decay,
                             sharded=sharded, sc_iterations=sc_iterations)


def make_eval_step(apply_fn: Callable, sharded: bool = False, sc_iterations: int = 1) -> Callable:
    """``evaluate(params, batch, weights) -> metrics`` bound to a model."""
    return functools.partial(eval_step, apply_fn=apply_fn, sharded=sharded, sc_iterations=sc_iterations)

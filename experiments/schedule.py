"""The optimizer options shared by the label-free experiments: Adam with an exponential learning-rate decay over a
fixed budget, optionally with warm restarts (fresh Adam moments per cycle) and another second-moment decay."""
from __future__ import annotations

import argparse

from elct_jax.config import OptimConfig


def add_schedule_arguments(parser: argparse.ArgumentParser, steps: int, lr: float, final_lr: float,
                           adam_b2: float = 0.999) -> None:
    """--steps, --lr, --final-lr, --adam-b2 (with these defaults), --restart-lrs."""
    parser.add_argument("--steps", type=int, default=steps, help="training steps of every mode")
    parser.add_argument("--lr", type=float, default=lr, help="initial Adam learning rate")
    parser.add_argument("--final-lr", type=float, default=final_lr, help="learning rate at the last step")
    parser.add_argument("--adam-b2", type=float, default=adam_b2, help="Adam's second-moment decay (OptimConfig.adam_b2)")
    parser.add_argument("--restart-lrs", type=float, nargs="*", default=(),
                        help="warm restarts: split --steps into 1 + len equal cycles, each decaying from its peak "
                             "(--lr, then these) to --final-lr with a fresh Adam state (OptimConfig.restart_learning_rates)")


def optim_config(args: argparse.Namespace) -> OptimConfig:
    """The OptimConfig of the parsed options (no gradient clipping)."""
    return OptimConfig(learning_rate=args.lr, schedule="exponential", final_learning_rate=args.final_lr, clip_norm=0.0,
                       restart_learning_rates=tuple(args.restart_lrs), adam_b2=args.adam_b2)


def describe(args: argparse.Namespace) -> str:
    """'Adam lr A -> B (exponential) over N steps per mode[, warm restarts ...], Adam b2 C'."""
    restarts = f", warm restarts from {list(args.restart_lrs)}" if args.restart_lrs else ""
    return (f"Adam lr {args.lr:g} -> {args.final_lr:g} (exponential) over {args.steps} steps per mode{restarts}, "
            f"Adam b2 {args.adam_b2:g}")

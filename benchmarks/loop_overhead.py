"""Cost of the training loop over the bare jitted step, and training peak memory, on a 40-water set.

The first ``--n`` structures of a water dataset (e.g. water-md17; split 30 / 5 / 5 by index) with the
``small`` preset and the default recipe (``elct train``'s defaults: batch 4, validation every 5 epochs,
asynchronous checkpoints every 300 s). Two fresh child processes, so each peak RSS is its own:
  bare   ``elct_jax.train.step.train_step`` called in a Python loop over the training batches, results
         awaited once per epoch (the least any loop can do)
  loop   ``elct_jax.train.run.train`` as ``elct train`` runs it: the network's eager initialisation and on-site
         bias fit, then ``elct_jax.train.loop.fit``: the same step with epoch ordering, validation, metrics.csv
         and TensorBoard logs, checkpoints, NaN guard, progress bar
Both report process CPU milliseconds per step from the end of epoch 10 on (compilations of the step and of
validation excluded: they are paid once per run) and the
peak resident set size of the whole process (imports, data, compilation included); ratio = loop / bare.

    OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \\
    python benchmarks/loop_overhead.py --data ~/.cache/elct/water-md17
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe


def _config(data: Path, n: int, run_dir: Path, epochs: int):
    from elct_jax.config import DataConfig, RunConfig, TrainConfig, preset

    split = run_dir / "split.json"
    names = [str(i) for i in range(n)]
    n_train, n_val = round(0.75 * n), round(0.125 * n)
    split.write_text(json.dumps({"train": names[:n_train], "val": names[n_train:n_train + n_val],
                                 "test": names[n_train + n_val:]}))
    return RunConfig(data=DataConfig(path=str(data), split_file=str(split)), model=preset("small"),
                     train=TrainConfig(run_dir=str(run_dir / "run"), epochs=epochs, progress=False))


def child(mode: str, data: Path, n: int, epochs: int) -> dict:
    import jax

    import ai2dft
    from elct_jax.nn.model import make_predict_fn
    from elct_jax.train.optim import make_optimizer
    from elct_jax.train.run import prepare_data, train
    from elct_jax.train.step import init_state, make_train_step

    ai2dft.enable_float64()  # as `elct train` runs
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(data, n, Path(tmp), epochs)
        dataset = prepare_data(config)
        batches = dataset.batches["train"]
        marks = []
        if mode == "loop":
            train(config, dataset, callbacks=[lambda end: marks.append(time.process_time())])
        else:
            init, apply = make_predict_fn(config.model, dataset.basis)
            params = jax.jit(init)(jax.random.PRNGKey(0), batches[0].graph)
            optimizer = make_optimizer(config.train.optim, len(batches))
            step = make_train_step(apply, optimizer, config.train.optim.ema_decay)
            state, weights = init_state(params, optimizer), config.train.weights.array()
            for _ in range(epochs):
                for b in batches:
                    state, metrics = step(state, b, weights)
                jax.block_until_ready(metrics)
                marks.append(time.process_time())
    skip = 2 * config.train.validate_every_epochs  # steady state: validation compiled, allocator warm
    steps = (len(marks) - 1 - skip) * len(batches)
    return dict(mode=mode, cpu_ms_per_step=1e3 * (marks[-1] - marks[skip]) / steps, steps=steps,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--child", choices=("bare", "loop"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.n, args.epochs)))
        return
    print(describe())
    results = {}
    for mode in ("bare", "loop"):
        out = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--n", str(args.n), "--epochs",
                              str(args.epochs), "--child", mode], check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
        print(results[mode], flush=True)
    print(f"loop / bare CPU per step: {results['loop']['cpu_ms_per_step'] / results['bare']['cpu_ms_per_step']:.2f} "
          f"(goal <= 1.2); peak RSS loop {results['loop']['peak_rss_mib']:.0f} MiB (goal <= 1024)")


if __name__ == "__main__":
    main()

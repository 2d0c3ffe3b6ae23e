"""DeepH-E3's side of ``benchmarks/deephe3_race.py``: run with DeepH-E3's own venv, never the project's.

    OMP_NUM_THREADS=1 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/deephe3-venv/bin/python \\
        benchmarks/deephe3_driver.py --src /work/deephe3-src --work ~/.cache/elct/deephe3-water --budget-min 60

DeepH-E3's own training (``DeepHE3Kernel.train``: its default config, Adam, ReduceLROnPlateau, its per-epoch
validation and checkpoints) with three things set from outside, none of its source changed:
- the config: ``deephe3/default_configs/train_default.ini`` with only the data paths, the split sizes and
  ``verbose`` dropped from the ReduceLROnPlateau parameters (it fails on torch 2.13) changed (``train.ini``);
- the split: exactly ``<work>/split.json``'s train / val / test folder names (its loader draws a random split);
- the clock: process CPU seconds from its first training batch (graph building and model construction, done
  before, are not counted, as ELCT's data preparation is not). At each mark of ``--marks`` the current
  parameters are scored on the test subset, the time that takes excluded: predicted blocks
  (``[R1, R2, R3, i, j]``, OpenMX order, eV, as in its test_result) go to ``pred_<mark>min.h5`` and the mark,
  with DeepH-E3's own |H_pred - label| sums per structure, to ``marks.json``. ``labels.h5``: its labels of the
  same structures, for the project's order-and-units check. Training stops at ``--budget-min``.
torch_scatter, which DeepH-E3 imports and which has no wheel for torch 2.13, is stood in for by
``torch_geometric.utils.scatter`` (same arguments; ``reduce='add'`` is its ``'sum'``): :func:`scatter_shim`.
Threads: one (``torch.set_num_threads(1)``; OMP_NUM_THREADS=1 in the environment before torch loads).
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


def write_config(src: Path, work: Path) -> Path:
    """train.ini: DeepH-E3's default with the data paths, split sizes and the scheduler fix."""
    config = configparser.ConfigParser(inline_comment_prefixes=(";",))
    config.read(src / "deephe3/default_configs/train_default.ini")
    config["basic"]["save_dir"] = str(work / "run")
    config["data"].update(processed_data_dir=str(work / "raw"), save_graph_dir=str(work / "graph"),
                          dataset_name="watermd17")
    split = json.loads((work / "split.json").read_text())
    config["train"].update(train_size=str(len(split["train"])), val_size=str(len(split["val"])),
                           test_size=str(len(split["test"])))
    config["hyperparameters"]["scheduler_params"] = "(factor=0.5, cooldown=40, patience=120, threshold=0.05)"
    path = work / "train.ini"
    with path.open("w") as fh:
        config.write(fh)
    return path


def make_kernel(base, work: Path, marks_min: list[float], budget_min: float):
    """A DeepHE3Kernel whose loaders follow split.json and whose optimizer steps are timed."""
    from torch.utils.data import DataLoader, SubsetRandomSampler

    from deephe3.graph import Collater

    split = json.loads((work / "split.json").read_text())

    class RaceKernel(base):
        def get_loader(self):
            index = {data.stru_id: i for i, data in enumerate(self.dataset)}
            parts = {k: [index[n] for n in split[k]] for k in ("train", "val", "test")}
            print(f"split from {work / 'split.json'}: " + ", ".join(f"{len(v)} {k}" for k, v in parts.items()))
            loader = lambda ids, bs: DataLoader(self.dataset, batch_size=bs, shuffle=False,  # noqa: E731
                                                sampler=SubsetRandomSampler(ids), collate_fn=Collater())
            self.test_ids = parts["test"]
            return (loader(parts["train"], self.train_config.batch_size),
                    loader(parts["val"], self.train_config.batch_size), None, loader(parts["test"], 1))

    kernel = RaceKernel()
    kernel.clock = Clock(kernel, work, marks_min, budget_min)
    register_optimizer_step_post_hook(kernel.clock)
    return kernel


class Clock:
    """Optimizer-step hook: process CPU seconds since the first step, scoring at each mark, stop at budget."""

    def __init__(self, kernel, work: Path, marks_min: list[float], budget_min: float):
        self.kernel, self.work = kernel, work
        self.marks, self.budget = sorted(marks_min), budget_min * 60
        self.cpu0, self.excluded, self.steps, self.done = None, 0.0, 0, []

    def cpu(self) -> float:
        return time.process_time() - self.cpu0 - self.excluded

    def __call__(self, optimizer, args, kwargs) -> None:
        if self.cpu0 is None:  # the first step's own cost is not counted: negligible against 5 minutes
            self.cpu0 = time.process_time()
        self.steps += 1
        cpu = self.cpu()
        while self.marks and cpu >= self.marks[0] * 60:
            start = time.process_time()
            self.score(self.marks.pop(0), cpu)
            self.excluded += time.process_time() - start
        if cpu >= self.budget:
            print(f"budget of {self.budget / 60:.0f} CPU-minutes spent at step {self.steps}", flush=True)
            raise KeyboardInterrupt  # DeepH-E3's loop catches it and finishes (best model on the test subset)

    def score(self, mark: float, cpu: float) -> None:
        """Current parameters on the test subset: blocks to pred_<mark>min.h5, sums to marks.json."""
        kernel, net = self.kernel, self.kernel.net
        name = f"pred_{mark:g}min.h5"
        sums, labels_path = {}, self.work / "labels.h5"
        write_labels = not labels_path.exists()
        net.eval()
        with torch.no_grad(), h5py.File(self.work / name, "w") as fp, \
                h5py.File(labels_path, "a") as fl:
            for batch in kernel.dataset.index_select(kernel.test_ids):
                batch = kernel_batch(batch)
                _, output_edge = net(batch)
                H_pred = kernel.construct_kernel.get_H(output_edge)
                mask = batch.mask.bool()
                diff = (H_pred - batch.label).abs()[mask]
                sums[batch.stru_id[0]] = [float(diff.sum()), int(mask.sum())]
                write_blocks(fp.create_group(batch.stru_id[0]), kernel, H_pred.numpy(), batch)
                if write_labels:
                    write_blocks(fl.create_group(batch.stru_id[0]), kernel, batch.label.numpy(), batch)
        net.train()
        mae = sum(s for s, _ in sums.values()) / sum(n for _, n in sums.values())
        row = dict(mark_min=mark, cpu_s=round(cpu, 1), step=self.steps, file=name, mae_eV=mae,
                   abs_sum_count=sums, lr=kernel.train_utils.optimizer.param_groups[0]["lr"])
        path = self.work / "marks.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(rows + [row]))
        print(f"mark {mark:g} CPU-min: cpu {cpu:.1f} s, step {self.steps}, test MAE {mae * 1e3:.3f} meV "
              f"over {len(sums)} structures", flush=True)


def kernel_batch(data):
    """One structure as a batch of one (DeepH-E3's Collater, as its test loader makes it)."""
    from deephe3.graph import Collater

    return Collater()([data])


def write_blocks(group, kernel, H, batch) -> None:
    """[n_edges, n_out] net-ordered values -> one dataset per hopping "[R1, R2, R3, i, j]" (its update_hopping)."""
    blocks = kernel.update_hopping({}, H, batch.x, batch.edge_index, batch.edge_key)
    for key, block in blocks.items():
        group[key] = np.asarray(block)


def scatter_shim() -> None:
    """Register a ``torch_scatter`` module whose ``scatter`` forwards to ``torch_geometric.utils.scatter``."""
    import types

    from torch_geometric.utils import scatter

    def forward(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
        if out is not None:
            raise NotImplementedError("the torch_scatter shim does not take out=")
        return scatter(src, index, dim=dim, dim_size=dim_size, reduce="sum" if reduce == "add" else reduce)

    module = types.ModuleType("torch_scatter")
    module.scatter = forward
    sys.modules["torch_scatter"] = module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="DeepH-E3's source tree (deephe3/ inside)")
    parser.add_argument("--work", type=Path, required=True, help="deephe3_race.py export's --out")
    parser.add_argument("--budget-min", type=float, default=60.0)
    parser.add_argument("--marks", default="5,10,20,30,45,60", help="CPU-minutes at which to score")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        raise SystemExit("set OMP_NUM_THREADS=1 (one thread, as ELCT's run)")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, str(args.src))
    scatter_shim()
    from deephe3 import DeepHE3Kernel

    config = write_config(args.src, args.work)
    marks = [float(m) for m in args.marks.split(",")]
    make_kernel(DeepHE3Kernel, args.work, marks, args.budget_min).train(str(config))


if __name__ == "__main__":
    main()

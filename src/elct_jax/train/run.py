"""A training run (``elct_jax.config.RunConfig``, from a TOML file by ``load_run_config``): data -> model ->
fit -> saved model. Used by ``elct train`` and the demo.

Example ``water.toml``::

    [data]
    path = "data/water"          # DeepH-dock or legacy folders (see elct_jax.data)
    cutoff_ang = 6.0
    batch_size = 2
    split_seed = 0

    [model]
    preset = "small"             # tiny | small | paper; other keys override ModelConfig fields
    dtype = "float32"

    [train]
    run_dir = "runs/water"
    epochs = 200
    init_from = ""               # fine-tune from: "universal-mol-v1", an exported model or a run directory
    sc_iterations = 1            # DIIS steps of the sc target T(H) (1: F[D(H)]; ~8 trains like labels)
    [train.weights]              # loss = mae * MAE + omega * Omega/N_e + sc * |H - T(H)| + mae_orth * MAE(S^-1/2 H S^-1/2)
    mae = 1.0                    #        + mae_onsite * MAE(on-site blocks)
    omega = 0.0
    sc = 0.0
    mae_orth = 0.0
    mae_onsite = 0.0
    [train.optim]
    learning_rate = 4e-4

The run directory receives ``model.json`` (model config, basis, cutoff: everything ``load_model`` needs
besides the orbax checkpoint), ``metrics.csv``, TensorBoard logs and ``checkpoints/{latest,best}``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.config import ModelConfig, RunConfig
from elct_jax.data.baseline import BASELINE, baseline_settings
from elct_jax.data.dataset_dir import SPLIT_NAMES, dataset_folders, read_record, read_split_file
from elct_jax.data.spinful import check_spin
from elct_jax.data.loader import (
    check_level_of_theory,
    collate,
    common_pad_sizes,
    make_example,
    merged_basis,
    pack_groups,
    split_indices,
)
from elct_jax.data.systems import system_from_record
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.saved_model import TrainedModel, load_model, write_model_info
from elct_jax.train.init import fit_onsite_bias, scale_heads
from elct_jax.train.loop import fit, release_all_compiled


@dataclass
class Dataset:
    """Examples split into train/val/test batches (all padded, ready for the jitted step)."""

    basis: OrbitalBasis
    records: list
    splits: dict[str, np.ndarray]
    batches: dict[str, list]
    names: list[str] = field(default_factory=list)  # folder of each record, relative to the dataset root
    baseline: dict | None = None  # settings of the H0 baseline the network learns on top of (None: none)


def prepare_data(config: RunConfig, with_systems: bool | None = None, basis: OrbitalBasis | None = None) -> Dataset:
    """Read, split and batch the dataset. DFT systems are built when the loss needs them (or asked).
    Raises naming the records if their bases or levels of theory disagree."""
    config, start = with_start_model(config)
    root = Path(config.data.path)
    folders = dataset_folders(root)
    if config.data.split_file:
        splits = read_split_file(config.data.split_file, root, folders)
        used = np.concatenate(list(splits.values()))
        folders = [folders[i] for i in used]  # read only what the split names, renumbered in that order
        bounds = np.cumsum([0] + [len(splits[k]) for k in SPLIT_NAMES])
        splits = {k: np.arange(bounds[n], bounds[n + 1]) for n, k in enumerate(SPLIT_NAMES)}
        splits["train"] = np.random.default_rng(config.data.split_seed).permutation(splits["train"])  # mixed batches
    else:
        splits = dict(zip(SPLIT_NAMES, split_indices(len(folders), config.data.split_seed, config.data.split)))
    records = [read_record(f) for f in tqdm(folders, desc="reading", unit="record", disable=len(folders) < 200)]
    names = [f.relative_to(root).as_posix() for f in folders]
    check_spin(records, names, config.model.spin)
    check_level_of_theory(records, names)
    if basis is None:
        basis = merged_basis(records, names)
        if start is not None:  # the fine-tuned network's species are the start model's elements
            start.check_basis(basis)
            basis = start.basis
    spin = config.model.spin
    use_baseline = _use_baseline(config.data.baseline if spin == "none" else "none", records, names)
    with_systems = config.label_free if with_systems is None else with_systems
    if spin != "none" and config.data.baseline == "h0":
        raise ValueError(f"a model with spin = {spin!r} learns H itself (data.baseline 'none' or 'auto'): H0 is spinless")
    examples = [make_example(r, basis, config.data.cutoff_ang, system_from_record(r) if with_systems else None,
                             baseline=use_baseline, spin=spin) for r in records]
    groups = {name: pack_groups([examples[i] for i in idx], config.data.batch_size) for name, idx in splits.items()}
    every = [g for gs in groups.values() for g in gs]
    sizes, n_graph = common_pad_sizes(every, basis), max(len(g) for g in every) + 1
    batches = {name: [collate(g, basis, n_graph=n_graph, sizes=sizes) for g in gs] for name, gs in groups.items()}
    return Dataset(basis, records, splits, batches, names, baseline_settings(records[0]) if use_baseline else None)


def _use_baseline(mode: str, records, names) -> bool:
    lacking = [n for n, r in zip(names, records) if BASELINE not in r.matrices]
    if mode == "h0" and lacking:
        raise ValueError(f"data.baseline = 'h0' but {len(lacking)} record(s) have no H0 ({BASELINE}.h5): "
                         f"{lacking[:10]}; add it with `elct data add-h0 DATASET`")
    return mode == "h0" or (mode == "auto" and not lacking and not records[0].structure.is_periodic)


def save_model_info(run_dir: Path, config: RunConfig, basis: OrbitalBasis, baseline: dict | None = None) -> None:
    """The run directory's model.json: what ``load_model`` needs besides the checkpoints."""
    write_model_info(run_dir, config.model, basis, config.data.cutoff_ang, baseline,
                     optim=config.train.optim.to_dict())  # the checkpointed optimizer state's structure


def with_start_model(config: RunConfig) -> tuple[RunConfig, TrainedModel | None]:
    """The model ``config.train.init_from`` names (a pretrained model, exported folder or run directory) and the
    config with that model's network and cutoff (a fine-tuned network keeps its architecture; a differing
    [model] table or cutoff is replaced, and said so). Without init_from: (config, None)."""
    if not config.train.init_from:
        return config, None
    start = load_model(config.train.init_from)
    if (config.model, config.data.cutoff_ang) != (start.config, start.cutoff_ang):
        print(f"fine-tuning {start.name}: its network config and cutoff ({start.cutoff_ang} A) replace the run's")
    return dataclasses.replace(config, model=start.config,
                               data=dataclasses.replace(config.data, cutoff_ang=start.cutoff_ang)), start


def fresh_model_config(config: RunConfig, basis: OrbitalBasis) -> ModelConfig:
    """The network a fresh run builds: ``config.model`` with its radial basis reaching the graph cutoff and its
    l_max no higher than the orbital basis needs (``ModelConfig.covering``; ``ModelConfig.fitted_to`` unless
    ``[train] fit_l_max`` is false); each change is said."""
    model = config.model.covering(config.data.cutoff_ang)
    if model != config.model:
        print(f"the radial basis ({config.model.radial.cutoff_ang} A) is extended to the graph cutoff "
              f"({config.data.cutoff_ang} A): longer bonds would all embed alike")
    fitted = model.fitted_to(basis.l_max) if config.train.fit_l_max else model
    if fitted != model:
        print(f"l_max {model.l_max} -> {fitted.l_max}: the most this basis's blocks need (highest orbital l "
              f"{basis.l_max}); higher features cost CPU without accuracy")
    return fitted


def network_config(config: RunConfig, basis: OrbitalBasis) -> tuple[RunConfig, TrainedModel | None]:
    """The run's config with the network :func:`train` builds on data in ``basis`` (the start model's for
    ``init_from``, :func:`with_start_model`; else a fresh one, :func:`fresh_model_config`) and the start model
    (None for a fresh network). Callers that evaluate during training (curves) build the same function from it."""
    config, start = with_start_model(config)
    if start is None:
        config = dataclasses.replace(config, model=fresh_model_config(config, basis))
    return config, start


def train(config: RunConfig, dataset: Dataset | None = None, key: jax.Array | None = None, callbacks=()):
    """Train (or fine-tune from ``config.train.init_from``: a pretrained model's name, an exported model or a run
    directory; its network, cutoff and basis are kept) and return (state, dataset, apply).
    ``callbacks`` are handed to :func:`elct_jax.train.loop.fit` (called after every epoch).

    A fresh network starts with its on-site biases fitted to the labelled training targets
    (``elct_jax.train.init.fit_onsite_bias``) and its heads scaled to the targets' spread (``[train] head_scale``,
    ``elct_jax.train.init.scale_heads``); JAX's compiled functions are then dropped (``jax.clear_caches``,
    ``loop.release_all_compiled``), so training starts from the memory of the imports and the data."""
    dataset = prepare_data(config) if dataset is None else dataset
    if config.train.weights.mae_orth and "overlap" not in dataset.batches["train"][0].targets:
        raise ValueError("[train.weights] mae_orth needs the records' overlap matrices (overlap.h5); this data has none")
    config, start = network_config(config, dataset.basis)
    init, apply = make_predict_fn(config.model, dataset.basis)
    if start is not None:
        if start.basis != dataset.basis:
            raise ValueError(f"the dataset's basis has elements {dataset.basis.elements}, {start.name} "
                             f"{start.basis.elements}: prepare the data with the start model's config")
        if start.baseline != dataset.baseline:
            raise ValueError(f"init_from {config.train.init_from} was trained with baseline {start.baseline} but this run's "
                             f"data give {dataset.baseline}: the network would learn another target; set [data] "
                             f"baseline to match (\"none\" or \"h0\")")
        params = start.params
    else:
        key = jax.random.PRNGKey(config.train.seed) if key is None else key
        params = init(key, dataset.batches["train"][0].graph)
        release_all_compiled(params)  # the init's per-operation executables
        if config.train.head_scale > 0 and config.model.spin == "none":  # fits the on-site biases too
            params = scale_heads(params, jax.jit(apply), dataset.batches["train"], dataset.basis,
                                 config.train.head_scale)
        else:
            params = fit_onsite_bias(params, jax.jit(apply), dataset.batches["train"], dataset.basis)
        release_all_compiled(params)  # and the forward pass's, before the train step compiles
    run_dir = Path(config.train.run_dir)
    save_model_info(run_dir, config, dataset.basis, dataset.baseline)
    state = fit(apply, params, dataset.batches["train"], dataset.batches["val"], config.train, callbacks=callbacks)
    return state, dataset, apply

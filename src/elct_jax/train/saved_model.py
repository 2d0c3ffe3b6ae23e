"""Trained models on disk: run directories, exported model folders and the pretrained models shipped in the package.

``load_model(source)`` accepts any of them:

* a pretrained model's name, e.g. ``"universal-mol-v1"`` (:data:`PRETRAINED`, files inside the package);
* an exported model folder: ``model.json`` + ``params.msgpack`` (flax msgpack of the parameters only, no
  pickle; a few MB), written by :func:`export_model`; model.json records the file's SHA-256, so a
  truncated or altered file is refused, and the parameter shapes are checked against the model config;
* a run directory of ``elct train``: ``model.json`` + orbax checkpoints (best, else latest).

model.json holds everything besides the parameters: the network config, the orbital basis, the cutoff,
the H0 baseline settings and, for exported models, a ``card`` (training data, level of theory,
accuracy). A structure with an element the model does not know is refused with the model's elements.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.config import ModelConfig, OptimConfig
from elct_jax.nn.model import make_predict_fn

MODEL_INFO, PARAMS_FILE = "model.json", "params.msgpack"
PRETRAINED = ("universal-mol-v1",)  # folders of elct_jax/pretrained_models


@dataclass
class TrainedModel:
    config: ModelConfig
    basis: OrbitalBasis
    cutoff_ang: float
    params: dict
    apply: Callable
    baseline: dict | None = None  # settings of H0, added to the network output (elct_jax.data.baseline)
    name: str = "model"           # where it came from, for messages
    card: dict | None = None      # an exported model's description (training data, accuracy)

    def check_elements(self, symbols: Sequence[str]) -> None:
        """Raise naming the elements of ``symbols`` this model has no basis (and no species) for."""
        unknown = sorted(set(symbols) - set(self.basis.elements))
        if unknown:
            raise ValueError(f"element(s) {unknown} unknown to {self.name}: it was trained on "
                             f"{', '.join(self.basis.elements)} ({self.basis.name})")

    def check_basis(self, data_basis: OrbitalBasis) -> None:
        """Raise unless every element of ``data_basis`` has the same shells here (fine-tuning data)."""
        self.check_elements(data_basis.elements)
        for el in data_basis.elements:
            if data_basis.name != self.basis.name or tuple(data_basis.shells[el]) != tuple(self.basis.shells[el]):
                raise ValueError(f"{self.name} and the data disagree on the basis of {el}: the model has "
                                 f"{self.basis.name} shells l={list(self.basis.shells[el])}, the data "
                                 f"{data_basis.name} shells l={list(data_basis.shells[el])}")


def write_model_info(run_dir: Path, config: ModelConfig, basis: OrbitalBasis, cutoff_ang: float,
                    baseline: dict | None = None, optim: dict | None = None, **extra) -> None:
    """Write ``run_dir/model.json``; ``optim`` is the OptimConfig (as a dict) of a run's checkpoints."""
    info = {"model": config.to_dict(), "basis": {"name": basis.name, "shells": basis.shells},
            "cutoff_ang": cutoff_ang, "baseline": baseline, **({"optim": optim} if optim is not None else {}), **extra}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MODEL_INFO).write_text(json.dumps(info, indent=1))


def _read_info(folder: Path) -> tuple[dict, ModelConfig, OrbitalBasis]:
    path = folder / MODEL_INFO
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is neither an elct run directory, an exported model "
                                f"nor one of the pretrained models {list(PRETRAINED)}")
    try:
        info = json.loads(path.read_text())
        model = ModelConfig.from_dict(info["model"])
        basis = OrbitalBasis(info["basis"]["name"], {k: tuple(v) for k, v in info["basis"]["shells"].items()})
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a valid model description ({type(err).__name__}: {err})") from err
    return info, model, basis


def _dummy_graph(basis: OrbitalBasis, cutoff_ang: float):
    from elct_jax.data.loader import species_index
    from elct_jax.geometry.graph import neighbor_graph
    from elct_jax.geometry.structure import Structure

    el = basis.elements[0]
    graph = neighbor_graph(Structure((el, el), [[0, 0, 0], [0, 0, 1.0]]), cutoff_ang, species_index(basis))
    return graph._replace(nodes={**graph.nodes, "magmom": np.zeros(2)})  # a collinear model's input; others ignore it


def pretrained_folder(name: str) -> Path:
    """The package folder of a pretrained model."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; available: {list(PRETRAINED)}")
    return Path(str(resources.files("elct_jax") / "pretrained_models" / name))


def load_model(source: str | Path, which: str = "best") -> TrainedModel:
    """A pretrained model's name, an exported model folder or a run directory (``which`` checkpoint:
    "best", falling back to "latest") -> :class:`TrainedModel`."""
    folder = pretrained_folder(str(source)) if str(source) in PRETRAINED else Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"model {str(source)!r} not found: neither a directory (an elct run directory or an "
                                f"exported model) nor one of the pretrained models {list(PRETRAINED)}")
    info, config, basis = _read_info(folder)
    init, apply = make_predict_fn(config, basis)
    cutoff = float(info["cutoff_ang"])
    if (folder / PARAMS_FILE).exists() or "params_sha256" in info:
        params = _read_params(folder, info, init, basis, cutoff)
    else:
        params = _restore_run(folder, info, init, basis, cutoff, which)
    return TrainedModel(config, basis, cutoff, params, apply, info.get("baseline"), name=str(source),
                        card=info.get("card"))


def _restore_run(run_dir: Path, info: dict, init, basis: OrbitalBasis, cutoff: float, which: str):
    from elct_jax.train.checkpoint import Checkpointer
    from elct_jax.train.optim import make_optimizer
    from elct_jax.train.step import init_state

    optim = OptimConfig.from_dict(info.get("optim", {}))  # run directories written before "optim": the default
    abstract = jax.eval_shape(lambda: init_state(init(jax.random.PRNGKey(0), _dummy_graph(basis, cutoff)),
                                                 make_optimizer(optim, 1)))
    checkpointer = Checkpointer(run_dir, ema=optim.ema_decay > 0)
    try:
        if which == "best" and checkpointer.best_step() is not None:
            return checkpointer.restore_best(abstract.params)
        state = checkpointer.restore(abstract)
    finally:
        checkpointer.close()
    return state.ema_params if optim.ema_decay > 0 else state.params  # what validation judged


def _read_params(folder: Path, info: dict, init, basis: OrbitalBasis, cutoff: float) -> dict:
    from flax import serialization

    path = folder / PARAMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (model.json names it)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info.get("params_sha256"):
        raise ValueError(f"{path}: SHA-256 differs from the one in {MODEL_INFO} (truncated or altered file; "
                         f"{len(data)} bytes)")
    abstract = jax.eval_shape(lambda: init(jax.random.PRNGKey(0), _dummy_graph(basis, cutoff)))
    try:
        state = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several types for corrupt input
        raise ValueError(f"{path}: not a flax msgpack parameter file ({err})") from err
    want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(abstract)}
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(state)}
    if set(want) != set(got):
        raise ValueError(f"{path} does not match the model config in {MODEL_INFO}: parameters missing "
                         f"{sorted(set(want) - set(got))[:5]}, unexpected {sorted(set(got) - set(want))[:5]}")
    for key, spec in want.items():
        if got[key].shape != spec.shape:
            raise ValueError(f"{path} does not match the model config in {MODEL_INFO}: {key} has shape "
                             f"{got[key].shape}, the model needs {spec.shape}")
    return jax.tree.map(lambda spec, x: np.asarray(x, spec.dtype), abstract, state)


def export_model(model: TrainedModel, out_dir: str | Path, card: dict | None = None) -> Path:
    """Write ``model`` as an exported folder (model.json with ``card``, params.msgpack). Returns it."""
    from flax import serialization

    out = Path(out_dir)
    data = serialization.to_bytes(jax.tree.map(np.asarray, model.params))
    write_model_info(out, model.config, model.basis, model.cutoff_ang, model.baseline,
                    params_sha256=hashlib.sha256(data).hexdigest(), card=card or {})
    (out / PARAMS_FILE).write_bytes(data)
    return out


def load_pretrained(name: str) -> TrainedModel:
    """A pretrained model shipped with the package, by name (:data:`PRETRAINED`)."""
    pretrained_folder(name)  # names the available models if ``name`` is not one
    return load_model(name)

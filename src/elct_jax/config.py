"""Configuration of a run: the TOML tree of ``elct train`` ([data], [model], [train], [train.weights],
[train.optim]) as nested frozen dataclasses, and the named presets of the ELCT network.

Every table is read by ``Cls.from_dict(table)`` (an unknown key raises naming it and its table) and written
by ``to_dict()``; ``load_run_config(path)`` reads a whole TOML file. ``model.json`` of a trained model holds
``ModelConfig.to_dict()`` and is read back by the same ``ModelConfig.from_dict``.

Presets
-------
``tiny``   CPU unit tests (seconds): l_max 4 (enough for d-d blocks), 8 channels, 1 block.
``small``  CPU training demos: l_max 4, 32 channels, 2 blocks.
``paper``  close to the DeepH-2 universal model (3 blocks, 80 features, Gaussian basis 0-9 A):
           21.4M parameters with a def2-SVP C/H/N/O head (the paper's model has 17.28M; here every
           SO(2) block carries both parities, so the weights per m are not the paper's).

Use ``preset("tiny", dtype="float64", l_max=6)`` to override fields; unknown names raise.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import jax.numpy as jnp

_DTYPES = ("float32", "float64", "bfloat16")
SPIN_KINDS = ("none", "collinear", "soc")  # ModelConfig.spin


def _check_keys(table: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown and where:
        raise ValueError(f"unknown key(s) {unknown} in [{where}]; allowed: {sorted(known)}")
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: {', '.join(sorted(known))}")


class _Table:
    """``from_dict``/``to_dict`` of a config dataclass; ``TABLE`` names it in errors ("" for the top level).
    A nested table (dict) becomes its field's dataclass, a list a tuple where the field is a tuple."""

    TABLE: ClassVar[str] = ""

    @classmethod
    def _converted(cls, table: dict) -> dict:
        hints = typing.get_type_hints(cls)
        out = {}
        for key, value in table.items():
            hint = hints[key]
            if isinstance(hint, type) and issubclass(hint, _Table) and isinstance(value, dict):
                value = hint.from_dict(value)
            elif typing.get_origin(hint) is tuple:
                value = tuple(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, table: dict):
        _check_keys(table, {f.name for f in dataclasses.fields(cls)}, cls.TABLE)
        return cls(**cls._converted(table))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RadialConfig(_Table):
    """Gaussian radial basis of |r_ij| (Angstrom) with ``n_basis`` centres evenly spaced on
    [0, cutoff_ang], widths equal to the spacing, and the MLP that embeds it together with the
    species of both atoms into ``hidden`` invariant edge features."""

    TABLE: ClassVar[str] = "model.radial"
    n_basis: int = 32
    cutoff_ang: float = 7.0
    hidden: int = 64

    def __post_init__(self):
        if self.n_basis < 2:
            raise ValueError(f"RadialConfig.n_basis must be >= 2, got {self.n_basis}")
        if not self.cutoff_ang > 0:
            raise ValueError(f"RadialConfig.cutoff_ang must be positive, got {self.cutoff_ang}")
        if self.hidden < 1:
            raise ValueError(f"RadialConfig.hidden must be >= 1, got {self.hidden}")


@dataclass(frozen=True)
class AttentionConfig(_Table):
    """Multi-head attention of the vertex update: ``heads`` heads (must divide the channel count),
    each scoring a neighbour from ``alpha_dim`` invariant edge-frame scalars."""

    TABLE: ClassVar[str] = "model.attention"
    heads: int = 4
    alpha_dim: int = 16

    def __post_init__(self):
        if self.heads < 1 or self.alpha_dim < 1:
            raise ValueError(f"AttentionConfig needs heads >= 1 and alpha_dim >= 1, got {self}")


@dataclass(frozen=True)
class ModelConfig(_Table):
    """The ELCT network.

    l_max       highest degree of the features (both parities for every l <= l_max); must be at
                least 2 * (highest l of the orbital basis) for the Wigner-Eckart head
    m_max       highest |m| kept in the edge frame (eSCN m-truncation); None means l_max. Edge
                features never acquire |m| > m_max about their own bond, so m_max below
                2 * (highest orbital l) restricts the edge blocks (e.g. delta-delta anisotropy)
    channels    channels per (l, parity)
    n_blocks    number of ELCT blocks
    ffn_channels hidden channels of the per-node/per-edge feed-forward parts
    species_dim size of the learned species embeddings
    avg_num_neighbors normalisation of the initial neighbour sum (order of the typical degree)
    edge_init_scale  multiplies the standard deviation of the edge head's initial weights, so the
                initial off-site blocks are ~edge_init_scale Hartree. 1 suits molecules; a crystal whose
                H(k) sums hundreds of neighbours per atom (metals, long cutoffs) starts with H(k) of
                ~100 Ha at 1, far from any physical H, and label-free training from there is slow:
                ~0.05 starts it near physical size (experiments/unsupervised_na.py)
    dtype       parameter and compute dtype
    spin        "none": spinless blocks [n, n_max, n_max]; "soc": spin-orbit spinor blocks [n, 2, 2, n_max, n_max]
                (complex, time-reversal symmetric; needs l_max >= 2 * (highest orbital l) + 1); "collinear":
                spin-up and spin-down blocks [n, 2, n_max, n_max] from the atoms' initial moments
                (``elct_jax.hamiltonian.spinor``)
    """

    TABLE: ClassVar[str] = "model"
    l_max: int = 4
    m_max: int | None = None
    channels: int = 32
    n_blocks: int = 2
    ffn_channels: int = 64
    species_dim: int = 16
    avg_num_neighbors: float = 12.0
    edge_init_scale: float = 1.0
    radial: RadialConfig = field(default_factory=RadialConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    dtype: str = "float32"
    spin: str = "none"

    def __post_init__(self):
        if self.spin not in SPIN_KINDS:
            raise ValueError(f"ModelConfig.spin must be one of {SPIN_KINDS}, got {self.spin!r}")
        if self.l_max < 0:
            raise ValueError(f"ModelConfig.l_max must be >= 0, got {self.l_max}")
        if self.m_max is not None and not 0 <= self.m_max <= self.l_max:
            raise ValueError(f"ModelConfig.m_max must be in [0, l_max={self.l_max}] or None, got {self.m_max}")
        for name in ("channels", "n_blocks", "ffn_channels", "species_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.channels % self.attention.heads:
            raise ValueError(
                f"ModelConfig.channels={self.channels} must be divisible by attention.heads={self.attention.heads}"
            )
        if not self.edge_init_scale > 0:
            raise ValueError(f"ModelConfig.edge_init_scale must be positive, got {self.edge_init_scale}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {_DTYPES}, got {self.dtype!r}")

    @classmethod
    def from_dict(cls, table: dict) -> "ModelConfig":
        """``{"preset": name (default "small"), **overrides}``: the [model] table of a run, or model.json's
        complete ``to_dict()``. A nested table ("radial", "attention") replaces the preset's one whole."""
        _check_keys(table, {f.name for f in dataclasses.fields(cls)} | {"preset"}, cls.TABLE)
        overrides = {k: v for k, v in table.items() if k != "preset"}
        return preset(table.get("preset", "small"), **cls._converted(overrides))

    def covering(self, cutoff_ang: float) -> "ModelConfig":
        """This config with a radial basis reaching the graph's ``cutoff_ang`` (Angstrom). The Gaussian
        centres stop at ``radial.cutoff_ang``; an edge more than ~3 widths beyond it embeds as ~0 (at 8 A on a
        6 A basis e^-55), so every longer bond would look the same to the network. Unchanged if it already does."""
        if self.radial.cutoff_ang >= cutoff_ang:
            return self
        return dataclasses.replace(self, radial=dataclasses.replace(self.radial, cutoff_ang=float(cutoff_ang)))

    def fitted_to(self, basis_l_max: int) -> "ModelConfig":
        """This config with ``l_max`` lowered to the least the head needs for a basis whose highest orbital l is
        ``basis_l_max``: 2 l (2 l + 1 with spin-orbit spinors); ``m_max`` no higher. Features above it cost CPU
        and did not buy accuracy: on 32-atom graphene cells (s/p basis) l_max 2 instead of the ``small`` preset's 4
        was ~3x cheaper per cell and 2.4x lower in test error at equal CPU (benchmarks/RESULTS.md). Unchanged if
        l_max is already that or lower (def2-SVP's d shells need the preset's 4)."""
        need = 2 * basis_l_max + (1 if self.spin == "soc" else 0)
        if self.l_max <= need:
            return self
        m_max = None if self.m_max is None else min(self.m_max, need)
        return dataclasses.replace(self, l_max=need, m_max=m_max)

    @property
    def m_trunc(self) -> int:
        """The effective m_max (``l_max`` when ``m_max`` is None)."""
        return self.l_max if self.m_max is None else self.m_max

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        l_max=4, channels=8, n_blocks=1, ffn_channels=8, species_dim=8,
        radial=RadialConfig(n_basis=16, cutoff_ang=5.0, hidden=16),
        attention=AttentionConfig(heads=2, alpha_dim=4),
    ),
    "small": ModelConfig(
        l_max=4, channels=32, n_blocks=2, ffn_channels=64, species_dim=16,
        radial=RadialConfig(n_basis=32, cutoff_ang=6.0, hidden=64),
        attention=AttentionConfig(heads=4, alpha_dim=16),
    ),
    "paper": ModelConfig(
        l_max=4, channels=80, n_blocks=3, ffn_channels=80, species_dim=32, avg_num_neighbors=40.0,
        radial=RadialConfig(n_basis=64, cutoff_ang=9.0, hidden=32),
        attention=AttentionConfig(heads=8, alpha_dim=16),
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset with top-level fields replaced, e.g. ``preset("tiny", dtype="float64")``.
    Nested fields take a whole sub-config: ``radial=RadialConfig(cutoff_ang=4.0)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} ([model] preset); available: {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"ModelConfig has no field(s) {unknown}; fields: {sorted(known)}")
    return dataclasses.replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class DataConfig(_Table):
    """Dataset of a run. ``split_file`` (a JSON file of folder names relative to ``path``, see
    ``elct_jax.data.dataset_dir.read_split_file``) fixes train/val/test; otherwise a seeded permutation is
    cut by the ``split`` fractions. Records outside the split file's lists are not read.
    ``batch_size`` is the mean number of structures per batch: structures of mixed sizes are packed to
    about equal padded sizes (``elct_jax.data.loader.pack_groups``).
    ``baseline``: "auto" learns H - H0 when every record of a molecular dataset carries H0
    (``elct_jax.data.baseline``), "h0" requires it (molecules or crystals; a crystal model of H - H0 cannot predict
    structures too large for one PySCF Fock build), "none" learns H itself."""

    TABLE: ClassVar[str] = "data"
    path: str = "data"
    cutoff_ang: float = 6.0
    batch_size: int = 4
    split_seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_file: str = ""
    baseline: str = "auto"

    def __post_init__(self):
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"data.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.baseline not in ("auto", "h0", "none"):
            raise ValueError(f"data.baseline must be 'auto', 'h0' or 'none', got {self.baseline!r}")
        if not (isinstance(self.cutoff_ang, (int, float)) and 0 < self.cutoff_ang < float("inf")):
            raise ValueError(f"data.cutoff_ang must be a positive number of Angstrom, got {self.cutoff_ang!r}")


@dataclass(frozen=True)
class LossWeights(_Table):
    """loss = mae * MAE + omega * Omega/N_e + sc * |H - T(H)| + mae_orth * MAE in the orthonormal basis
    + mae_onsite * MAE of the on-site blocks (each term in Hartree, see train.step)."""

    TABLE: ClassVar[str] = "train.weights"
    mae: float = 1.0       # Hamiltonian MAE (Hartree)
    omega: float = 0.0     # Mermin free energy per electron (Hartree)
    sc: float = 0.0        # self-consistency residual |H - T(H)| (Hartree)
    mae_orth: float = 0.0  # MAE of S^-1/2 (H - H_ref) S^-1/2, the error as orbital energies see it (Hartree)
    mae_onsite: float = 0.0  # MAE of the on-site blocks alone (a few % of the entries; they set the levels)

    def array(self) -> jnp.ndarray:
        """[5] [mae, omega, sc, mae_orth, mae_onsite]: the traced weights of the jitted step (the one place they are
        converted; new values never recompile it)."""
        return jnp.array([self.mae, self.omega, self.sc, self.mae_orth, self.mae_onsite])


@dataclass(frozen=True)
class OptimConfig(_Table):
    """Adam with global-norm clipping and a learning-rate schedule (``elct_jax.train.optim``).

    schedule  "plateau": the lr is multiplied by ``plateau_factor`` after ``plateau_patience`` epochs without
              improvement of the epoch-mean training loss, and training stops once it falls below
              ``min_learning_rate``; "exponential": decayed from ``learning_rate`` to ``final_learning_rate``
              over the run's epochs x steps per epoch (a fixed budget; the plateau fields are unused)
    restart_learning_rates  exponential schedule only: warm restarts. The budget is split into 1 + len(...)
              equal cycles; cycle 0 decays from ``learning_rate``, cycle c from ``restart_learning_rates[c - 1]``,
              each to ``final_learning_rate``, and Adam's moments start afresh at every cycle (the first
              cycle's large gradients otherwise stay in the second moment and stall label-free training,
              benchmarks/RESULTS.md "The same with B3LYP"). Empty: one cycle.
    """

    TABLE: ClassVar[str] = "train.optim"
    learning_rate: float = 1e-3
    plateau_factor: float = 0.5
    plateau_patience: int = 20      # epochs without improvement before the lr is multiplied by the factor
    min_learning_rate: float = 1e-6  # training stops once the lr falls below this
    clip_norm: float = 1.0           # global-norm gradient clipping; 0 disables
    ema_decay: float = 0.0           # 0 disables the parameter EMA; e.g. 0.999 keeps one
    schedule: str = "plateau"
    final_learning_rate: float = 1e-5  # the exponential schedule's last lr
    restart_learning_rates: tuple[float, ...] = ()
    adam_b2: float = 0.999            # Adam's second-moment decay (its memory: ~1 / (1 - b2) steps)

    def __post_init__(self):
        if self.schedule not in ("plateau", "exponential"):
            raise ValueError(f"train.optim.schedule must be 'plateau' or 'exponential', got {self.schedule!r}")
        if not (self.learning_rate > 0 and self.final_learning_rate > 0):
            raise ValueError(f"train.optim.learning_rate and final_learning_rate must be positive, got "
                             f"{self.learning_rate}, {self.final_learning_rate}")
        if not 0.0 < self.adam_b2 < 1.0:
            raise ValueError(f"train.optim.adam_b2 must be in (0, 1), got {self.adam_b2}")
        if self.restart_learning_rates and (self.schedule != "exponential" or min(self.restart_learning_rates) <= 0):
            raise ValueError(f"train.optim.restart_learning_rates {self.restart_learning_rates} needs the exponential "
                             f"schedule (got {self.schedule!r}) and positive learning rates")


@dataclass(frozen=True)
class TrainConfig(_Table):
    """How to train.

    run_dir                checkpoints, metrics.csv, TensorBoard logs (a run resumes from it); "" trains in
                           memory: no files, no resume
    init_from              fine-tune from: a pretrained model's name, an exported model or a run directory
    checkpoint_seconds     the latest state is saved (asynchronously, orbax) at most this often, and always
                           after the last epoch, a plateau stop or a callback's stop; the best state by
                           validation loss is kept in memory and written with it when it improved
    validate_every_epochs  validation loss every this many epochs (and after the last)
    sc_iterations          Roothaan-DIIS steps of the sc target T(H) (1: F[D(H)]; see train.losses)
    head_scale             r > 0: a fresh network's head weights are scaled so the initial blocks vary r times as
                           much as the labelled training targets (``train.init.scale_heads``; spinless models);
                           0: the heads' random initialisation (blocks of ~0.1-1 Ha whatever the data). 0.1 cut
                           the test error 7x on waters and 2x on graphene at equal CPU (benchmarks/RESULTS.md)
    fit_l_max              a fresh network's l_max is lowered to the least the orbital basis needs
                           (``ModelConfig.fitted_to``); false keeps [model]'s l_max
    """

    TABLE: ClassVar[str] = "train"
    run_dir: str = "runs/default"
    init_from: str = ""
    epochs: int = 100
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_seconds: float = 300.0
    validate_every_epochs: int = 5
    progress: bool = True
    sc_iterations: int = 1
    head_scale: float = 0.1
    fit_l_max: bool = True

    def __post_init__(self):
        if not self.head_scale >= 0:
            raise ValueError(f"train.head_scale must be >= 0 (0: off), got {self.head_scale!r}")
        if self.sc_iterations < 1:
            raise ValueError(f"train.sc_iterations must be >= 1, got {self.sc_iterations}")
        if self.validate_every_epochs < 1 or self.checkpoint_seconds < 0:
            raise ValueError(f"train.validate_every_epochs must be >= 1 and checkpoint_seconds >= 0, got "
                             f"{self.validate_every_epochs}, {self.checkpoint_seconds}")


@dataclass(frozen=True)
class RunConfig(_Table):
    """A whole run: the TOML file of ``elct train`` (example in ``elct_jax.train.run``)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, doc: dict) -> "RunConfig":
        """A run's TOML tree; a missing [model] table is the "small" preset (see ``ModelConfig.from_dict``)."""
        return super().from_dict({"model": {}, **doc})

    @property
    def label_free(self) -> bool:
        return self.train.weights.omega != 0 or self.train.weights.sc != 0


def load_run_config(path: str | Path) -> RunConfig:
    """A run's TOML file -> RunConfig; raises naming the file if it is missing or not TOML."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from err
    return RunConfig.from_dict(doc)

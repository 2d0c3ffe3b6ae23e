"""Configuration of the ELCT network: nested frozen dataclasses and named presets.

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
from dataclasses import dataclass, field

import jax.numpy as jnp

_DTYPES = ("float32", "float64", "bfloat16")


@dataclass(frozen=True)
class RadialConfig:
    """Gaussian radial basis of |r_ij| (Angstrom) with ``n_basis`` centres evenly spaced on
    [0, cutoff_ang], widths equal to the spacing, and the MLP that embeds it together with the
    species of both atoms into ``hidden`` invariant edge features."""

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
class AttentionConfig:
    """Multi-head attention of the vertex update: ``heads`` heads (must divide the channel count),
    each scoring a neighbour from ``alpha_dim`` invariant edge-frame scalars."""

    heads: int = 4
    alpha_dim: int = 16

    def __post_init__(self):
        if self.heads < 1 or self.alpha_dim < 1:
            raise ValueError(f"AttentionConfig needs heads >= 1 and alpha_dim >= 1, got {self}")


@dataclass(frozen=True)
class ModelConfig:
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
    """

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

    def __post_init__(self):
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
        raise KeyError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"ModelConfig has no field(s) {unknown}; fields: {sorted(known)}")
    return dataclasses.replace(PRESETS[name], **overrides)

"""Building blocks on lab-layout features ``[n, (L+1)**2, 2, C]`` (see :mod:`elct_jax.nn.so3`):
radial basis, invariant MLP, equivariant linear map, equivariant RMS norm, gate, feed-forward.

Every map here is O(3)-equivariant: weights act on channels only, shared over m, separately for
each (l, parity); biases and non-linearities act on 0e scalars; l > 0 irreps are only scaled by
invariant gates; 0o scalars go through an odd function (tanh).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from elct_jax.nn.so3 import lab_l_of_component


def gaussian_basis(distance: jnp.ndarray, n_basis: int, cutoff: float) -> jnp.ndarray:
    """[n, n_basis] Gaussians exp(-((d - mu_k) / w)^2 / 2), mu_k evenly on [0, cutoff], w the spacing."""
    centers = jnp.linspace(0.0, cutoff, n_basis, dtype=distance.dtype)
    width = cutoff / (n_basis - 1)
    return jnp.exp(-0.5 * ((distance[:, None] - centers) / width) ** 2)


class MLP(nn.Module):
    """Invariant MLP: Dense layers with SiLU between them (none after the last)."""

    features: Sequence[int]
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, f in enumerate(self.features):
            x = nn.Dense(f, param_dtype=self.param_dtype)(x)
            if i < len(self.features) - 1:
                x = nn.silu(x)
        return x


class EquivariantLinear(nn.Module):
    """Channel mixing per (l, parity), shared over m; bias on 0e. [n, K, 2, C_in] -> [n, K, 2, channels].

    ``l_of_component`` [K] gives the degree of each component (lab layout by default), so the same
    module works on frame-layout features.
    """

    channels: int
    l_of_component: tuple[int, ...] | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n_comp, c_in = x.shape[-3], x.shape[-1]
        l_of = _l_of(n_comp, self.l_of_component)
        w = self.param("weight", nn.initializers.normal(c_in**-0.5), (int(l_of.max()) + 1, 2, c_in, self.channels), self.param_dtype)
        b = self.param("bias", nn.initializers.zeros, (self.channels,), self.param_dtype)
        y = jnp.einsum("...kpc,kpcd->...kpd", x, w[l_of])
        return y.at[..., 0, 0, :].add(b)


class EquivariantRMSNorm(nn.Module):
    """Equivariant layer norm: the 0e channels are centred, then everything is divided by the RMS of
    the features (per-component mean square within each (l, parity, channel), averaged over them
    so that every degree weighs the same), and scaled per (l, parity, channel); bias on 0e."""

    eps: float = 1e-8
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n_comp, c = x.shape[-3], x.shape[-1]
        l_of = lab_l_of_component(int(round(np.sqrt(n_comp))) - 1)
        x = x.at[..., 0, 0, :].add(-jnp.mean(x[..., 0, 0, :], axis=-1, keepdims=True))
        dims = jnp.asarray(2 * l_of + 1, x.dtype)[:, None, None]
        mean_square = jnp.sum(x * x / dims, axis=(-3, -2, -1)) / (2 * c * (l_of.max() + 1))
        scale = self.param("scale", nn.initializers.ones, (int(l_of.max()) + 1, 2, c), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        y = x * jax.lax.rsqrt(mean_square + self.eps)[..., None, None, None] * scale[l_of]
        return y.at[..., 0, 0, :].add(bias)


def gate(x: jnp.ndarray, gates: jnp.ndarray, l_of_component: np.ndarray) -> jnp.ndarray:
    """Gated non-linearity. x [n, K, 2, C] (component 0 is l = 0), gates [n, L, 2, C] invariant
    pre-activations for l = 1..L: 0e -> silu, 0o -> tanh, l > 0 -> x * sigmoid(gate[l, p, c])."""
    scalars = jnp.stack([nn.silu(x[..., 0, 0, :]), jnp.tanh(x[..., 0, 1, :])], axis=-2)[..., None, :, :]
    if x.shape[-3] == 1:
        return scalars
    g = jax.nn.sigmoid(gates)[..., np.asarray(l_of_component[1:]) - 1, :, :]
    return jnp.concatenate([scalars, x[..., 1:, :, :] * g], axis=-3)


class EquivariantFFN(nn.Module):
    """Feed-forward part: linear to ``hidden`` channels, gate (gates from the 0e channels), linear back."""

    hidden: int
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n_comp, c = x.shape[-3], x.shape[-1]
        l_max = int(round(np.sqrt(n_comp))) - 1
        h = EquivariantLinear(self.hidden, param_dtype=self.param_dtype)(x)
        gates = nn.Dense(max(l_max, 1) * 2 * self.hidden, param_dtype=self.param_dtype)(x[..., 0, 0, :])
        gates = gates.reshape(*gates.shape[:-1], max(l_max, 1), 2, self.hidden)[..., :l_max, :, :]
        h = gate(h, gates, lab_l_of_component(l_max))
        return EquivariantLinear(c, param_dtype=self.param_dtype)(h)


def _l_of(n_comp: int, l_of_component) -> np.ndarray:
    if l_of_component is not None:
        l_of = np.asarray(l_of_component)
        if len(l_of) != n_comp:
            raise ValueError(f"l_of_component has {len(l_of)} entries for {n_comp} components")
        return l_of
    l_max = int(round(np.sqrt(n_comp))) - 1
    if (l_max + 1) ** 2 != n_comp:
        raise ValueError(f"{n_comp} components is not a lab layout (L+1)**2")
    return lab_l_of_component(l_max)

"""SO(2) convolution in the edge frame (eSCN / DeepH-2), equivariant under rotations AND inversion.

In an edge frame (edge along +y) the only symmetry left of a lab rotation is a rotation about y;
a rotation by t mixes, for every l >= m > 0, the pair (x_{-m}, x_{+m}) by angle m t and leaves
m = 0 alone. A linear map commuting with it mixes, for each m separately, the components of all
l >= |m| (and all channels): m = 0 with any real matrix, m > 0 with the paired structure
[[w1, -w2], [w2, w1]]. Cost O(L^3 C^2) per edge instead of O(L^6) for a tensor product.

Inversion. Inverting the structure maps r_ij -> -r_ij and a lab feature of parity p to p x. The
new frame rotation differs from the old one by a pi-rotation perpendicular to y (up to a rotation
about y), so in the frame inversion acts as a MIRROR through a plane containing the axis. For the
mirror x -> -x (e3nn coordinates) a component (l, p, m) picks up the sign eps * sign(m), with
sign(m) = +1 for m >= 0, -1 for m < 0 and eps = p (-1)^l (+1 for "natural" irreps 0e, 1o, 2e, ...,
-1 for 0o, 1e, 2o, ...). Commuting with the mirror forces
  m = 0:  no mixing between eps = +1 and eps = -1 components,
  m > 0:  w1 only between equal eps, w2 only between opposite eps.
Equivalently, with u = [x_{+m}(eps=+1), x_{-m}(eps=-1)] and v = [x_{-m}(eps=+1), -x_{+m}(eps=-1)],
a rotation acts on (u, v) like on (Re z, Im z) of a complex number z = u + i v and the mirror like
complex conjugation: the allowed maps are exactly y_u = u W, y_v = v W with ONE real matrix W per m.
That is what :class:`SO2Linear` implements (one gather in, matmuls per m, one gather out).

Radial modulation: each input row of every m-block is scaled by a learned function of the
invariant edge embedding (|r_ij| and the species pair), identically for u and v.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from elct_jax.nn.so3 import FrameLayout


@dataclass(frozen=True)
class SO2Tables:
    """Static gather tables of the SO(2) convolution for one frame layout.

    perm   [2K] flat index (component * 2 + parity) of each entry in group order
    sign   [2K] +-1 applied when gathering (and again when scattering back)
    groups tuple of (m, kind, n_rows): kind "even"/"odd" (m = 0, eps = +1 / -1) or "uv" (m > 0,
           stacked u and v, each with n_rows rows); rows are ordered as in ``perm``
    """

    perm: np.ndarray
    sign: np.ndarray
    groups: tuple[tuple[int, str, int], ...]

    @property
    def inverse(self) -> np.ndarray:
        return np.argsort(self.perm)


def eps_parity_index(l: int, eps: int) -> int:
    """Parity index (0: p = +1, 1: p = -1) of the component of degree l with mirror type eps."""
    p = eps * (-1) ** l
    return 0 if p == 1 else 1


@functools.lru_cache(maxsize=None)
def so2_tables(l_max: int, m_max: int) -> SO2Tables:
    layout = FrameLayout(l_max, m_max)
    entries: list[tuple[int, int, int]] = []  # (component, parity index, sign)
    groups = []
    ls = range(l_max + 1)
    for eps, kind in ((1, "even"), (-1, "odd")):
        entries += [(layout.index(l, 0), eps_parity_index(l, eps), 1) for l in ls]
        groups.append((0, kind, l_max + 1))
    for m in range(1, m_max + 1):
        lm = range(m, l_max + 1)
        u = [(layout.index(l, m), eps_parity_index(l, 1), 1) for l in lm]
        u += [(layout.index(l, -m), eps_parity_index(l, -1), 1) for l in lm]
        v = [(layout.index(l, -m), eps_parity_index(l, 1), 1) for l in lm]
        v += [(layout.index(l, m), eps_parity_index(l, -1), -1) for l in lm]
        entries += u + v
        groups.append((m, "uv", len(u)))
    perm = np.array([2 * c + p for c, p, _ in entries], dtype=np.int32)
    if sorted(perm.tolist()) != list(range(2 * layout.size)):
        raise AssertionError("SO(2) tables do not cover the frame layout exactly once")
    sign = np.array([s for _, _, s in entries], dtype=np.float64)
    return SO2Tables(perm=perm, sign=sign, groups=tuple(groups))


def to_groups(x: jnp.ndarray, tables: SO2Tables) -> list[jnp.ndarray]:
    """Frame-layout x [E, K, 2, C] -> per group: "even"/"odd" [E, rows, C], "uv" [2, E, rows, C]."""
    n_edge, k, _, c = x.shape
    flat = x.reshape(n_edge, 2 * k, c)[:, tables.perm] * jnp.asarray(tables.sign, x.dtype)[None, :, None]
    out, start = [], 0
    for _, kind, rows in tables.groups:
        if kind == "uv":
            out.append(jnp.stack([flat[:, start : start + rows], flat[:, start + rows : start + 2 * rows]]))
            start += 2 * rows
        else:
            out.append(flat[:, start : start + rows])
            start += rows
    return out


def from_groups(parts: list[jnp.ndarray], tables: SO2Tables) -> jnp.ndarray:
    """Inverse of :func:`to_groups`: per-group arrays -> frame layout [E, K, 2, C]."""
    flat = jnp.concatenate([jnp.concatenate([p[0], p[1]], axis=1) if p.ndim == 4 else p for p in parts], axis=1)
    flat = flat * jnp.asarray(tables.sign, flat.dtype)[None, :, None]
    n_edge, two_k, c = flat.shape
    return flat[:, tables.inverse].reshape(n_edge, two_k // 2, 2, c)


class SO2Linear(nn.Module):
    """Radially modulated SO(2)-and-mirror-equivariant linear map in the edge frame.

    __call__(x [E, K, 2, C_in] frame layout, radial [E, R] invariant edge embedding)
      -> (y [E, K, 2, channels] frame layout, extra [E, n_extra] invariant scalars)
    ``extra`` are additional m = 0, eps = +1 outputs (true invariants: gates, attention scores).
    The bias acts on the l = 0, p = +1 (0e) output only.
    """

    channels: int
    l_max: int
    m_max: int
    n_extra: int = 0
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, radial: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        tables = so2_tables(self.l_max, self.m_max)
        c_in, c_out = x.shape[-1], self.channels
        groups = to_groups(x, tables)
        n_gain = sum(rows for _, _, rows in tables.groups) * c_in
        gains = 1.0 + nn.Dense(n_gain, kernel_init=nn.initializers.zeros, name="radial_gain",
                               param_dtype=self.param_dtype)(radial)  # [E, n_gain]
        n_outs = [rows * c_out + (self.n_extra if kind == "even" else 0) for _, kind, rows in tables.groups]
        sizes = [rows * c_in * n for (_, _, rows), n in zip(tables.groups, n_outs)]
        # all m-blocks in one unit-normal vector (one RNG draw), scaled by 1/sqrt(fan_in) when used
        kernel = self.param("kernel", nn.initializers.normal(1.0), (sum(sizes),), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c_out + self.n_extra,), self.param_dtype)
        outs, start, offset, extra = [], 0, 0, None
        for (m, kind, rows), g, n_out, size in zip(tables.groups, groups, n_outs, sizes):
            gain = gains[:, start : start + rows * c_in].reshape(-1, rows, c_in)
            start += rows * c_in
            w = kernel[offset : offset + size].reshape(rows * c_in, n_out) / np.sqrt(rows * c_in)
            offset += size
            y = (g * gain).reshape(*g.shape[:-2], rows * c_in) @ w.astype(x.dtype)
            if kind == "even":  # bias on the 0e row and on the invariant extras only
                extra = y[:, rows * c_out :] + bias[c_out:]
                y = y[:, : rows * c_out].reshape(-1, rows, c_out)
                outs.append(jnp.concatenate([y[:, :1] + bias[:c_out], y[:, 1:]], axis=1))
            else:
                outs.append(y.reshape(*y.shape[:-1], rows, c_out))
        return from_groups(outs, tables), extra

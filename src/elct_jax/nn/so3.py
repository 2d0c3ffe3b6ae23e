"""Edge frames: Wigner-D matrices of the rotation taking each edge direction to e3nn's polar axis y,
and the rotation of feature arrays into and out of that frame.

All vectors here are in e3nn coordinates (a lab vector r enters as ``r[..., LAB_TO_E3NN]``).

Feature layouts (one concept, used by every module of the network)
------------------------------------------------------------------
lab layout    ``[n, (l_max+1)**2, 2, C]``: component ``l*l + (m + l)`` (e3nn order, m = -l..l),
              parity index 0 for p = +1 ("e"), 1 for p = -1 ("o"); both parities for every l.
frame layout  ``[n, K, 2, C]``: the same after rotation into an edge frame, keeping only
              |m| <= min(l, m_max) (eSCN m-truncation); K = sum_l (2 min(l, m_max) + 1).

Stability: the frame rotation is built with two smooth charts, Rodrigues' minimal rotation
r -> +y on the upper hemisphere and r -> -y followed by a fixed pi-rotation about z on the lower
one. Both are polynomial/rational in r with denominators >= 1, so D and its gradient are finite
everywhere, in particular for edges along or against the axis. The chart switch at the equator
changes the frame only by a rotation about y, to which the SO(2) convolution is equivariant, so
the network output is continuous there.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

_FLIP_Y = np.diag([-1.0, -1.0, 1.0])  # pi-rotation about z: maps -y to +y


@dataclass(frozen=True)
class FrameLayout:
    """Static component layout of edge-frame features for given (l_max, m_max)."""

    l_max: int
    m_max: int

    @property
    def m_of_l(self) -> tuple[int, ...]:
        """Largest |m| kept for each l."""
        return tuple(min(l, self.m_max) for l in range(self.l_max + 1))

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each l in the frame layout (l_max + 2 entries; the last one is K)."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum([2 * m + 1 for m in self.m_of_l])]))

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def index(self, l: int, m: int) -> int:
        """Position of component (l, m) in the frame layout; |m| <= min(l, m_max)."""
        ml = self.m_of_l[l]
        if abs(m) > ml:
            raise ValueError(f"component (l={l}, m={m}) is truncated (m_max={self.m_max})")
        return self.offsets[l] + ml + m

    def l_of_component(self) -> np.ndarray:
        """[K] degree l of each frame component."""
        return np.repeat(np.arange(self.l_max + 1), [2 * m + 1 for m in self.m_of_l])


def lab_l_of_component(l_max: int) -> np.ndarray:
    """[(l_max+1)**2] degree l of each lab-layout component."""
    return np.repeat(np.arange(l_max + 1), 2 * np.arange(l_max + 1) + 1)


def safe_unit(r: jnp.ndarray) -> jnp.ndarray:
    """[..., 3] r / |r|, with the y axis for r = 0 (padding edges), finite gradients everywhere else."""
    r2 = jnp.sum(r * r, axis=-1, keepdims=True)
    y = jnp.asarray([0.0, 1.0, 0.0], dtype=r.dtype)
    safe = jnp.where(r2 > 0, r, y)
    return safe / jnp.sqrt(jnp.sum(safe * safe, axis=-1, keepdims=True))


def edge_frame_matrix(r: jnp.ndarray) -> jnp.ndarray:
    """[..., 3, 3] rotation Q (e3nn coordinates) with ``Q @ r / |r| = e_y``; identity-like for r = 0."""
    a = safe_unit(r)
    s = jnp.where(a[..., 1] >= 0, 1.0, -1.0).astype(a.dtype)  # chart: target +y or -y
    zero = jnp.zeros_like(s)
    # v = a x (s e_y) = s (-a_z, 0, a_x);  c = a . (s e_y) = |a_y| >= 0
    vx, vz, c = -s * a[..., 2], s * a[..., 0], s * a[..., 1]
    skew = jnp.stack(
        [jnp.stack([zero, -vz, zero], -1), jnp.stack([vz, zero, -vx], -1), jnp.stack([zero, vx, zero], -1)], -2
    )
    rodrigues = jnp.eye(3, dtype=a.dtype) + skew + (skew @ skew) / (1.0 + c)[..., None, None]
    flip = jnp.where((s < 0)[..., None, None], jnp.asarray(_FLIP_Y, a.dtype), jnp.eye(3, dtype=a.dtype))
    return flip @ rodrigues


@functools.lru_cache(maxsize=None)
def _projection_points(l_max: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Fixed unit points X [n_points, 3] (Fibonacci sphere) and, per l, pinv(Y_l(X)) [2l+1, n_points],
    computed in float64 whatever the global JAX precision."""
    n = 2 * (2 * l_max + 1) + 2
    k = np.arange(n) + 0.5
    y = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + 5.0**0.5) * k
    rho = np.sqrt(1.0 - y * y)
    points = np.stack([rho * np.sin(phi), y, rho * np.cos(phi)], axis=-1)
    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        sh = np.asarray(_sh(jnp.asarray(points, dtype=jnp.float64), l_max), dtype=np.float64)
    blocks = [sh[:, l * l : (l + 1) ** 2] for l in range(l_max + 1)]
    worst = max(np.linalg.cond(b) for b in blocks)
    if worst > 1e3:
        raise RuntimeError(f"ill-conditioned projection points for l_max={l_max} (cond {worst:.3g})")
    return points, tuple(np.linalg.pinv(b) for b in blocks)


def _sh(points: jnp.ndarray, l_max: int) -> jnp.ndarray:
    """[..., (l_max+1)**2] e3nn real spherical harmonics of points [..., 3], unnormalised input
    (polynomial, so exact and smooth for the unit vectors used here)."""
    irreps = e3nn.Irreps.spherical_harmonics(l_max)
    return e3nn.spherical_harmonics(irreps, points, normalize=False).array


def wigner_d(q: jnp.ndarray, l_max: int, m_max: int | None = None) -> tuple[jnp.ndarray, ...]:
    """Real Wigner-D matrices of rotations ``q`` [..., 3, 3] (e3nn coordinates), for l = 0..l_max.

    Returns per l an array [..., 2 min(l, m_max) + 1, 2l + 1]: the rows |m| <= m_max of D^l(q),
    so that ``D^l(q) @ x_l`` is the l-part of a feature rotated by q. D is obtained from the
    polynomial identity Y_l(q x) = D^l(q) Y_l(x) on fixed points x (exact, differentiable).
    """
    m_max = l_max if m_max is None else m_max
    points, pinvs = _projection_points(l_max)
    rotated = jnp.einsum("...ij,nj->...ni", q, jnp.asarray(points, q.dtype))  # [..., n_points, 3]
    sh = _sh(rotated, l_max)  # [..., n_points, (l_max+1)**2]
    out = []
    for l in range(l_max + 1):
        ml = min(l, m_max)
        y_l = sh[..., l * l + l - ml : l * l + l + ml + 1]  # [..., n_points, 2ml+1]
        out.append(jnp.einsum("...nk,jn->...kj", y_l, jnp.asarray(pinvs[l], q.dtype)))
    return tuple(out)


def edge_wigner_d(r: jnp.ndarray, l_max: int, m_max: int | None = None) -> tuple[jnp.ndarray, ...]:
    """Wigner-D (rows |m| <= m_max) of the frame rotation of each edge vector r [n_edges, 3]
    (e3nn coordinates): per l, [n_edges, 2 min(l, m_max) + 1, 2l + 1]."""
    return wigner_d(edge_frame_matrix(r), l_max, m_max)


def to_frame(x: jnp.ndarray, wigner: tuple[jnp.ndarray, ...]) -> jnp.ndarray:
    """Rotate lab-layout features x [n_edges, (L+1)**2, 2, C] into the edge frames:
    frame layout [n_edges, K, 2, C]."""
    parts = []
    for l, d in enumerate(wigner):
        parts.append(jnp.einsum("eij,ejpc->eipc", d.astype(x.dtype), x[:, l * l : (l + 1) ** 2]))
    return jnp.concatenate(parts, axis=1)


def from_frame(y: jnp.ndarray, wigner: tuple[jnp.ndarray, ...]) -> jnp.ndarray:
    """Rotate frame-layout features y [n_edges, K, 2, C] back to the lab: [n_edges, (L+1)**2, 2, C]
    (the truncated |m| > m_max components are zero in the frame)."""
    parts, start = [], 0
    for d in wigner:
        rows = d.shape[-2]
        parts.append(jnp.einsum("eij,eipc->ejpc", d.astype(y.dtype), y[:, start : start + rows]))
        start += rows
    return jnp.concatenate(parts, axis=1)

"""The ELCT block: edge update and multi-head attention vertex update, both computed in edge frames.

For every edge i -> j (sender i, receiver j) the normalised features v_i, v_j and e_ij are rotated
into the edge frame and concatenated; an SO(2) convolution, a gate and a second SO(2) convolution
(all modulated by the invariant edge embedding) give, in one pass,
  * the edge update (rotated back and added to e_ij),
  * the value of the message to atom j (rotated back), and
  * invariant attention scores (m = 0, eps = +1 outputs of the first convolution).
Atom j sums the values of its incoming edges weighted by a softmax over those edges, per head.
Feed-forward parts with residuals follow for atoms and edges. Padding edges (``edge_mask`` False)
get zero attention weight and never enter a real atom's softmax normalisation or sum, wherever they
point.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from elct_jax.config import ModelConfig
from elct_jax.nn.layers import EquivariantFFN, EquivariantLinear, EquivariantRMSNorm, gate
from elct_jax.nn.so2 import SO2Linear
from elct_jax.nn.so3 import FrameLayout, from_frame, to_frame


class FrameMessage(nn.Module):
    """SO(2) conv -> gate -> SO(2) conv in the edge frame.

    __call__(x [E, K, 2, C_in] frame layout, radial [E, R]) ->
      (y [E, K, 2, channels] frame layout, extra [E, n_extra] invariants from the first conv)
    """

    hidden: int
    channels: int
    l_max: int
    m_max: int
    n_extra: int = 0
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, radial: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        layout = FrameLayout(self.l_max, self.m_max)
        n_gates = self.l_max * 2 * self.hidden
        kw = dict(l_max=self.l_max, m_max=self.m_max, param_dtype=self.param_dtype)
        h, extra = SO2Linear(self.hidden, n_extra=n_gates + self.n_extra, name="conv1", **kw)(x, radial)
        gates = extra[:, :n_gates].reshape(-1, self.l_max, 2, self.hidden)
        h = gate(h, gates, layout.l_of_component())
        y, _ = SO2Linear(self.channels, name="conv2", **kw)(h, radial)
        return y, extra[:, n_gates:]


class ELCTBlock(nn.Module):
    """One equivariant local-coordinate transformer block.

    __call__(v [N, (L+1)**2, 2, C], e [E, (L+1)**2, 2, C], wigner (per-l edge-frame D), radial [E, R],
             senders [E], receivers [E], edge_mask [E] bool) -> (v, e) updated, same shapes.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, v, e, wigner, radial, senders, receivers, edge_mask):
        cfg = self.config
        c, heads, dt = cfg.channels, cfg.attention.heads, cfg.jnp_dtype
        vn = EquivariantRMSNorm(param_dtype=dt, name="norm_v")(v)
        en = EquivariantRMSNorm(param_dtype=dt, name="norm_e")(e)
        x = jnp.concatenate([to_frame(vn[senders], wigner), to_frame(vn[receivers], wigner), to_frame(en, wigner)], -1)
        y, scores = FrameMessage(
            hidden=c, channels=2 * c, l_max=cfg.l_max, m_max=cfg.m_trunc,
            n_extra=heads * cfg.attention.alpha_dim, param_dtype=dt, name="message",
        )(x, radial)
        y = from_frame(y, wigner)  # [E, (L+1)**2, 2, 2C]: edge update | message values
        e = e + y[..., :c]
        v = v + self._attend(y[..., c:], scores, receivers, edge_mask, v.shape[0])
        v = v + EquivariantFFN(cfg.ffn_channels, param_dtype=dt, name="ffn_v")(
            EquivariantRMSNorm(param_dtype=dt, name="norm_ffn_v")(v))
        e = e + EquivariantFFN(cfg.ffn_channels, param_dtype=dt, name="ffn_e")(
            EquivariantRMSNorm(param_dtype=dt, name="norm_ffn_e")(e))
        return v, e

    def _attend(self, values, scores, receivers, edge_mask, n_node):
        """Softmax over each atom's incoming edges, per head; values [E, (L+1)**2, 2, C] -> [N, ...]."""
        cfg = self.config
        heads, alpha_dim = cfg.attention.heads, cfg.attention.alpha_dim
        s = jax.nn.leaky_relu(scores.reshape(-1, heads, alpha_dim), 0.2)
        a = self.param("score_vector", nn.initializers.normal(alpha_dim**-0.5), (heads, alpha_dim), cfg.jnp_dtype)
        logits = jnp.einsum("eha,ha->eh", s, a)
        logits = jnp.where(edge_mask[:, None], logits, 0.5 * jnp.finfo(logits.dtype).min)
        alpha = jraph.segment_softmax(logits, receivers, n_node) * edge_mask[:, None]  # [E, heads]
        n_edge, n_comp, _, c = values.shape
        weighted = values.reshape(n_edge, n_comp, 2, heads, c // heads) * alpha[:, None, None, :, None]
        summed = jax.ops.segment_sum(weighted.reshape(values.shape), receivers, n_node)
        return EquivariantLinear(cfg.channels, param_dtype=cfg.jnp_dtype, name="attention_out")(summed)

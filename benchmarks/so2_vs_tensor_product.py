"""One ELCT message layer (edge-frame SO(2) convolutions) against a DeepH-E3-style tensor-product
convolution (e3nn-jax), forward + backward, for several L, same graph and same feature irreps.

Both layers map node features C x (0e + 0o + 1o + 1e + ... + L) to the same irreps and sum the
messages of each atom's neighbours:
  ELCT  rotate (v_i, v_j) into the edge frame (Wigner-D, included in the timing), SO(2) conv ->
        gate -> SO(2) conv (radially modulated), rotate back, sum.            O(L^3) per edge
  TP    v_j (x) Y(r_ij) with every path l1 (x) l2 -> l3 <= L ("uvu", DeepH-E3 / NequIP style),
        per-edge radial weight per path and channel, e3nn Linear to the output irreps, sum.
                                                                              O(L^6) per edge
Run:  OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
      python benchmarks/so2_vs_tensor_product.py --ls 2 4 6 8 --channels 8
Prints one line per L (ms per forward+backward, ratio) and the fitted exponents t ~ L^a.
"""
from __future__ import annotations

import argparse
import platform
import time

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from elct_jax.nn.attention import FrameMessage
from elct_jax.nn.layers import MLP, gaussian_basis
from elct_jax.nn.so3 import edge_wigner_d, from_frame, to_frame


def cluster(n_side: int, spacing: float, cutoff: float, seed: int = 0):
    """A jittered simple-cubic cluster of n_side**3 atoms; all pairs closer than cutoff (both directions)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    pos = grid + rng.uniform(-0.15, 0.15, grid.shape) * spacing
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    senders, receivers = np.nonzero((dist < cutoff) & (dist > 0))
    return pos, senders.astype(np.int32), receivers.astype(np.int32)


def feature_irreps(l_max: int, channels: int) -> e3nn.Irreps:
    return e3nn.Irreps([(channels, (l, p)) for l in range(l_max + 1) for p in (1, -1)])


class ELCTMessageLayer(nn.Module):
    l_max: int
    channels: int

    @nn.compact
    def __call__(self, v, r, radial, senders, receivers):
        wigner = edge_wigner_d(r, self.l_max)
        x = jnp.concatenate([to_frame(v[senders], wigner), to_frame(v[receivers], wigner)], axis=-1)
        y, _ = FrameMessage(self.channels, self.channels, self.l_max, self.l_max)(x, radial)
        return jax.ops.segment_sum(from_frame(y, wigner), receivers, v.shape[0])


class TensorProductLayer(nn.Module):
    l_max: int
    channels: int

    @nn.compact
    def __call__(self, v, r, radial, senders, receivers):
        irreps = feature_irreps(self.l_max, self.channels)
        sh = e3nn.spherical_harmonics(e3nn.Irreps.spherical_harmonics(self.l_max), r, normalize=True)
        tp = e3nn.tensor_product(v[senders], sh, filter_ir_out=irreps)
        weights = nn.Dense(tp.irreps.num_irreps)(radial)  # one radial weight per path and channel
        index = np.concatenate([np.full(ir.dim, k) for k, (mul, ir) in enumerate(_expand(tp.irreps))])
        tp = e3nn.IrrepsArray(tp.irreps, tp.array * weights[:, index])
        out = e3nn.flax.Linear(irreps)(tp)
        return jax.ops.segment_sum(out.array, receivers, v.shape[0])


def _expand(irreps: e3nn.Irreps):
    return [(1, ir) for mul, ir in irreps for _ in range(mul)]


def lab_features(rng, n, l_max, channels):
    """Random node features in both layouts: ELCT [n, (L+1)^2, 2, C], e3nn IrrepsArray."""
    x = rng.normal(size=(n, (l_max + 1) ** 2, 2, channels))
    chunks = [x[:, l * l : (l + 1) ** 2, p, :].transpose(0, 2, 1).reshape(n, -1) for l in range(l_max + 1) for p in (0, 1)]
    return jnp.asarray(x), e3nn.IrrepsArray(feature_irreps(l_max, channels), jnp.asarray(np.concatenate(chunks, 1)))


def time_layer(layer, v, r, radial, senders, receivers, repeats, budget_s=20.0):
    """(first-call seconds incl. compilation, median ms) of value_and_grad w.r.t. parameters and node features; at most
    ``repeats`` timed runs and fewer when one run is long (about ``budget_s`` in all, at least one)."""
    params = layer.init(jax.random.PRNGKey(0), v, r, radial, senders, receivers)

    def loss(p, v):
        out = layer.apply(p, v, r, radial, senders, receivers)
        return jnp.sum(jnp.square(out.array if isinstance(out, e3nn.IrrepsArray) else out))

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, v))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, v))
    times = [time.perf_counter() - t0]
    for _ in range(min(repeats, int(budget_s / times[0])) - 1):
        t0 = time.perf_counter()
        jax.block_until_ready(step(params, v))
        times.append(time.perf_counter() - t0)
    return compile_s, 1e3 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ls", type=int, nargs="+", default=[2, 4, 6, 8])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--side", type=int, default=4, help="cluster of side**3 atoms")
    parser.add_argument("--cutoff", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    pos, senders, receivers = cluster(args.side, 2.0, args.cutoff)
    r_lab = pos[receivers] - pos[senders]
    r = jnp.asarray(r_lab[:, [1, 2, 0]], jnp.float32)
    radial = MLP((16,)).apply(MLP((16,)).init(jax.random.PRNGKey(1), jnp.zeros((1, 8))),
                              gaussian_basis(jnp.linalg.norm(r, axis=-1), 8, args.cutoff))
    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"float32, {len(pos)} atoms, {len(senders)} edges, C = {args.channels} per (l, parity)")
    print(f"{'L':>2} {'ELCT ms':>9} {'TP ms':>10} {'TP/ELCT':>8} {'1st call ELCT s':>16} {'1st call TP s':>14}")
    rows = []
    rng = np.random.default_rng(0)
    for l_max in args.ls:
        v_elct, v_tp = lab_features(rng, len(pos), l_max, args.channels)
        v_elct, v_tp = v_elct.astype(jnp.float32), v_tp.astype(jnp.float32)
        graph = (r, radial, jnp.asarray(senders), jnp.asarray(receivers))
        c_e, t_e = time_layer(ELCTMessageLayer(l_max, args.channels), v_elct, *graph, args.repeats)
        c_t, t_t = time_layer(TensorProductLayer(l_max, args.channels), v_tp, *graph, args.repeats)
        rows.append((l_max, t_e, t_t))
        print(f"{l_max:>2} {t_e:>9.2f} {t_t:>10.2f} {t_t / t_e:>8.1f} {c_e:>16.1f} {c_t:>14.1f}", flush=True)
    ls = np.log([row[0] for row in rows])
    slope_e = np.polyfit(ls, np.log([row[1] for row in rows]), 1)[0]
    slope_t = np.polyfit(ls, np.log([row[2] for row in rows]), 1)[0]
    print(f"fitted exponent t ~ L^a: ELCT a = {slope_e:.2f}, TP a = {slope_t:.2f}")


if __name__ == "__main__":
    main()

"""ELCT: the DeepH-2 network. Structure graph -> Hamiltonian blocks (internal orbital order, Hartree).

  graph (elct_jax.geometry.graph convention) -> edge vectors r_ij (e3nn coordinates), edge-frame Wigner-D
  -> invariant edge embedding (Gaussian basis of |r_ij|, species of i and j)
  -> equivariant embedding: the edge embedding fills every m = 0 (eps = +1) component in the edge
     frame and is rotated back; atoms get their species embedding (0e) plus the sum over their edges
  -> n_blocks x ELCTBlock (edge update + attention vertex update, in edge frames)
  -> Wigner-Eckart heads: on-site blocks from atoms (weights per species, symmetrised), edge blocks
     from edges (weights per species pair, H_ji(-R) = H_ij(R)^T enforced through ``reverse``).
     ``config.spin`` "soc" adds two l1 x l2 x 1e heads (B of H = A x 1 + i B.sigma, antisymmetrised) and
     returns spinor blocks (``elct_jax.hamiltonian.spinor``); "collinear" adds the atoms' initial moments to
     their scalar embedding and two spinless heads for the spin part H_s, and ``make_predict_fn`` returns
     H_up, H_down = H_c +- H_s made exactly even/odd under reversing all moments (two passes, m and -m).
     A spinless model's parameters and output do not depend on the option.

Output (see ``elct_jax.hamiltonian.blocks``): onsite [n_node, n_max, n_max], edge_blocks [n_edge, n_max, n_max]
(spin "soc": [n, 2, 2, n_max, n_max] complex; "collinear": [n, 2, n_max, n_max] up and down from
``make_predict_fn``);
the species' orbitals occupy the leading rows/columns, zeros elsewhere and on padding edges.
Padding edges are recognised by r_ij = 0 (a real edge never has it) and masked out of every softmax
and sum, so they cannot change real outputs even when they point at a real atom. Padding nodes
(jraph.pad_with_graphs) get finite, meaningless on-site blocks; mask them with ``elct_jax.geometry.graph.node_mask``. Computation runs in ``config.dtype``.
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from elct_jax.nn.attention import ELCTBlock
from elct_jax.geometry.basis import LAB_TO_E3NN, OrbitalBasis
from elct_jax.config import ModelConfig
from elct_jax.hamiltonian.blocks import max_orbitals, symmetrize_edges, symmetrize_onsite
from elct_jax.hamiltonian.spinor import (antisymmetrize_edges, antisymmetrize_onsite, collinear_blocks_from_parts,
                                         spinor_blocks)
from elct_jax.nn.head import WignerEckartHead
from elct_jax.nn.layers import MLP, EquivariantRMSNorm, gaussian_basis
from elct_jax.nn.so2 import eps_parity_index
from elct_jax.nn.so3 import FrameLayout, edge_wigner_d, from_frame


class ELCT(nn.Module):
    """``ELCT(config, basis)(graph) -> (onsite, edge_blocks)``; species index = position in basis.elements."""

    config: ModelConfig
    basis: OrbitalBasis

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> tuple[jnp.ndarray, jnp.ndarray]:
        cfg, dt = self.config, self.config.jnp_dtype
        elements = self.basis.elements
        shells = tuple(tuple(self.basis.shells[el]) for el in elements)
        n_sp, n_max = len(elements), max_orbitals(self.basis)
        species = jnp.asarray(graph.nodes["species"], jnp.int32)
        senders, receivers = jnp.asarray(graph.senders), jnp.asarray(graph.receivers)
        geo = jnp.promote_types(dt, jnp.float32)  # geometry and Wigner-D in at least float32
        pos = jnp.asarray(graph.nodes["positions"], geo)
        r = (pos[receivers] + jnp.asarray(graph.edges["shift"], geo) - pos[senders])[:, LAB_TO_E3NN]
        d2 = jnp.sum(r * r, axis=-1)
        real_edge = d2 > 0  # padding edges (jraph.pad_with_graphs or any other scheme) have r = 0
        dist = jnp.sqrt(jnp.where(real_edge, d2, 1.0))
        wigner = edge_wigner_d(r, cfg.l_max, cfg.m_trunc)

        emb = lambda name: nn.Embed(n_sp, cfg.species_dim, param_dtype=dt, name=name)
        edge_scalars = jnp.concatenate(
            [gaussian_basis(dist, cfg.radial.n_basis, cfg.radial.cutoff_ang).astype(dt),
             emb("species_sender")(species[senders]), emb("species_receiver")(species[receivers])], axis=-1)
        radial = nn.silu(MLP((cfg.radial.hidden, cfg.radial.hidden), param_dtype=dt, name="radial")(edge_scalars))

        e = self._embed_edges(radial, wigner)
        v = jnp.zeros((species.shape[0],) + e.shape[1:], dt)
        v = v.at[:, 0, 0, :].set(nn.Embed(n_sp, cfg.channels, param_dtype=dt, name="species_node")(species))
        if cfg.spin == "collinear":
            v = v.at[:, 0, 0, :].add(nn.Dense(cfg.channels, use_bias=False, param_dtype=dt, name="moment_embedding")(
                _moments(graph)[:, None].astype(dt)))
        e = e * real_edge[:, None, None, None]
        v = v + jax.ops.segment_sum(e, receivers, species.shape[0]) / cfg.avg_num_neighbors

        for b in range(cfg.n_blocks):
            v, e = ELCTBlock(cfg, name=f"block{b}")(v, e, wigner, radial, senders, receivers, real_edge)
        v = EquivariantRMSNorm(param_dtype=dt, name="norm_out_v")(v)
        e = EquivariantRMSNorm(param_dtype=dt, name="norm_out_e")(e)

        onsite = WignerEckartHead(shells, shells, n_max, param_dtype=dt, name="onsite_head")(v, species)
        pair_rows = tuple(shells[a] for a in range(n_sp) for _ in range(n_sp))
        pair_cols = tuple(shells[b] for _ in range(n_sp) for b in range(n_sp))
        pair = species[senders] * n_sp + species[receivers]
        edge_blocks = WignerEckartHead(pair_rows, pair_cols, n_max, param_dtype=dt, init_scale=cfg.edge_init_scale,
                                       name="edge_head")(e, pair)
        edge_blocks = symmetrize_edges(edge_blocks, jnp.asarray(graph.edges["reverse"]))
        onsite, edge_blocks = symmetrize_onsite(onsite), edge_blocks * real_edge[:, None, None]
        if cfg.spin == "none":
            return onsite, edge_blocks
        return self._spin_blocks(v, e, (shells, pair_rows, pair_cols), species, pair, graph.edges["reverse"],
                                 real_edge, onsite, edge_blocks)

    def _spin_blocks(self, v, e, shells, species, pair, reverse, real_edge, onsite, edge_blocks):
        """Spin "soc": spinor blocks [n, 2, 2, n_max, n_max] A x 1 + i B.sigma (A: the spinless blocks, B: the
        l1 x l2 x 1e heads, antisymmetrised). Spin "collinear": the (charge, spin) parts [n, 2, n_max, n_max],
        charge the spinless blocks and spin from two more spinless heads (``make_predict_fn`` turns them into
        up and down blocks)."""
        cfg, dt, n_max = self.config, self.config.jnp_dtype, onsite.shape[-1]
        (node_shells, pair_rows, pair_cols), reverse = shells, jnp.asarray(reverse)
        rank, kind = (1, "soc") if cfg.spin == "soc" else (0, "spin")
        s_on = WignerEckartHead(node_shells, node_shells, n_max, param_dtype=dt, spin_rank=rank,
                                name=f"onsite_{kind}_head")(v, species)
        s_ed = WignerEckartHead(pair_rows, pair_cols, n_max, param_dtype=dt, init_scale=cfg.edge_init_scale,
                                spin_rank=rank, name=f"edge_{kind}_head")(e, pair)
        if cfg.spin == "soc":
            s_ed = antisymmetrize_edges(s_ed, reverse) * real_edge[:, None, None, None]
            return spinor_blocks(onsite, antisymmetrize_onsite(s_on)), spinor_blocks(edge_blocks, s_ed)
        s_ed = symmetrize_edges(s_ed, reverse) * real_edge[:, None, None]
        return jnp.stack([onsite, symmetrize_onsite(s_on)], axis=1), jnp.stack([edge_blocks, s_ed], axis=1)

    def _embed_edges(self, radial: jnp.ndarray, wigner) -> jnp.ndarray:
        """Invariant edge embedding into every (l, m = 0, eps = +1) frame component, rotated back:
        [n_edges, (L+1)**2, 2, C] lab layout."""
        cfg = self.config
        layout = FrameLayout(cfg.l_max, cfg.m_trunc)
        h = nn.Dense((cfg.l_max + 1) * cfg.channels, param_dtype=cfg.jnp_dtype, name="edge_embedding")(radial)
        comp = [layout.index(l, 0) for l in range(cfg.l_max + 1)]
        par = [eps_parity_index(l, 1) for l in range(cfg.l_max + 1)]
        frame = jnp.zeros((radial.shape[0], layout.size, 2, cfg.channels), radial.dtype)
        frame = frame.at[:, jnp.asarray(comp), jnp.asarray(par)].set(h.reshape(-1, cfg.l_max + 1, cfg.channels))
        return from_frame(frame, wigner)


@functools.lru_cache(maxsize=None)
def make_predict_fn(
    config: ModelConfig, basis: OrbitalBasis
) -> tuple[Callable[[jax.Array, jraph.GraphsTuple], dict], Callable[[dict, jraph.GraphsTuple], tuple]]:
    """Pure functions ``init(key, graph) -> params`` and ``apply(params, graph) -> (onsite, edge_blocks)``.
    Cached per (config, basis): every caller gets the same functions, so jitted steps and predictions
    that take ``apply`` as a static argument compile once."""
    model = ELCT(config, basis)

    def init(key: jax.Array, graph: jraph.GraphsTuple) -> dict:
        """The parameters ``model.init`` gives (bitwise), without its forward pass on ``graph``: ``lazy_init``
        runs only the operations the parameters need (eagerly, ~1/3 of the memory of per-operation executables)."""
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), graph)
        return model.lazy_init(key, shapes)["params"]

    def apply(params: dict, graph: jraph.GraphsTuple) -> tuple[jnp.ndarray, jnp.ndarray]:
        return model.apply({"params": params}, graph)

    def apply_collinear(params: dict, graph: jraph.GraphsTuple) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(up, down) blocks [n, 2, n_max, n_max], exactly swapped when every initial moment is reversed."""
        def at(sign):
            return apply(params, graph._replace(nodes={**graph.nodes, "magmom": sign * _moments(graph)}))

        (on, ed) = jax.vmap(at)(jnp.array([1.0, -1.0], _moments(graph).dtype))
        return collinear_blocks_from_parts(on[0], on[1]), collinear_blocks_from_parts(ed[0], ed[1])

    return init, apply_collinear if config.spin == "collinear" else apply


def _moments(graph: jraph.GraphsTuple) -> jnp.ndarray:
    """[n_node] initial moments (Bohr magnetons along z) of a collinear model's graph; raises if it has none."""
    if "magmom" not in graph.nodes:
        raise ValueError("a collinear-spin model needs the atoms' initial moments as graph.nodes['magmom'] "
                         "(make_example(..., spin='collinear') adds them from the record)")
    return jnp.asarray(graph.nodes["magmom"])


def count_parameters(params) -> int:
    """Total number of scalar parameters."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))

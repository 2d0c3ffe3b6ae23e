"""Data-informed initialisation: start the network at the mean on-site blocks of the training data.

On-site blocks hold the largest entries of H (core levels of tens of Hartree); only their invariant
(L = 0) parts may carry a constant, and the on-site head has one bias per species for exactly those.
Setting them by least squares to the mean residual of the training targets removes the offsets the
network would otherwise spend thousands of steps learning. Equivariance is untouched (L = 0 only).

Then (:func:`scale_heads`; ``[train] head_scale``, 0.1 by default) the two heads' random weights are rescaled
so that the initial blocks vary ``ratio`` times as much as the targets do: a random network's blocks are
~0.1-1 Hartree whatever the data, and targets such as H - H0 vary by micro-Hartree to milli-Hartree.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.hamiltonian.blocks import max_orbitals, symmetrize_onsite
from elct_jax.hamiltonian.spinor import spin_independent
from elct_jax.nn.head import WignerEckartHead


def _bias_map(basis: OrbitalBasis, bias_shape, dtype) -> np.ndarray:
    """[n_species, n_bias, n_max * n_max]: the on-site block each unit bias produces (features zero)."""
    shells = tuple(tuple(basis.shells[el]) for el in basis.elements)
    n_sp, n_max = len(shells), max_orbitals(basis)
    head = WignerEckartHead(shells, shells, n_max, param_dtype=dtype)
    n_bias = bias_shape[-1]

    def block(species: int, bias_row):
        bias = jnp.zeros(bias_shape, dtype).at[species].set(jnp.asarray(bias_row, dtype))
        weight = jnp.zeros((n_sp, 1, _n_cols(head, n_sp, n_max, dtype)), dtype)
        out = head.apply({"params": {"weight": weight, "bias_0e": bias}},
                         jnp.zeros((1, (2 * basis.l_max + 1) ** 2, 2, 1), dtype), jnp.array([species]))
        out = symmetrize_onsite(out)  # as the model does
        return out.reshape(-1)

    eye = np.eye(n_bias)
    return np.stack([np.stack([np.asarray(block(s, eye[k])) for k in range(n_bias)]) for s in range(n_sp)])


def _n_cols(head, n_sp, n_max, dtype) -> int:
    from elct_jax.nn.head import head_tables

    return sum(t for _, _, t in head_tables(head.rows, head.cols, n_max).irreps)


def fit_onsite_bias(params: dict, apply_fn: Callable, batches: Sequence, basis: OrbitalBasis) -> dict:
    """Return ``params`` with ``onsite_head.bias_0e`` set so that the mean on-site residual of the labelled
    atoms in ``batches`` vanishes in the least-squares sense (per species). Unlabelled data: unchanged.
    Spinful models: the residual of the spin-independent part (``hamiltonian.spinor.spin_independent``)."""
    bias = params["onsite_head"]["bias_0e"]
    n_sp, n_max = len(basis.elements), max_orbitals(basis)
    sums = np.zeros((n_sp, n_max * n_max))
    counts = np.zeros((n_sp, n_max * n_max))
    for batch in batches:
        if "hamiltonian" not in batch.targets:
            continue
        onsite, _ = apply_fn(params, batch.graph)
        target, mask = batch.targets["hamiltonian"][0], np.asarray(batch.target_masks["hamiltonian"][0])
        mask = mask.reshape(len(mask), -1, n_max, n_max)[:, 0]  # the same for every spin quadrant
        residual = (np.asarray(spin_independent(target)) - np.asarray(spin_independent(onsite))) * mask
        species = np.asarray(batch.graph.nodes["species"])
        for s in range(n_sp):
            sel = species == s
            sums[s] += residual[sel].reshape(-1, n_max * n_max).sum(0)
            counts[s] += np.asarray(mask[sel]).reshape(-1, n_max * n_max).sum(0)
    if not counts.any():
        return params
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)  # [n_sp, n_max^2]
    unit = _bias_map(basis, bias.shape, bias.dtype)                   # [n_sp, n_bias, n_max^2]
    new = np.array(bias)
    for s in range(n_sp):
        w = counts[s] > 0
        delta, *_ = np.linalg.lstsq(unit[s][:, w].T, mean[s][w], rcond=None)
        new[s] += delta
    return jax.tree.map(lambda x: x, {**params, "onsite_head": {**params["onsite_head"],
                                                                "bias_0e": jnp.asarray(new, bias.dtype)}})


def scale_heads(params: dict, apply_fn: Callable, batches: Sequence, basis: OrbitalBasis, ratio: float) -> dict:
    """Return ``params`` with ``onsite_head.weight`` and ``edge_head.weight`` multiplied so that the RMS of the
    initial blocks around their per-species mean (on-site) and around zero (off-site) is ``ratio`` times that of
    the labelled training targets of ``batches`` (the blocks are linear in these weights), and the on-site
    biases fitted again (:func:`fit_onsite_bias`). Spinless models (the spin heads keep their initialisation);
    unlabelled data: unchanged."""
    spread = np.zeros((2, 2))  # [on-site, off-site] x [output, target] sums of squares
    count = np.zeros(2)
    for batch in batches:
        if "hamiltonian" not in batch.targets:
            continue
        out = apply_fn(params, batch.graph)
        species = np.asarray(batch.graph.nodes["species"])
        for part in (0, 1):
            mask = np.asarray(batch.target_masks["hamiltonian"][part], bool)
            pair = [np.asarray(out[part]), np.asarray(batch.targets["hamiltonian"][part])]
            if pair[0].shape != pair[1].shape:
                raise ValueError(f"scale_heads takes spinless models: blocks {pair[0].shape}, targets {pair[1].shape}")
            if part == 0:  # around each species' mean block: the biases carry the mean
                pair = [_species_centred(x, species, mask) for x in pair]
            spread[part] += [np.sum(np.where(mask, x, 0.0) ** 2) for x in pair]
            count[part] += mask.sum()
    if not count.all():
        return params
    rms = np.sqrt(spread / count[:, None])
    factor = np.where(rms[:, 0] > 0, ratio * rms[:, 1] / np.maximum(rms[:, 0], 1e-300), 1.0)
    scaled = {**params}
    for part, name in enumerate(("onsite_head", "edge_head")):
        scaled[name] = {**params[name], "weight": params[name]["weight"] * jnp.asarray(factor[part],
                                                                                       params[name]["weight"].dtype)}
    return fit_onsite_bias(scaled, apply_fn, batches, basis)


def _species_centred(blocks: np.ndarray, species: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[n, n_max, n_max] blocks minus the masked mean block of their atom's species."""
    out = np.array(blocks, dtype=np.float64)
    for s in np.unique(species):
        sel = species == s
        m = mask[sel]
        out[sel] -= np.sum(np.where(m, out[sel], 0.0), 0) / np.maximum(m.sum(0), 1)
    return out

"""Hamiltonians of new structures from a trained model.

``predict_blocks(model, structure)`` returns the real-space blocks {(R1, R2, R3, i, j): H_ij(R)}
(internal order, Hartree) for every pair within the model's cutoff, or for a molecule the dense
[n_ao, n_ao] matrix in PySCF order. Graphs are padded to bucket sizes so structures of similar size
share one compilation.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np

from elct_jax.data.baseline import baseline_blocks
from elct_jax.data.loader import species_index
from elct_jax.graph import neighbor_graph, pad_to_bucket
from elct_jax.hamiltonian import block_layout, blocks_from_dict, blocks_to_dense, blocks_to_dict
from elct_jax.structure import Structure


@functools.partial(jax.jit, static_argnums=0)
def apply_model(apply: Callable, params, graph):
    return apply(params, graph)


def predict_blocks(model, structure: Structure, dense: bool = False):
    """Predicted H of ``structure`` by ``model`` (an ``elct_jax.saved_model.TrainedModel``).

    dense=False: dict (R1, R2, R3, i, j) -> n_i x n_j block, internal order, Hartree.
    dense=True (molecules only): [n_ao, n_ao] float64 in PySCF AO order.
    """
    model.check_elements(structure.symbols)
    graph = neighbor_graph(structure, model.cutoff_ang, species_index(model.basis))
    padded = pad_to_bucket(graph)
    onsite, edges = (np.array(x, dtype=np.float64) for x in apply_model(model.apply, model.params, padded))
    if model.baseline is not None:  # the network learned H - H0
        h0 = baseline_blocks(structure, model.basis, model.baseline)
        b_on, b_ed, _ = blocks_from_dict(h0, model.basis, structure.symbols, graph)
        onsite[: len(b_on)] += b_on
        edges[: len(b_ed)] += b_ed
    if not dense:
        return blocks_to_dict(onsite, edges, model.basis, structure.symbols, graph)
    if structure.is_periodic:
        raise ValueError("a dense matrix is defined for molecules; use the real-space blocks for crystals")
    layout = block_layout(model.basis, structure.symbols, padded)
    n_ao = int(model.basis.ao_offsets(structure.symbols)[-1])
    return np.asarray(blocks_to_dense(onsite, edges, layout, order="pyscf"))[:n_ao, :n_ao]

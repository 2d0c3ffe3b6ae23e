"""Hamiltonians of new structures from a trained model.

``predict_blocks(model, structure)`` returns the real-space blocks {(R1, R2, R3, i, j): H_ij(R)}
(internal order, Hartree) for every pair within the model's cutoff, or for a molecule the dense
[n_ao, n_ao] matrix in PySCF order. Spinful models give spinful blocks [2 n_i, 2 n_j] (spin outer,
``elct_jax.data.spinful``): collinear [[up, 0], [0, down]] real, spin-orbit complex; a collinear model needs the
atoms' initial moments (``magmom``). Graphs are padded to bucket sizes so structures of similar size share one
compilation.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np

from elct_jax.data.baseline import baseline_blocks
from elct_jax.data.deeph_dock import DeepHRecord, atom_orbital_counts
from elct_jax.data.loader import species_index
from elct_jax.geometry.graph import neighbor_graph, pad_to_bucket
from elct_jax.data.spinful import quadrants, spin_blocks_to_dict, spinful_dict_to_dense
from elct_jax.hamiltonian.blocks import block_layout, blocks_from_dict, blocks_to_dense, blocks_to_dict, dict_to_dense
from elct_jax.geometry.structure import Structure


@functools.partial(jax.jit, static_argnums=0)
def apply_model(apply: Callable, params, graph):
    return apply(params, graph)


def predict_blocks(model, structure: Structure, dense: bool = False, magmom=None, h0: dict | None = None):
    """Predicted H of ``structure`` by ``model`` (an ``elct_jax.train.saved_model.TrainedModel``).

    dense=False: dict (R1, R2, R3, i, j) -> n_i x n_j block, internal order, Hartree ([2 n_i, 2 n_j] spinful
    blocks for a spinful model).
    dense=True (molecules only): [n_ao, n_ao] float64 in PySCF AO order; collinear models [2, n_ao, n_ao]
    (up, down), spin-orbit models the spin-outer [2 n_ao, 2 n_ao] complex matrix.
    magmom: [n_atoms] initial moments (Bohr magnetons along z) of a collinear model's input
    (``spinful.molecule_moments`` for a molecule of spin 2S); required by it, refused by the others.
    h0: the structure's H0 blocks (internal order, Hartree; e.g. a record's ``hamiltonian_0``) for a model that
    learned H - H0, instead of one PySCF Fock build here.
    """
    model.check_elements(structure.symbols)
    graph = with_moments(model, neighbor_graph(structure, model.cutoff_ang, species_index(model.basis)), magmom)
    padded = pad_to_bucket(graph)
    onsite, edges = (np.array(x, dtype=np.result_type(x.dtype, np.float64))
                     for x in apply_model(model.apply, model.params, padded))
    if model.config.spin != "none":
        blocks = spin_blocks_to_dict(onsite, edges, model.basis, structure.symbols, graph)
        return model_dense(blocks, model, structure) if dense else blocks
    if model.baseline is not None:  # the network learned H - H0
        h0 = baseline_blocks(structure, model.basis, model.baseline) if h0 is None else h0
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


def with_moments(model, graph, magmom):
    """``graph`` (of one structure, not padded) with a collinear model's input ``magmom`` [n_atoms] (Bohr magnetons)
    as ``nodes["magmom"]``; moments are required by a collinear model and refused by the others."""
    if (model.config.spin == "collinear") != (magmom is not None):
        raise ValueError(f"{model.name} (spin = {model.config.spin!r}) "
                         + ("needs the atoms' initial moments (magmom; e.g. elct predict --spin 2S or --magmom)"
                            if magmom is None else "takes no initial moments (magmom is for collinear models)"))
    if magmom is None:
        return graph
    moments = np.asarray(magmom, dtype=np.float64)
    if moments.shape != (int(graph.n_node[0]),):
        raise ValueError(f"{len(moments.reshape(-1))} initial moments for {int(graph.n_node[0])} atoms: give one per atom")
    return graph._replace(nodes={**graph.nodes, "magmom": moments})


def model_dense(blocks, model, structure: Structure) -> np.ndarray:
    """Dense PySCF-order matrix of a molecule's blocks in the model's spin kind (its prediction or the labels):
    [n_ao, n_ao] for a spinless model, [2, n_ao, n_ao] (up, down) for a collinear one (real), the spin-outer
    [2 n_ao, 2 n_ao] complex matrix for a spin-orbit one."""
    if structure.is_periodic:
        raise ValueError("a dense matrix is defined for molecules; use the real-space blocks for crystals")
    if model.config.spin == "none":
        return dict_to_dense(blocks, model.basis, structure.symbols)
    if model.config.spin == "soc":
        return spinful_dict_to_dense(blocks, model.basis, structure.symbols)
    return np.stack([dict_to_dense({k: quadrants(b)[q] for k, b in blocks.items()}, model.basis, structure.symbols)
                     for q in (0, 3)])


def electron_count(model, structure: Structure, xc: str = "lda", pseudo: str | None = None) -> int:
    """Electrons of ``structure`` as the model's labels count them: all electrons (less the charge of the
    model's level of theory, when it records one) for a molecule; per cell with the GTH pseudopotential of
    ``xc`` (or ``pseudo``) for a crystal (``ai2dft.pyscf_bridge.overlap.valence_electrons``)."""
    from ai2dft.pyscf_bridge.overlap import valence_electrons

    if structure.is_periodic:
        return valence_electrons(structure.symbols, model.basis.name, xc, pseudo)
    charge = int((model.baseline or {}).get("charge", 0))
    return valence_electrons(structure.symbols, model.basis.name, pseudo="none") - charge


def prediction_record(model, structure: Structure, n_electrons: int | None = None, magmom=None) -> DeepHRecord:
    """The predicted H of ``structure`` with S(R) on the same atom pairs from PySCF integrals of the model's
    basis and the electron count (``n_electrons``, default :func:`electron_count`): written with
    ``write_deeph_dock`` it is a folder DeepH-dock and ``elct bands --folder`` read directly. A spinful model's
    record is spinful (collinear: also its initial moments ``magmom``, stored as the record's ``dft["magmom"]``)."""
    from elct_jax.hamiltonian.sparse import SparseBlocks, overlap_like

    blocks = predict_blocks(model, structure, magmom=magmom)
    n_orb = atom_orbital_counts(model.basis, structure.symbols)
    spinless = blocks if model.config.spin == "none" else {k: np.real(quadrants(b)[0]) for k, b in blocks.items()}
    overlap = overlap_like(SparseBlocks.from_dict(spinless, n_orb), structure, model.basis).to_dict()
    dft = {"n_electrons": electron_count(model, structure) if n_electrons is None else int(n_electrons)}
    if magmom is not None:
        dft["magmom"] = np.asarray(magmom, dtype=np.float64).tolist()  # checked by predict_blocks
    return DeepHRecord(structure, model.basis, {"hamiltonian": blocks, "overlap": overlap}, dft=dft,
                       spinful=model.config.spin != "none")

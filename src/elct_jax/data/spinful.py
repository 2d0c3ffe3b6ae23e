"""Spinful (two-component) blocks as the DeepH formats store them, and the project's collinear-spin convention.

A spinful matrix couples spin-orbitals. DeepH-dock (compute/eigen/hamiltonian.py, its converters), DeepH-pack
(preprocess/openmx_get_data.jl) and DeepH-E3 (data.py) all store the block of atom pair (R, i, j) as one
[2 n_i, 2 n_j] array with spin OUTER and orbitals inner::

    [[M_ij(up, up),   M_ij(up, down)],
     [M_ij(down, up), M_ij(down, down)]]      each quadrant [n_i, n_j], in the format's orbital order

complex128 with spin-orbit coupling (in HDF5 the compound (r, i) that h5py reads as complex). Spinful are the
Hamiltonian and the density matrix (:data:`SPIN_MATRICES`); the overlap stays spinless, [n_i, n_j] and real
(the spin-orbital overlap is S x 1_2: deepx-dock builds [[S, 0], [0, S]] when it reads one). A dense matrix of
a structure has the same spin-outer layout over all orbitals, [[M_uu, M_ud], [M_du, M_dd]] of [n_ao, n_ao]
each: deepx-dock's AOMatrixObj and PySCF's GHF/GKS spin-orbital basis.

Collinear spin: DeepH-pack's OpenMX converter refuses it ("Collinear spin is not supported currently"); deepx-dock
writes it as a spinful folder whose up-down quadrants are zero and whose entries are real float64 (its PySCF hook
for UKS/KUKS, its ABACUS converter for nspin = 2). The project uses the same convention: a collinear record is
a spinful record with M_ud = M_du = 0 and real blocks (:func:`collinear_blocks`); :func:`spin_treatment` tells
it from a non-collinear (spin-orbit) one.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.hamiltonian.blocks import BlockKey, blocks_from_dict, blocks_to_dict, dense_to_dict, dict_to_dense

SPIN_MATRICES = ("hamiltonian", "density_matrix", "hamiltonian_0")  # spinful in a spinful record; overlap never
Blocks = Mapping[BlockKey, np.ndarray]


def spin_factor(name: str, spinful: bool) -> int:
    """2 when matrix ``name`` of a (``spinful``) record has [2 n_i, 2 n_j] blocks, else 1."""
    return 2 if spinful and name in SPIN_MATRICES else 1


def quadrants(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uu, ud, du, dd), each [n_i, n_j], of a spinful [2 n_i, 2 n_j] block."""
    a, b = block.shape[0] // 2, block.shape[1] // 2
    return block[:a, :b], block[:a, b:], block[a:, :b], block[a:, b:]


def map_quadrants(blocks: Blocks, fn: Callable[[dict], dict]) -> dict[BlockKey, np.ndarray]:
    """Apply ``fn`` (a map of spinless block dicts, e.g. an orbital reordering) to each spin quadrant."""
    return _stacked([fn({key: quadrants(block)[q] for key, block in blocks.items()}) for q in range(4)])


def _stacked(parts: Sequence[Blocks]) -> dict[BlockKey, np.ndarray]:
    """Spinful blocks from the four quadrant dicts (uu, ud, du, dd) of one set of keys."""
    return {key: np.block([[parts[0][key], parts[1][key]], [parts[2][key], parts[3][key]]]) for key in parts[0]}


def collinear_blocks(up: Blocks, down: Blocks) -> dict[BlockKey, np.ndarray]:
    """Spinful blocks [[up, 0], [0, down]] of a collinear matrix (deepx-dock's convention); same keys in both."""
    if set(up) != set(down):
        raise ValueError(f"spin-up and spin-down matrices have different blocks ({len(up)} and {len(down)})")
    return {key: np.block([[up[key], np.zeros_like(up[key])], [np.zeros_like(down[key]), down[key]]]) for key in up}


def spin_treatment(spinful: bool, blocks: Blocks) -> str:
    """"none" (spinless), "collinear" (real blocks, zero up-down quadrants) or "noncollinear" (the rest)."""
    if not spinful:
        return "none"
    for block in blocks.values():
        _, ud, du, _ = quadrants(np.asarray(block))
        if np.iscomplexobj(block) or np.any(ud != 0) or np.any(du != 0):
            return "noncollinear"
    return "collinear"


SPIN_PARTS = {"none": ("",), "collinear": ("up", "down"), "noncollinear": ("uu", "ud", "du", "dd")}  # by treatment
_PART_QUADRANTS = {"collinear": (0, 3), "noncollinear": (0, 1, 2, 3)}


def spin_parts(blocks: Blocks, treatment: str) -> list[dict[BlockKey, np.ndarray]]:
    """The spin parts of ``blocks`` of :func:`spin_treatment` ``treatment``, one {key: [n_i, n_j]} per
    :data:`SPIN_PARTS` name: the blocks as they are (spinless), the up-up and down-down quadrants (collinear), the
    four quadrants uu, ud, du, dd (non-collinear)."""
    if treatment == "none":
        return [dict(blocks)]
    return [{key: quadrants(np.asarray(b))[q] for key, b in blocks.items()} for q in _PART_QUADRANTS[treatment]]


def spinful_dense_to_dict(dense: np.ndarray, basis: OrbitalBasis, symbols: Sequence[str],
                          order: str = "pyscf") -> dict[BlockKey, np.ndarray]:
    """Spinful blocks (0, 0, 0, i, j) [2 n_i, 2 n_j], internal order, of a molecule's dense spin-outer
    [2 n_ao, 2 n_ao] matrix (PySCF's GKS spin-orbital layout) whose orbitals follow ``order``."""
    n = dense.shape[0] // 2
    return _stacked([dense_to_dict(dense[s * n:(s + 1) * n, t * n:(t + 1) * n], basis, symbols, order)
                     for s in (0, 1) for t in (0, 1)])


def spinful_dict_to_dense(blocks: Blocks, basis: OrbitalBasis, symbols: Sequence[str], order: str = "pyscf") -> np.ndarray:
    """Inverse of :func:`spinful_dense_to_dict`: the dense spin-outer [2 n_ao, 2 n_ao] matrix in ``order``."""
    parts = [dict_to_dense({key: quadrants(np.asarray(b))[q] for key, b in blocks.items()}, basis, symbols, order)
             for q in range(4)]
    return np.block([[parts[0], parts[1]], [parts[2], parts[3]]])


SPIN_OF_MODEL = {"none": "none", "collinear": "collinear", "soc": "noncollinear"}  # ModelConfig.spin -> spin_treatment
_DATA = {"none": "spinless data, blocks [n_i, n_j]",
         "collinear": "collinear spin, spinful blocks [2 n_i, 2 n_j] with zero up-down quadrants",
         "noncollinear": "non-collinear (spin-orbit) spin, complex spinful blocks [2 n_i, 2 n_j]"}


def check_spin(records: Sequence, names: Sequence[str], spin: str) -> None:
    """Raise naming the records (``DeepHRecord``) whose :func:`spin_treatment` is not the one a network with
    ``ModelConfig.spin`` = ``spin`` learns: spinless data for "none", collinear for "collinear", non-collinear
    (spin-orbit) for "soc"."""
    want = SPIN_OF_MODEL[spin]
    kinds = [spin_treatment(r.spinful, r.matrices.get("hamiltonian", {})) for r in records]
    odd = [(n, k) for n, k in zip(names, kinds) if k != want]
    if odd:
        name, kind = odd[0]
        model_spin = {v: k for k, v in SPIN_OF_MODEL.items()}[kind]
        raise ValueError(f"{len(odd)} record(s) do not hold the data a model with spin = {spin!r} learns "
                         f"({_DATA[want]}): {[n for n, _ in odd][:10]}; e.g. {name}: {_DATA[kind]}; "
                         f"such data need [model] spin = {model_spin!r}")


def padded_spin_blocks(blocks: Blocks, basis: OrbitalBasis, symbols: Sequence[str], graph,
                       spin: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spinful blocks {key: [2 n_i, 2 n_j]} (internal order) on ``graph`` in the network's layout
    (``elct_jax.hamiltonian.spinor``): ``spin`` "soc": onsite [n_node, 2, 2, n_max, n_max] and edges
    [n_edge, 2, 2, n_max, n_max] complex; "collinear": [n, 2, n_max, n_max] real (the uu and dd quadrants).
    Also found [n_edge] as ``blocks_from_dict`` gives it."""
    shape = {"soc": (2, 2), "collinear": (2,)}[spin]
    onsite, edges = [], []
    for q in ((0, 1, 2, 3) if spin == "soc" else (0, 3)):
        part = {key: quadrants(np.asarray(block))[q] for key, block in blocks.items()}
        on, ed, found = blocks_from_dict({k: b.real for k, b in part.items()}, basis, symbols, graph)
        if spin == "soc":
            on_im, ed_im, _ = blocks_from_dict({k: b.imag for k, b in part.items()}, basis, symbols, graph)
            on, ed = on + 1j * on_im, ed + 1j * ed_im
        onsite.append(on)
        edges.append(ed)
    stacked = [np.stack(x, axis=1).reshape((len(x[0]),) + shape + x[0].shape[1:]) for x in (onsite, edges)]
    return stacked[0], stacked[1], found


def spin_blocks_to_dict(onsite, edges, basis: OrbitalBasis, symbols: Sequence[str], graph) -> dict[BlockKey, np.ndarray]:
    """Inverse of :func:`padded_spin_blocks`: spinful blocks {key: [2 n_i, 2 n_j]} (internal order) of the network's
    spin layout, collinear onsite [n_node, 2, n_max, n_max] (real, zero up-down quadrants) or spin-orbit
    [n_node, 2, 2, n_max, n_max] (complex); edges alike."""
    onsite, edges = np.asarray(onsite), np.asarray(edges)
    if onsite.ndim == 4:  # collinear (up, down)
        return collinear_blocks(*(blocks_to_dict(onsite[:, s], edges[:, s], basis, symbols, graph) for s in (0, 1)))
    return _stacked([blocks_to_dict(onsite[:, s, t], edges[:, s, t], basis, symbols, graph) for s in (0, 1) for t in (0, 1)])


MAGMOM = "magmom"  # key of DeepHRecord.dft (info.json's level of theory): initial moment of each atom


def initial_moments(record) -> np.ndarray:
    """[n_atoms] float64 initial moments (Bohr magnetons along z) of a ``DeepHRecord``'s atoms: ``record.dft["magmom"]``,
    the magnetic configuration its labels were computed from (as VASP's MAGMOM or ABACUS' atom magnetisation; it picks
    the state where the structure does not, e.g. ferro- or antiferromagnetic), stored with the level of theory in
    info.json; zeros when absent. The collinear model's input (``graph.nodes["magmom"]``)."""
    n = len(record.structure.symbols)
    moments = np.asarray(record.dft.get(MAGMOM, np.zeros(n)), dtype=np.float64)
    if moments.shape != (n,):
        raise ValueError(f"the record of {record.structure.symbols}: dft['{MAGMOM}'] has shape {moments.shape}, "
                         f"expected one initial moment per atom ({n},)")
    return moments


def molecule_moments(n_atoms: int, spin: int) -> np.ndarray:
    """[n_atoms] initial moments (Bohr magnetons along z) of a molecule labelled with 2S = ``spin``: the total moment
    2S spread evenly over its atoms (PySCF's UKS starts from the molecule's 2S, not from moments per atom). What
    ``elct data generate --spin`` stores as ``dft["magmom"]`` and ``elct predict --spin`` gives the model."""
    return np.full(n_atoms, float(spin) / n_atoms)

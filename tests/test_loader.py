"""Records -> examples -> padded batches: targets and masks, seeded splits and shuffles, prefetch thread."""
import threading

import jax
import numpy as np
import pytest
from pyscf import gto
from crystals import real_space_overlaps

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.data import DeepHRecord, write_deeph_dock, write_deeph_legacy
from elct_jax.data.dataset_dir import read_dataset
from elct_jax.data.loader import (
    Example,
    Loader,
    collate,
    common_pad_sizes,
    make_example,
    merged_basis,
    split_indices,
)
from elct_jax.geometry.graph import bucket_size, graph_mask, neighbor_graph
from elct_jax.hamiltonian.blocks import blocks_to_dense, dense_to_blocks, dense_to_dict
from elct_jax.geometry.structure import Structure

WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
AMMONIA = np.array([[0.0, 0.0, 0.1], [0.94, 0.0, -0.27], [-0.47, 0.81, -0.27], [-0.47, -0.81, -0.27]])


def molecule_record(symbols, pos, basis):
    mol = gto.M(atom=list(zip(symbols, pos.tolist())), basis="def2-svp", verbose=0)
    S = mol.intor("int1e_ovlp")
    return DeepHRecord(Structure(symbols, pos), basis, {"overlap": dense_to_dict(S, basis, symbols)}), S


@pytest.fixture(scope="module")
def dataset():
    """Ten real overlap records: displaced waters and ammonias of two sizes."""
    basis = OrbitalBasis.from_pyscf("def2-svp", ["H", "N", "O"])
    rng = np.random.default_rng(7)
    items = []
    for k in range(10):
        symbols, pos = (("O", "H", "H"), WATER) if k % 3 else (("N", "H", "H", "H"), AMMONIA)
        items.append(molecule_record(symbols, pos + 0.05 * rng.normal(size=pos.shape), basis))
    return basis, [r for r, _ in items], [S for _, S in items]


def test_split_is_seeded_disjoint_and_complete():
    train, val, test = split_indices(10, seed=3)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert sorted(np.concatenate([train, val, test])) == list(range(10))
    again = split_indices(10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(split_indices(10, seed=4)[0], train)
    assert [len(x) for x in split_indices(7, seed=0)] == [4, 2, 1]
    with pytest.raises(ValueError, match="fractions"):
        split_indices(10, 0, (0.5, 0.5, 0.5))


def test_collate_targets_and_masks(dataset):
    basis, records, overlaps = dataset
    examples = [make_example(r, basis, cutoff_ang=5.0) for r in records[:3]]
    batch = collate(examples, basis)
    n_node, n_edge = batch.graph.nodes["species"].shape[0], batch.graph.senders.shape[0]
    assert n_node == bucket_size(4 + 3 + 3 + 1) and n_edge == bucket_size(12 + 6 + 6)
    assert len(batch.graph.n_node) == 4 and list(np.asarray(graph_mask(batch.graph))) == [1, 1, 1, 0]
    n_orb = [basis.n_orbitals(s) for r in records[:3] for s in r.structure.symbols]
    assert batch.onsite_mask.sum() == sum(n * n for n in n_orb)
    senders, receivers = batch.graph.senders[:24], batch.graph.receivers[:24]
    assert batch.edge_mask.sum() == sum(n_orb[i] * n_orb[j] for i, j in zip(senders, receivers))
    onsite, edges = batch.targets["overlap"]
    assert np.all(onsite[~batch.onsite_mask] == 0) and np.all(edges[~batch.edge_mask] == 0)
    # each structure's targets are its PySCF overlap, gathered through the batched layout
    dense = np.stack([np.pad(S, (0, batch.layout.n_ao_pad - len(S))) for S in overlaps[:3]])
    g_on, g_ed = dense_to_blocks(dense, batch.layout)
    np.testing.assert_array_equal(onsite, g_on)
    np.testing.assert_array_equal(edges, g_ed)



def test_short_batch_has_the_shapes_of_a_full_one(dataset):
    """A split's last, short batch (no DFT systems) gets empty structure slots: the same pytree and shapes as a
    full batch (one compilation of a step), and the same dense matrices for its real structures."""
    basis, records, overlaps = dataset
    examples = [make_example(r, basis, cutoff_ang=5.0) for r in records[:4]]
    sizes = common_pad_sizes([examples[:3], examples[3:]], basis)
    full, short = (collate(g, basis, n_graph=4, sizes=sizes) for g in (examples[:3], examples[3:]))
    assert jax.tree.structure(full) == jax.tree.structure(short)
    assert [x.shape for x in jax.tree.leaves(full)] == [x.shape for x in jax.tree.leaves(short)]
    assert short.layout.n_graph == 3 and short.has_system.shape == (3,)
    assert not short.layout.ao_mask[1:].any()
    S = np.asarray(blocks_to_dense(*short.targets["overlap"], short.layout, pad_diagonal=1.0))
    n = overlaps[3].shape[0]
    np.testing.assert_allclose(S[0, :n, :n], overlaps[3], atol=1e-12)
    np.testing.assert_array_equal(S[1:], np.broadcast_to(np.eye(sizes.n_ao), (2, sizes.n_ao, sizes.n_ao)))


def test_blocks_missing_from_record_are_masked():
    lattice = np.array([[2.6, 0.0, 0.0], [0.7, 2.4, 0.0], [0.3, -0.5, 2.8]])
    structure = Structure(("H", "He"), np.array([[0.1, 0.2, 0.0], [1.3, 1.1, 1.2]]), lattice, (True, True, True))
    basis = OrbitalBasis.from_pyscf("6-31g**", ["H", "He"])
    short = neighbor_graph(structure, 3.0, {"H": 0, "He": 1})
    record = DeepHRecord(structure, basis, {"overlap": real_space_overlaps(structure, basis, short)})
    example = make_example(record, basis, cutoff_ang=4.0)  # longer graph cutoff than the stored blocks
    assert 0 < example.edge_found.sum() < len(example.edge_found)
    batch = collate([example], basis)
    found = np.zeros(len(batch.graph.senders), bool)
    found[: len(example.edge_found)] = example.edge_found
    assert not batch.edge_mask[~found].any() and batch.edge_mask[found].any()


def test_loader_epochs_are_seeded_and_prefetch_stops(dataset):
    basis, records, _ = dataset
    examples = [make_example(r, basis, cutoff_ang=5.0) for r in records]
    loader = Loader(examples, basis, batch_size=3, seed=11)
    assert len(loader) == 4
    e0 = loader.batch_indices(0)
    assert sorted(np.concatenate(e0)) == list(range(10))
    assert all(np.array_equal(a, b) for a, b in zip(e0, Loader(examples, basis, 3, seed=11).batch_indices(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(e0, loader.batch_indices(1)))
    batches = list(loader.epoch(0))
    assert len(batches) == 4 and all(len(b.graph.n_node) == 4 for b in batches)
    assert len({(b.graph.senders.shape[0], b.graph.nodes["species"].shape[0]) for b in batches}) <= 3
    for b, idx in zip(batches, e0):  # batch k holds exactly the examples of index list k
        reference = collate([examples[i] for i in idx], basis, n_graph=4)
        np.testing.assert_array_equal(b.targets["overlap"][1], reference.targets["overlap"][1])
    for batch in loader.epoch(1):  # stop early: the prefetch thread must finish
        break
    del batch
    assert not any(t.name == "elct-prefetch" and t.is_alive() for t in threading.enumerate())


def test_loader_raises_worker_errors(dataset):
    basis, records, _ = dataset
    good = make_example(records[1], basis, cutoff_ang=5.0)
    with pytest.raises(ValueError, match="1 on-site and 6 edge blocks"):
        Example(good.symbols, good.graph, {"overlap": (good.targets["overlap"][0][:1], good.targets["overlap"][1])},
                good.edge_found)
    no_oxygen = OrbitalBasis("def2-svp", {"H": basis.shells["H"]})
    with pytest.raises(KeyError, match="element 'O' is not in basis"):  # raised in the worker, seen here
        list(Loader([good, good], no_oxygen, batch_size=2, seed=0).epoch(0))


def test_read_dataset_mixes_formats(tmp_path, dataset):
    basis, records, _ = dataset
    write_deeph_dock(tmp_path / "dft" / "0", records[0])
    write_deeph_legacy(tmp_path / "dft" / "1", records[1])
    back = read_dataset(tmp_path / "dft")
    assert [r.structure.symbols for r in back] == [records[0].structure.symbols, records[1].structure.symbols]
    assert merged_basis(back).shells == {el: basis.shells[el] for el in ("H", "N", "O")}
    other = OrbitalBasis("x", {"H": (0,), "O": basis.shells["O"]})
    with pytest.raises(ValueError, match="disagree on the shells of H"):
        merged_basis([records[1], DeepHRecord(records[1].structure, other, {})])


def test_split_file_selects_records_and_names_missing_ones(tmp_path, dataset):
    import dataclasses
    import json

    from elct_jax.data.dataset_dir import dataset_folders, read_split_file
    from elct_jax.config import DataConfig, RunConfig
    from elct_jax.train.run import prepare_data

    basis, records, _ = dataset
    for k in range(4):
        write_deeph_dock(tmp_path / "dft" / str(k), records[k])
    folders = dataset_folders(tmp_path / "dft")
    (tmp_path / "split.json").write_text(json.dumps({"train": ["2", "0"], "validation": ["3"], "test": []}))
    split = read_split_file(tmp_path / "split.json", tmp_path / "dft", folders)
    assert [folders[i].name for i in split["train"]] == ["2", "0"] and [folders[i].name for i in split["val"]] == ["3"]
    config = RunConfig(data=DataConfig(path=str(tmp_path / "dft"), cutoff_ang=5.0, split_file=str(tmp_path / "split.json")))
    data = prepare_data(config, with_systems=False)
    assert [data.names[i] for i in data.splits["train"]] == ["2", "0"] and len(data.records) == 3  # "1" is not read
    (tmp_path / "bad.json").write_text(json.dumps({"train": ["0", "7", "missing"], "test": ["0"]}))
    with pytest.raises(ValueError, match=r"not in .*\['7', 'missing'\]"):
        read_split_file(tmp_path / "bad.json", tmp_path / "dft", folders)
    (tmp_path / "twice.json").write_text(json.dumps({"train": ["0"], "test": ["0"]}))
    with pytest.raises(ValueError, match=r"more than once: \['0'\]"):
        read_split_file(tmp_path / "twice.json", tmp_path / "dft", folders)
    # another level of theory inside the dataset is refused, naming the record
    odd = dataclasses.replace(records[3], dft={**records[3].dft, "xc": "lda,vwn"})
    write_deeph_dock(tmp_path / "dft" / "3", odd)
    with pytest.raises(ValueError, match=r"another level of theory than 2: \['3'\].*'xc'"):
        prepare_data(config, with_systems=False)


def test_merged_basis_names_the_records_that_disagree(dataset):
    basis, records, _ = dataset
    other = OrbitalBasis("sto-3g", {"H": (0,), "O": basis.shells["O"]})
    odd = DeepHRecord(records[1].structure, other, {})
    with pytest.raises(ValueError, match=r"shells of H: .* in a/w1 \(def2-svp\) vs \(0,\) in b/w2 \(sto-3g\)"):
        merged_basis([records[1], odd], names=["a/w1", "b/w2"])

"""Named benchmark datasets: which molecules the G2 sets hold, and the protocol splits they write."""
import json

from elct_jax.data.benchmarks import DATASETS, G2_ELEMENTS, HELD_OUT, SPLIT_FILE, g2_molecules, get_dataset, write_split


def test_g2_sets_are_closed_shell_first_three_rows_and_disjoint():
    mols = g2_molecules()
    assert "H2O" in mols and "C6H6" in mols
    assert "O2" not in mols and "NO" not in mols and "CH3" not in mols  # triplet, odd electron counts
    assert all(set(s.symbols) <= G2_ELEMENTS for s in mols.values())
    pretrain, heldout = get_dataset("g2-mol").bases, get_dataset("g2-heldout").bases
    assert set(heldout) == set(HELD_OUT) and not set(pretrain) & set(heldout)
    assert len(pretrain) * DATASETS["g2-mol"].n_structures >= 1500


def test_splits_follow_the_protocol_per_base(tmp_path):
    manifest = lambda done: {"structures": {str(i): {"status": "done" if i in done else "failed"}  # noqa: E731
                                            for i in range(16)}}
    g2 = get_dataset("g2-mol")
    split = json.loads(write_split(g2, tmp_path, {"CH4": manifest(range(14)), "H2O": manifest({0, 1, 5})}).read_text())
    assert split["train"] == [f"CH4/{i}" for i in range(12)] + ["H2O/0", "H2O/1", "H2O/5"]
    assert split["val"] == ["CH4/12"] and split["test"] == ["CH4/13"]
    water = get_dataset("water-md17")
    split = json.loads(write_split(water, tmp_path, {"": manifest(range(16))}).read_text())
    assert split["train"] == [str(i) for i in range(16)] and split["val"] == split["test"] == []
    assert (tmp_path / SPLIT_FILE).is_file()

"""Spinful DeepH data (spin-orbit and collinear spin) in both formats, checked against deepx-dock's reader and
writer logic (reproduced from github.com/kYangLi/DeepH-dock: compute/eigen/hamiltonian.py, convert/abacus,
convert/deeph/translate_old_dataset_to_new.py), with a real spin-orbit Hamiltonian from PySCF; bad input."""
import json

import h5py
import numpy as np
import pytest
import scipy.linalg
from ase.io import read as ase_read
from pyscf import gto
from pyscf.x2c import x2c

from elct_jax.data import (
    HARTREE_TO_EV,
    DeepHFormatError,
    DeepHRecord,
    read_deeph_dock,
    read_deeph_legacy,
    write_deeph_dock,
    write_deeph_legacy,
)
from elct_jax.data.loader import make_example
from elct_jax.data.spinful import check_spin, collinear_blocks, spin_treatment, spinful_dense_to_dict, spinful_dict_to_dense
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dense_to_dict

HBR = (("H", "Br"), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.414]]))
SPIN_NAMES = ("hamiltonian", "density_matrix")


@pytest.fixture(scope="module")
def hbr_soc():
    """HBr, STO-3G (Br has s, p and d shells): PySCF's X2C1e one-electron Hamiltonian with its spin-orbit terms
    in the GHF spin-orbital basis ([2 n_ao, 2 n_ao] complex, spin outer), the spinless overlap, the density
    matrix of the 36 lowest spin-orbitals, and the generalized eigenvalues of (h, S x 1_2)."""
    symbols, pos = HBR
    mol = gto.M(atom=list(zip(symbols, pos.tolist())), basis="sto-3g", unit="Angstrom", verbose=0)
    h = x2c.SpinOrbitalX2CHelper(mol).get_hcore()
    S = mol.intor("int1e_ovlp")
    eps, C = scipy.linalg.eigh(h, scipy.linalg.block_diag(S, S))
    D = C[:, : mol.nelectron] @ C[:, : mol.nelectron].conj().T
    basis = OrbitalBasis.from_pyscf("sto-3g", symbols)
    matrices = {"overlap": dense_to_dict(S, basis, symbols), "hamiltonian": spinful_dense_to_dict(h, basis, symbols),
                "density_matrix": spinful_dense_to_dict(D, basis, symbols)}
    record = DeepHRecord(Structure(*HBR), basis, matrices, None, {"n_electrons": mol.nelectron}, spinful=True)
    return record, h, eps


def h5_arrays(path):
    with h5py.File(path) as f:
        return tuple(f[k][()] for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes", "entries"))


def deepx_dock_dense(folder, name):
    """deepx-dock's AOMatrixObj reading of ``<name>.h5``: {R: dense matrix} in eV / dimensionless, Wikipedia order;
    H-like files spin outer over all orbitals ([2 N, 2 N], complex), the overlap made [[S, 0], [0, S]]."""
    info = json.loads((folder / "info.json").read_text())
    spinful, n_tot = info["spinful"], info["orbits_quantity"]
    n_orb = [sum(2 * l + 1 for l in info["elements_orbital_map"][el]) for el in ase_read(folder / "POSCAR").get_chemical_symbols()]
    cum = np.insert(np.cumsum(n_orb), 0, 0)
    pairs, bounds, shapes, entries = h5_arrays(folder / f"{name}.h5")
    h_like = name != "overlap"
    dim = n_tot * (1 + spinful) if h_like else n_tot
    out = {}
    for ap, b0, b1, shape in zip(pairs, bounds[:-1], bounds[1:], shapes):
        M = out.setdefault(tuple(ap[:3]), np.zeros((dim, dim), dtype=np.complex128 if spinful and h_like else float))
        chunk, (i, j) = entries[b0:b1].reshape(shape), ap[3:]
        if spinful and h_like:
            ni, nj = n_orb[i], n_orb[j]
            for si in (0, 1):
                for sj in (0, 1):
                    M[cum[i] + si * n_tot : cum[i + 1] + si * n_tot, cum[j] + sj * n_tot : cum[j + 1] + sj * n_tot] = \
                        chunk[si * ni : (si + 1) * ni, sj * nj : (sj + 1) * nj]
        else:
            M[cum[i] : cum[i + 1], cum[j] : cum[j + 1]] = chunk
    if spinful and not h_like:
        out = {R: np.block([[S, np.zeros_like(S)], [np.zeros_like(S), S]]) for R, S in out.items()}
    return out


def assert_within_1ulp(a, b):
    """Equal up to one unit in the last place of each real and imaginary part (the eV <-> Hartree conversion)."""
    a, b = (np.ascontiguousarray(x, dtype=np.complex128).view(np.float64) for x in (a, b))
    np.testing.assert_array_max_ulp(a, b, maxulp=1)


@pytest.mark.parametrize("writer, reader", [(write_deeph_dock, read_deeph_dock), (write_deeph_legacy, read_deeph_legacy)])
def test_soc_record_round_trips(tmp_path, hbr_soc, writer, reader):
    record, _, _ = hbr_soc
    back = reader(writer(tmp_path / "hbr", record))
    assert back.spinful and set(back.matrices) == set(record.matrices)
    assert spin_treatment(back.spinful, back.matrices["hamiltonian"]) == "noncollinear"
    for key, block in record.matrices["hamiltonian"].items():
        assert back.matrices["hamiltonian"][key].dtype == np.complex128
        assert_within_1ulp(back.matrices["hamiltonian"][key], block)
    for name in ("overlap", "density_matrix"):  # dimensionless: bitwise
        for key, block in record.matrices[name].items():
            np.testing.assert_array_equal(back.matrices[name][key], block)


def test_deepx_dock_reader_sees_pyscf_matrix(tmp_path, hbr_soc):
    record, h, eps = hbr_soc
    folder = write_deeph_dock(tmp_path / "hbr", record)
    assert json.loads((folder / "info.json").read_text())["spinful"] is True
    pairs_s, bounds_s, shapes_s, entries_s = h5_arrays(folder / "overlap.h5")
    pairs, bounds, shapes, entries = h5_arrays(folder / "hamiltonian.h5")
    np.testing.assert_array_equal(pairs, pairs_s)
    np.testing.assert_array_equal(shapes, 2 * shapes_s)
    np.testing.assert_array_equal(bounds, 4 * bounds_s)
    assert entries.dtype == np.complex128 and entries_s.dtype == np.float64
    H = deepx_dock_dense(folder, "hamiltonian")[(0, 0, 0)] / HARTREE_TO_EV
    S = deepx_dock_dense(folder, "overlap")[(0, 0, 0)]
    symbols = record.structure.symbols
    p = record.basis.permutation(symbols, "pyscf")  # PySCF -> Wikipedia order, per spin
    p2 = np.concatenate([p, p + len(p)])
    np.testing.assert_allclose(H, h[np.ix_(p2, p2)], rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(scipy.linalg.eigh(H, S, eigvals_only=True), eps, atol=1e-10)
    np.testing.assert_allclose(spinful_dict_to_dense(record.matrices["hamiltonian"], record.basis, symbols), h, atol=0)


def test_legacy_upgraded_by_deepx_dock_equals_dock_folder(tmp_path, hbr_soc):
    """deepx-dock's legacy -> new translator (spin-quadrant OpenMX -> Wikipedia reordering) on our legacy folder
    gives our DeepH-dock entries bit for bit; the legacy blocks are HDF5 compounds (r, i), as Julia writes them."""
    record, _, _ = hbr_soc
    legacy = write_deeph_legacy(tmp_path / "legacy", record)
    dock = write_deeph_dock(tmp_path / "dock", record)
    assert json.loads((legacy / "info.json").read_text())["isspinful"] is True
    openmx_to_wiki = {0: [0], 1: [1, 2, 0], 2: [2, 4, 0, 3, 1]}
    index = {}
    for el, shells in record.basis.shells.items():
        offsets = np.cumsum([0] + [2 * l + 1 for l in shells])
        index[el] = np.concatenate([np.array(openmx_to_wiki[l]) + o for l, o in zip(shells, offsets)])
    pairs, bounds, _, entries = h5_arrays(dock / "hamiltonian.h5")
    symbols = record.structure.symbols
    with h5py.File(legacy / "hamiltonians.h5") as f:
        for ap, b0, b1 in zip(pairs, bounds[:-1], bounds[1:]):
            dataset = f[f"[{ap[0]}, {ap[1]}, {ap[2]}, {ap[3] + 1}, {ap[4] + 1}]"]
            assert dataset.id.get_type().get_member_name(0) == b"r"
            m = dataset[()]
            a, b = m.shape[0] // 2, m.shape[1] // 2
            m = m.reshape(2, a, 2, b).transpose(0, 2, 1, 3).reshape(4, a, b)  # deepx-dock's _transform
            m = m[:, index[symbols[ap[3]]], :][:, :, index[symbols[ap[4]]]]
            m = m.reshape(2, 2, a, b).transpose(0, 2, 1, 3).reshape(2 * a, 2 * b)
            np.testing.assert_array_equal(m.reshape(-1), entries[b0:b1])


GAAS_MAP = {"As": [0, 0, 1, 1, 2], "Ga": [0, 0, 1, 1, 2, 2]}  # as in deepx-dock's GaAs_SOC example (ABACUS)


def write_like_deepx_dock(folder, quadrant, pairs, collinear):
    """A GaAs crystal folder as deepx-dock's ABACUS converter writes one (info.json keys, POSCAR, overlap.h5,
    and hamiltonian.h5 from _stack_spinful_matrix + _dump_h5). quadrant(s1, s2, key) -> [n_i, n_j] block (eV)."""
    folder.mkdir()
    a = 2.8268476586899998
    (folder / "POSCAR").write_text(f"POSCAR generated by DeepH-dock \n1.0\n  {a} {a} 0.0\n  0.0 {a} {a}\n  {a} 0.0 {a}\n"
                                   f"As Ga\n1 1\nCartesian\n  {a / 2} {a / 2} {a / 2}\n  0.0 0.0 0.0\n")
    info = {"atoms_quantity": 2, "orbits_quantity": 31, "orthogonal_basis": False, "spinful": True,
            "fermi_energy_eV": 7.8510353074, "elements_orbital_map": GAAS_MAP}
    (folder / "info.json").write_text(json.dumps(info))
    n_orb = [13, 18]
    shapes = np.array([(n_orb[k[3]], n_orb[k[4]]) for k in pairs])
    bounds = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])])
    parts = [np.concatenate([quadrant(s1, s2, k).reshape(-1) for k in pairs]) for s1 in (0, 1) for s2 in (0, 1)]
    stacked = np.zeros(4 * bounds[-1], dtype=np.float64 if collinear else np.complex128)
    for n in range(len(pairs)):
        h = [p[bounds[n] : bounds[n + 1]].reshape(shapes[n]) for p in parts]
        stacked[4 * bounds[n] : 4 * bounds[n + 1]] = np.block([[h[0], h[1]], [h[2], h[3]]]).reshape(-1)
    for name, data in (("overlap", (shapes, bounds, parts[0].real * 1e-3)), ("hamiltonian", (2 * shapes, 4 * bounds, stacked))):
        with h5py.File(folder / f"{name}.h5", "w") as f:
            for k, v in zip(("atom_pairs", "chunk_shapes", "chunk_boundaries", "entries"), (np.array(pairs), *data)):
                f.create_dataset(k, data=v)


def labelled(s1, s2, key, collinear=False):
    """A distinct value per (spin, spin, R, atom, orbital, orbital); zero spin-flip blocks when ``collinear``."""
    n_orb = [13, 18]
    rows, cols = np.arange(n_orb[key[3]])[:, None], np.arange(n_orb[key[4]])[None, :]
    value = 100.0 * rows + cols + 1e4 * (key[0] + 3 * key[1] + 9 * key[2]) + 1e6 * (key[3] + 2 * key[4])
    if collinear:
        return value * (1 + 0.5 * s1) if s1 == s2 else 0.0 * value
    return value + 1j * (1 + s1 + 2 * s2)


PAIRS = [(0, 0, 0, 0, 0), (0, 0, 0, 0, 1), (0, 0, 0, 1, 0), (0, 0, 0, 1, 1), (-1, 0, 1, 0, 1), (1, 0, -1, 1, 0)]


@pytest.mark.parametrize("collinear", [False, True])
def test_reads_and_rewrites_folder_written_like_deepx_dock(tmp_path, collinear):
    folder = tmp_path / "GaAs"
    write_like_deepx_dock(folder, lambda s1, s2, k: labelled(s1, s2, k, collinear), PAIRS, collinear)
    record = read_deeph_dock(folder)
    assert record.spinful and record.structure.symbols == ("As", "Ga") and record.structure.pbc == (True,) * 3
    assert spin_treatment(True, record.matrices["hamiltonian"]) == ("collinear" if collinear else "noncollinear")
    for key in PAIRS:
        block = record.matrices["hamiltonian"][key] * HARTREE_TO_EV
        assert block.dtype == (np.float64 if collinear else np.complex128)
        ni, nj = block.shape[0] // 2, block.shape[1] // 2
        for s1 in (0, 1):
            for s2 in (0, 1):
                quadrant = block[s1 * ni : (s1 + 1) * ni, s2 * nj : (s2 + 1) * nj]
                assert_within_1ulp(quadrant, labelled(s1, s2, key, collinear))
    legacy = read_deeph_legacy(write_deeph_legacy(tmp_path / "legacy", record))
    assert legacy.spinful and legacy.structure.pbc == (True,) * 3
    for key in PAIRS:  # crystal blocks with R != 0 through the legacy format (OpenMX order per spin quadrant)
        assert legacy.matrices["hamiltonian"][key].dtype == record.matrices["hamiltonian"][key].dtype
        assert_within_1ulp(legacy.matrices["hamiltonian"][key], record.matrices["hamiltonian"][key])
    again = write_deeph_dock(tmp_path / "again", record)
    assert h5_arrays(again / "hamiltonian.h5")[3].dtype == h5_arrays(folder / "hamiltonian.h5")[3].dtype
    for name in ("hamiltonian", "overlap"):
        ours, theirs = deepx_dock_dense(again, name), deepx_dock_dense(folder, name)
        assert set(ours) == set(theirs)
        for R in theirs:
            assert_within_1ulp(ours[R], theirs[R])


def test_collinear_blocks_follow_deepx_dock(hbr_soc):
    record, _, _ = hbr_soc
    S = record.matrices["overlap"]
    blocks = collinear_blocks(S, {k: 2 * b for k, b in S.items()})
    key = (0, 0, 0, 1, 1)
    n = S[key].shape[0]
    np.testing.assert_array_equal(blocks[key], scipy.linalg.block_diag(S[key], 2 * S[key]))
    assert blocks[key].shape == (2 * n, 2 * n) and spin_treatment(True, blocks) == "collinear"
    assert spin_treatment(False, S) == "none"
    with pytest.raises(ValueError, match="different blocks"):
        collinear_blocks(S, {key: S[key]})


def test_spinful_blocks_of_wrong_shape_are_named(tmp_path, hbr_soc):
    record, _, _ = hbr_soc
    spinless = DeepHRecord(record.structure, record.basis, {"overlap": record.matrices["overlap"],
                           "hamiltonian": {k: b.real for k, b in record.matrices["overlap"].items()}})
    dock = write_deeph_dock(tmp_path / "dock", spinless)
    info = json.loads((dock / "info.json").read_text())
    (dock / "info.json").write_text(json.dumps({**info, "spinful": True}))
    with pytest.raises(DeepHFormatError, match=r"hamiltonian\.h5: block \(0, 0, 0, 0, 0\) has shape \(1, 1\), but the "
                       r"orbital map gives spinful data need 2 x \(1, 1\) = \(2, 2\)"):
        read_deeph_dock(dock)
    legacy = write_deeph_legacy(tmp_path / "legacy", spinless)
    info = json.loads((legacy / "info.json").read_text())
    (legacy / "info.json").write_text(json.dumps({**info, "isspinful": True}))
    with pytest.raises(DeepHFormatError, match=r"hamiltonians\.h5 dataset \[0, 0, 0, 1, 1\]: block \(0, 0, 0, 0, 0\) "
                       r"has shape \(1, 1\).*\(2, 2\)"):
        read_deeph_legacy(legacy)
    with pytest.raises(ValueError, match=r"matrix 'hamiltonian': block \(0, 0, 0, 0, 0\) has shape \(1, 1\)"):
        DeepHRecord(record.structure, record.basis, spinless.matrices, spinful=True)


def test_complex_or_odd_spin_flags_are_refused(tmp_path, hbr_soc):
    record, _, _ = hbr_soc
    dock = write_deeph_dock(tmp_path / "dock", record)
    info = json.loads((dock / "info.json").read_text())
    (dock / "info.json").write_text(json.dumps({**info, "spinful": "yes"}))
    with pytest.raises(DeepHFormatError, match="'spinful' must be true or false"):
        read_deeph_dock(dock)
    (dock / "info.json").write_text(json.dumps({**info, "spinful": False}))
    with pytest.raises(DeepHFormatError, match=r"hamiltonian\.h5: complex entries, but info.json does not mark"):
        read_deeph_dock(dock)
    with pytest.raises(ValueError, match="block .* is complex; only the spin matrices of a spinful record"):
        DeepHRecord(record.structure, record.basis, {"hamiltonian": {k: b + 0j for k, b in record.matrices["overlap"].items()}})


def test_training_path_refuses_spinful_records_for_a_spinless_model(hbr_soc):
    record, _, _ = hbr_soc
    with pytest.raises(ValueError, match=r"1 record\(s\) do not hold the data a model with spin = 'none' learns "
                                         r"\(spinless.*\['mol/7'\]; e.g. mol/7: non-collinear .*spin = 'soc'"):
        check_spin([record], ["mol/7"], "none")
    with pytest.raises(ValueError, match=r"the record of \('H', 'Br'\).*spin = 'soc'"):
        make_example(record, record.basis, cutoff_ang=5.0)

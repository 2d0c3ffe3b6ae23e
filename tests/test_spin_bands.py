"""Bands of spinful records (float64): collinear spin-up/down bands from KUKS labels against PySCF's own KUKS bands,
spin-orbit spinor bands against a dense diagonalization of the spin-outer Bloch sum and against a molecule's X2C
spin-orbit levels (HBr in a box, Gamma), dense and sparse solvers, and the bad inputs of the spin paths.

The magnet: the stretched H chain of tests/test_spin_crystal.py (H every 2.0 A, gth-dzvp), two atoms per cell so that
an integer moment per cell is partial: 2S = 1 per cell held fixed (N_up 1.5, N_down 0.5; Fermi smearing 0.01 Ha,
2 k-points), in an 8 A box so that the real-space blocks are free of images across the vacuum (6 A overlaps them by
7e-6). (A fully polarized chain is a poor test: PBE correlation puts the empty spin's bands at +9 Ha there.)
"""
import functools
import json

import numpy as np
import pytest
import scipy.linalg

from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell, crystal_labels
from ai2dft.pyscf_bridge.realspace import direct_overlaps
from ai2dft.pyscf_bridge.soc import SOCSettings, soc_molecule_labels
from ai2dft.pyscf_bridge.spin_labels import _run_kuks, spin_crystal_labels
from elct_jax.analysis.bands import dos, fermi_level
from elct_jax.analysis.spin_bands import band_channels
from elct_jax.data.deeph_dock import DeepHRecord, read_deeph_dock, write_deeph_dock
from elct_jax.data.generate import label_record
from elct_jax.data.spin_crystal_record import spin_crystal_record
from elct_jax.data.spinful import quadrants, spinful_dense_to_dict
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.sparse import SparseBlocks

from crystals import h_chain

SETTINGS = DFTSettings(basis="gth-dzvp", xc="pbe", kmesh=(2, 1, 1), ke_cutoff_Ha=25.0, smearing=("fermi", 0.01),
                       spin=1, conv_tol=1e-10)


@functools.lru_cache(maxsize=None)
def magnet():
    """(collinear DeepH record of the KUKS labels, converged PySCF KUKS of the same settings)."""
    record, converged = spin_crystal_record(h_chain(), SETTINGS, "fixed")
    assert converged
    return record, _run_kuks(build_cell(h_chain(), SETTINGS), SETTINGS, "fixed")


def test_collinear_record_holds_the_kuks_labels(tmp_path):
    """The record is collinear spinful (zero up-down quadrants, real), round-trips through a DeepH-dock folder, and its
    level of theory names the spin treatment; the labels' D holds N_up = 1.5 and N_down = 0.5 per cell."""
    record, _ = magnet()
    back = read_deeph_dock(write_deeph_dock(tmp_path / "chain", record))
    assert back.spinful and back.dft["spin_treatment"] == "collinear (KUKS, fixed magnetisation)"
    for key, block in record.matrices["hamiltonian"].items():
        assert block.shape == (10, 10) and not np.iscomplexobj(block)  # 2 x 5 AOs per atom
        assert not np.any(quadrants(block)[1]) and not np.any(quadrants(block)[2])
        np.testing.assert_allclose(back.matrices["hamiltonian"][key], block, atol=1e-13)  # via eV
    np.testing.assert_allclose(back.dft["n_electrons_per_spin"], [1.5, 0.5], atol=1e-8)
    assert back.dft["magmom"] == [0.5, 0.5] and back.fermi_energy_hartree is None
    assert back.dft["max_overlap_deviation"] < 1e-6


def test_the_generator_labels_a_crystal_with_spin_by_kuks():
    """``elct data generate --spin`` on a crystal: label_record gives the KUKS record (2S per cell held fixed)."""
    record, _ = magnet()
    generated, converged = label_record(h_chain(), SETTINGS)
    assert converged and generated.spinful and generated.dft["spin_treatment"] == record.dft["spin_treatment"]
    assert generated.matrices["hamiltonian"].keys() == record.matrices["hamiltonian"].keys()
    for key, block in record.matrices["hamiltonian"].items():
        np.testing.assert_allclose(generated.matrices["hamiltonian"][key], block, atol=1e-8)


def test_collinear_bands_equal_pyscf_kuks_bands(tmp_path):
    """`elct bands --folder` on the record: spin-up and spin-down bands at the path's k-points equal PySCF's KUKS
    get_bands (1e-6 Ha), exchange-split; one Fermi level for both spins from the electron count; the sparse solver's
    bands equal PySCF's at their inertia band indices."""
    from elct_jax.cli.main import main

    record, mf = magnet()
    write_deeph_dock(tmp_path / "chain", record)
    assert main(["bands", "--folder", str(tmp_path / "chain"), "--out", str(tmp_path / "out"), "--npoints", "6",
                 "--nbands", "0", "--fermi-kmesh", "8", "1", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "bands.json").read_text())
    assert summary["spin"] == "collinear" and summary["n_bands_per_k"] == [10, 10]
    up, down = (np.load(tmp_path / "out" / f"bands_{s}.npz") for s in ("up", "down"))
    kabs = mf.cell.get_abs_kpts(up["kpts_frac"])
    ref = np.sort(np.asarray(mf.get_bands(kabs)[0]), axis=-1)  # [2, n_k, 10]
    assert np.abs(up["energies_hartree"] - ref[0]).max() < 1e-6
    assert np.abs(down["energies_hartree"] - ref[1]).max() < 1e-6
    assert np.min(ref[1, :, 0] - ref[0, :, 0]) > 0.05  # exchange-split
    fermi = float(up["fermi_hartree"])
    channels = band_channels(record)
    mesh = np.stack([np.arange(8) / 8, np.zeros(8), np.zeros(8)], axis=1)
    assert float(down["fermi_hartree"]) == fermi
    assert abs(fermi - fermi_level(channels.solvers, 2, mesh, electrons_per_level=1)) < 1e-12  # written via eV
    assert np.sum(ref[0] < fermi) > np.sum(ref[1] < fermi)  # more up than down states below the Fermi level
    sparse = channels.solvers[1].bands(up["kpts_frac"], 2, fermi, solver="sparse")
    for k in range(len(up["x"])):
        assert np.abs(ref[1, k, sparse.band_index[k]] - sparse.energies[k]).max() < 1e-6
    spin_dos = dos(up["energies_hartree"], np.linspace(-0.5, 0.5, 11), 0.05, degeneracy=1)
    assert np.isclose(spin_dos.sum(), 0.5 * dos(up["energies_hartree"], np.linspace(-0.5, 0.5, 11), 0.05).sum())


@pytest.fixture(scope="module")
def hbr_soc():
    structure = Structure(("H", "Br"), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.414]]))
    labels = soc_molecule_labels(structure, SOCSettings(basis="sto-3g", grid_level=2))
    basis = OrbitalBasis.from_pyscf("sto-3g", structure.symbols)
    from elct_jax.hamiltonian.blocks import dense_to_dict

    matrices = {"hamiltonian": spinful_dense_to_dict(labels.H, basis, structure.symbols),
                "overlap": dense_to_dict(labels.S, basis, structure.symbols, "pyscf")}
    return structure, basis, matrices, labels


def boxed(structure, size=15.0) -> Structure:
    return Structure(structure.symbols, structure.positions_ang + size / 2, np.eye(3) * size, (True, True, True))


def test_soc_bands_of_a_boxed_molecule_are_its_x2c_levels(hbr_soc):
    """HBr's X2C1e spin-orbit Kohn-Sham matrix as the R = 0 blocks of a 15 A box: the spinor bands at Gamma (dense and
    sparse) are PySCF's GKS orbital energies (1e-8 Ha), Kramers-degenerate, with the 4p pi_3/2 - pi_1/2 splitting."""
    structure, basis, matrices, labels = hbr_soc
    record = DeepHRecord(boxed(structure), basis, matrices, None, {"n_electrons": labels.n_electrons}, spinful=True)
    channels = band_channels(record, "boxed HBr", spin="noncollinear")
    assert channels.names == ("spinor",) and channels.electrons_per_level == 1
    solver = channels.solvers[0]
    e = solver.bands(np.zeros((1, 3)), None, None, solver="dense").energies[0]
    np.testing.assert_allclose(e, np.sort(labels.mo_energy), atol=1e-8)
    assert np.abs(e[0::2] - e[1::2]).max() < 1e-8  # Kramers pairs
    n = labels.n_electrons
    assert abs(e[n - 2] - e[n - 3]) > 1e-3  # the spin-orbit split pi level below the Fermi level
    fermi = fermi_level(solver, n, method="dense", electrons_per_level=1)
    assert abs(fermi - labels.fermi_energy) < 1e-8
    sparse = solver.bands(np.zeros((1, 3)), 4, fermi, solver="sparse")
    np.testing.assert_allclose(sparse.energies[0], e[sparse.band_index[0]], atol=1e-8)


def test_soc_bands_equal_dense_bloch_sum(hbr_soc):
    """A spin-orbit chain: HBr's spinor blocks on site plus random complex spinor hoppings to the neighbours
    (H_ji(-R) = H_ij(R)^H) and small overlaps: bands (dense and sparse) equal the eigenvalues of the dense spin-outer
    Bloch sum [[H_uu, H_ud], [H_du, H_dd]](k) with S(k) x 1_2 at five k (1e-10 Ha)."""
    structure, basis, matrices, labels = hbr_soc
    rng = np.random.default_rng(7)
    H, S = dict(matrices["hamiltonian"]), dict(matrices["overlap"])
    n_orb = [basis.n_orbitals(el) for el in structure.symbols]
    for i in range(2):
        for j in range(2):
            h = 0.02 * (rng.normal(size=(2 * n_orb[i], 2 * n_orb[j])) + 1j * rng.normal(size=(2 * n_orb[i], 2 * n_orb[j])))
            s = 0.01 * rng.normal(size=(n_orb[i], n_orb[j]))
            H[(1, 0, 0, i, j)], H[(-1, 0, 0, j, i)] = h, h.conj().T
            S[(1, 0, 0, i, j)], S[(-1, 0, 0, j, i)] = s, s.T
    chain = Structure(structure.symbols, structure.positions_ang + 5.0, np.diag([4.0, 10.0, 10.0]), (True, False, False))
    record = DeepHRecord(chain, basis, {"hamiltonian": H, "overlap": S}, None, {}, spinful=True)
    solver = band_channels(record).solvers[0]
    kpts = np.array([[x, 0.0, 0.0] for x in (0.0, 0.1, 0.25, 0.4, 0.5)])
    offsets = np.concatenate([[0], np.cumsum(n_orb)])
    n = offsets[-1]
    for k, (dense, sparse) in enumerate(zip(solver.bands(kpts, None, None, solver="dense").energies,
                                            solver.bands(kpts, 6, 0.0, solver="sparse").energies)):
        hk, sk = np.zeros((2 * n, 2 * n), complex), np.zeros((n, n), complex)
        for (r1, r2, r3, i, j), block in H.items():
            phase = np.exp(2j * np.pi * kpts[k, 0] * r1)
            for q, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                hk[a * n + offsets[i]:a * n + offsets[i + 1], b * n + offsets[j]:b * n + offsets[j + 1]] += (
                    phase * quadrants(block)[q])
            sk[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] += phase * S[(r1, r2, r3, i, j)]
        ref = scipy.linalg.eigh(hk, np.kron(np.eye(2), sk), eigvals_only=True)
        assert np.abs(dense - ref).max() < 1e-10
        nearest = np.sort(ref[np.argsort(np.abs(ref))[:6]])
        np.testing.assert_allclose(sparse, nearest, atol=1e-8)


def test_bad_spin_inputs_are_named(hbr_soc):
    structure, basis, matrices, labels = hbr_soc
    record = DeepHRecord(boxed(structure), basis, matrices, None, {}, spinful=True)
    with pytest.raises(ValueError, match="boxed HBr holds spin-orbit data.*but spinless data"):
        band_channels(record, "boxed HBr", spin="none")
    with pytest.raises(ValueError, match=r"twice the expected \(1, 1\): a spinful \(spin-outer\) block given to a spinless"):
        SparseBlocks.from_dict(matrices["hamiltonian"], [1, 4])
    spinless = DeepHRecord(boxed(structure), basis, {"hamiltonian": {k: quadrants(b)[0].real for k, b in
                                                                     matrices["hamiltonian"].items()},
                                                     "overlap": matrices["overlap"]}, None, {})
    with pytest.raises(ValueError, match="spinless data.*but collinear spin data"):
        band_channels(spinless, "spinless HBr", spin="collinear")
    with pytest.raises(ValueError, match="spin-degenerate levels need an even count"):
        fermi_level(band_channels(spinless).solvers[0], 19, method="dense")
    chain = dict(basis="gth-szv", xc="pbe", kmesh=(2, 1, 1), ke_cutoff_Ha=20.0)
    with pytest.raises(ValueError, match="1 valence electrons per cell.*odd count needs a spin setting, DFTSettings.spin"):
        crystal_labels(h_chain(atoms=1), DFTSettings(**chain))
    with pytest.raises(ValueError, match="KUKS labels come from spin_labels.spin_crystal_labels"):
        crystal_labels(h_chain(atoms=1), DFTSettings(**chain, spin=1))
    with pytest.raises(ValueError, match="needs DFTSettings.spin"):
        spin_crystal_labels(h_chain(atoms=1), DFTSettings(**chain))
    with pytest.raises(ValueError, match=r"'free' needs smearing"):
        spin_crystal_labels(h_chain(atoms=1), DFTSettings(**chain, spin=1), "free")
    with pytest.raises(ValueError, match=r"spin 2S = 2 per cell is impossible for 1 valence electrons per cell .* \(2, 1, 1\) k-mesh"):
        spin_crystal_labels(h_chain(atoms=1), DFTSettings(**chain, spin=2))
    cell = build_cell(h_chain(6.0, atoms=1), DFTSettings(**chain, spin=1))
    with pytest.raises(ValueError, match=r"vacuum is too thin: overlap 7.2\de-06 with the periodic image at R=\("):
        direct_overlaps(cell, 1e-10, (True, False, False))

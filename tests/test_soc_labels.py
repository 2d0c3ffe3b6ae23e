"""Spin-orbit labels of HBr from PySCF's X2C1e generalised Kohn-Sham run: Hermitian, time-reversal symmetric,
eigenvalues equal to PySCF's, Kramers pairs, the spin-orbit splitting of the Br 4p (pi) level, and the labels
through the DeepH-dock format and back."""
import numpy as np
import pytest
import scipy.linalg

from ai2dft.pyscf_bridge.soc import SOCSettings, soc_molecule_labels
from ai2dft.units import HARTREE_TO_EV
from elct_jax.data import DeepHRecord, read_deeph_dock, write_deeph_dock
from elct_jax.data.spinful import spin_treatment, spinful_dense_to_dict, spinful_dict_to_dense
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dense_to_dict

HBR = Structure(("H", "Br"), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.414]]))
SETTINGS = SOCSettings(basis="sto-3g", grid_level=2)  # STO-3G keeps the 4p pi level; the test stays cheap


@pytest.fixture(scope="module")
def labels():
    return soc_molecule_labels(HBR, SETTINGS)


def spin_overlap(S):
    return scipy.linalg.block_diag(S, S)


def test_hamiltonian_is_hermitian_time_reversal_symmetric_and_pyscfs(labels):
    H, S, n = labels.H, labels.S, labels.S.shape[0]
    assert labels.converged and H.shape == (2 * n, 2 * n) and H.dtype == np.complex128
    np.testing.assert_allclose(H, H.conj().T, atol=1e-13)
    assert np.abs(H[:n, n:]).max() > 1e-3  # spin-orbit couples up and down
    uu, ud, du, dd = H[:n, :n], H[:n, n:], H[n:, :n], H[n:, n:]
    np.testing.assert_allclose(dd, uu.conj(), atol=1e-8)  # closed shell: Theta = -i sigma_y K commutes with H
    np.testing.assert_allclose(du, -ud.conj(), atol=1e-8)
    eps = scipy.linalg.eigh(H, spin_overlap(S), eigvals_only=True)
    np.testing.assert_allclose(eps, labels.mo_energy, atol=1e-8)
    np.testing.assert_allclose(np.trace(labels.D @ spin_overlap(S)).real, labels.n_electrons, atol=1e-10)
    assert labels.theory["spin"] == "noncollinear" and labels.theory["noncollinear_xc"] == "ncol"
    assert labels.theory["hamiltonian"].startswith("x2c1e spin-orbit")


def test_kramers_pairs_and_4p_spin_orbit_splitting(labels):
    """Occupied levels come in degenerate Kramers pairs; the HBr pi level (Br 4p) splits into pi_3/2 (HOMO) and
    pi_1/2 by a few tenths of an eV (HBr+ X 2Pi: 0.33 eV measured; Br atom 2P: 0.46 eV)."""
    eps = scipy.linalg.eigh(labels.H, spin_overlap(labels.S), eigvals_only=True)
    n = labels.n_electrons
    np.testing.assert_allclose(eps[0:n:2], eps[1:n:2], atol=1e-8)
    split_eV = (eps[n - 1] - eps[n - 3]) * HARTREE_TO_EV
    assert 0.1 < split_eV < 0.6
    assert labels.fermi_energy == pytest.approx(0.5 * (eps[n - 1] + eps[n]))


def test_labels_through_deeph_dock(tmp_path, labels):
    symbols = HBR.symbols
    basis = OrbitalBasis.from_pyscf("sto-3g", symbols)
    matrices = {"overlap": dense_to_dict(labels.S, basis, symbols),
                "hamiltonian": spinful_dense_to_dict(labels.H, basis, symbols),
                "density_matrix": spinful_dense_to_dict(labels.D, basis, symbols)}
    theory = {k: v for k, v in labels.theory.items() if k != "basis"}  # the record's basis.name holds the basis
    record = DeepHRecord(HBR, basis, matrices, labels.fermi_energy, theory, spinful=True)
    back = read_deeph_dock(write_deeph_dock(tmp_path / "hbr", record))
    assert back.dft == theory and back.basis.name == labels.theory["basis"]
    assert spin_treatment(back.spinful, back.matrices["hamiltonian"]) == "noncollinear"
    H = spinful_dict_to_dense(back.matrices["hamiltonian"], basis, symbols)
    np.testing.assert_allclose(H, labels.H, rtol=1e-15, atol=1e-300)
    np.testing.assert_array_equal(spinful_dict_to_dense(back.matrices["density_matrix"], basis, symbols), labels.D)

"""The project's orbital order and rotation convention on real PySCF matrices with s, p and d shells.

For a rotated molecule, PySCF's matrices in internal order must equal D M D^T, with D from
``OrbitalBasis.rotation_matrix``: exactly for the overlap and core Hamiltonian, up to the (lab-fixed)
integration grid for the Kohn-Sham Fock matrix.
"""
import numpy as np
import pytest
from pyscf import dft, gto
from scipy.spatial.transform import Rotation

from elct_jax.geometry.basis import OrbitalBasis

SYMBOLS = ("O", "H", "H")
POSITIONS = np.array([[0.00, 0.00, 0.12], [0.77, 0.05, -0.47], [-0.74, -0.08, -0.50]])  # Angstrom
ROTATION = Rotation.from_euler("zyx", [37.0, -71.0, 123.0], degrees=True).as_matrix()


@pytest.fixture(scope="module")
def basis():
    basis = OrbitalBasis.from_pyscf("def2-svp", SYMBOLS)
    assert basis.shells["O"] == (0, 0, 0, 1, 1, 2)  # s, p and d present
    return basis


def _mol(positions):
    return gto.M(atom=list(zip(SYMBOLS, positions)), basis="def2-svp", unit="Angstrom", verbose=0)


def _internal(basis, matrix):
    return basis.to_internal(np.asarray(matrix), SYMBOLS, "pyscf")


@pytest.mark.parametrize("q", [ROTATION, -ROTATION], ids=["rotation", "rotation+inversion"])
def test_overlap_and_core_hamiltonian_rotate_exactly(basis, q):
    mol, mol_q = _mol(POSITIONS), _mol(POSITIONS @ q.T)
    d = basis.rotation_matrix(SYMBOLS, q)
    for integral in ("int1e_ovlp", "int1e_kin", "int1e_nuc"):
        m, m_q = _internal(basis, mol.intor(integral)), _internal(basis, mol_q.intor(integral))
        assert np.abs(m).max() > 0.5
        np.testing.assert_allclose(m_q, d @ m @ d.T, atol=1e-10, err_msg=integral)
    # and the PySCF order itself would NOT rotate this way (the p-shell permutation matters)
    s, s_q = mol.intor("int1e_ovlp"), mol_q.intor("int1e_ovlp")
    assert np.abs(s_q - d @ s @ d.T).max() > 1e-2


def _fock(positions, level):
    mf = dft.RKS(_mol(positions), xc="pbe")
    mf.grids.level = level
    mf.conv_tol, mf.conv_tol_grad = 1e-13, 1e-9
    mf.kernel()
    assert mf.converged
    return mf.get_fock()


@pytest.mark.slow  # two grid-level-7 PySCF SCFs: ~1-4 min on 2 cores
def test_fock_rotates_up_to_grid_error(basis):
    """PBE Fock matrix at grid level 7: rotation with inversion equal to D F D^T to 1e-7 Hartree."""
    q = -ROTATION
    f, f_q = _internal(basis, _fock(POSITIONS, 7)), _internal(basis, _fock(POSITIONS @ q.T, 7))
    d = basis.rotation_matrix(SYMBOLS, q)
    np.testing.assert_allclose(f_q, d @ f @ d.T, atol=1e-7)

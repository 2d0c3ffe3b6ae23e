"""System construction from PySCF objects, symbols and ASE; AO layout; padding; input errors."""
import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import ao2mo, dft, gto, scf

from ai2dft.energy import energy
from ai2dft.pyscf_bridge import element_shells
from ai2dft.system import System, pad_system
from ai2dft.units import PAD_LEVEL_HARTREE
from molecules import mole, rks

H2O_SYMBOLS = ["O", "H", "H"]
H2O_POSITIONS = [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]  # Angstrom


@pytest.fixture(scope="module")
def h2o_pbe():
    return rks("H2O", "pbe")


@pytest.fixture(scope="module")
def from_symbols():
    return System.from_symbols(H2O_SYMBOLS, H2O_POSITIONS, "def2-svp", "PBE")


def test_from_symbols_reproduces_pyscf_energy(from_symbols, h2o_pbe):
    """Symbols + positions + basis + xc build PySCF's default grid and auxiliary basis: the energy at
    the DF-RKS density is mf.e_tot, and S, hcore, cderi equal PySCF's."""
    mf = h2o_pbe
    system = from_symbols
    assert system.xc == "pbe,pbe" and system.smearing_kind == "fermi" and float(system.sigma) == 0.0
    assert float(system.n_electrons) == 10.0
    np.testing.assert_allclose(np.asarray(system.overlap), mf.get_ovlp(), atol=1e-12)
    np.testing.assert_allclose(np.asarray(system.hcore), mf.get_hcore(), atol=1e-10)
    L = np.asarray(system.cderi)
    eri = np.einsum("pij,pkl->ijkl", L, L)
    np.testing.assert_allclose(eri, ao2mo.restore(1, mf.with_df.get_ao_eri(), system.n_ao), atol=1e-10)
    assert abs(float(jax.jit(energy)(system, jnp.asarray(mf.make_rdm1()))) - mf.e_tot) < 1e-8


def test_from_ase_equals_from_symbols(from_symbols):
    atoms = ase.Atoms(symbols=H2O_SYMBOLS, positions=H2O_POSITIONS)
    system = System.from_ase(atoms, "def2-svp", "pbe")
    for a, b in zip(jax.tree.leaves(system), jax.tree.leaves(from_symbols)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_from_pyscf_takes_grid_auxbasis_and_xc_from_the_object():
    mf = dft.RKS(mole("NH3"), xc="svwn").density_fit(auxbasis="def2-universal-jkfit")
    mf.grids.level = 1
    system = System.from_pyscf(mf)
    assert system.xc == "lda,vwn"
    assert system.ao_grad.shape == (3, 0, system.n_ao)  # LDA: no AO gradients stored
    assert system.weights.shape == mf.grids.weights.shape
    np.testing.assert_array_equal(np.asarray(system.weights), mf.grids.weights)
    assert system.cderi.shape[0] == mf.with_df.auxmol.nao
    overridden = System.from_pyscf(mf, xc="pbe", grid_level=2, auxbasis="def2-universal-jfit")
    assert overridden.xc == "pbe,pbe" and overridden.ao_grad.shape == (3,) + overridden.ao.shape
    assert overridden.weights.shape[0] > system.weights.shape[0]
    assert overridden.cderi.shape[0] != system.cderi.shape[0]


def test_ao_layout_matches_pyscf_labels_and_basis_shells():
    mol = mole("NH3")
    system = System.from_pyscf(mol, xc="lda,vwn")
    labels = mol.ao_labels(fmt=False)  # (atom, symbol, shell like '2p', component like 'x')
    np.testing.assert_array_equal(np.asarray(system.ao_atom), [lab[0] for lab in labels])
    ls = np.asarray(system.ao_l)
    np.testing.assert_array_equal(ls, ["spdfg".index(lab[2][-1]) for lab in labels])
    p_m = np.asarray(system.ao_m)[ls == 1]
    p_labels = [lab[3] for lab in labels if lab[2].endswith("p")]
    np.testing.assert_array_equal(p_m, [{"x": 1, "y": -1, "z": 0}[c] for c in p_labels])
    for atom, symbol in enumerate(["N", "H", "H", "H"]):
        on_atom = ls[np.asarray(system.ao_atom) == atom]
        assert len(on_atom) == sum(2 * l + 1 for l in element_shells("def2-svp", symbol))
    assert system.n_ao == system.n_ao_real == mol.nao


def test_system_is_a_pytree_with_static_metadata(from_symbols):
    leaves, treedef = jax.tree.flatten(from_symbols)
    assert len(leaves) == 13 and all(isinstance(x, jax.Array) for x in leaves)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert rebuilt.xc == "pbe,pbe" and rebuilt.smearing_kind == "fermi"
    lda = System.from_pyscf(mole("H2O"), xc="lda,vwn")
    assert jax.tree.structure(lda) != treedef  # the functional is part of the static structure


def test_pad_system_layout(from_symbols):
    system = from_symbols
    nao, ngrid, naux = system.n_ao, system.weights.shape[0], system.cderi.shape[0]
    padded = pad_system(system, nao + 3, ngrid + 10, naux + 2)
    S = np.asarray(padded.overlap)
    np.testing.assert_array_equal(S[nao:, nao:], np.eye(3))
    assert np.all(S[:nao, nao:] == 0.0) and np.all(S[nao:, :nao] == 0.0)
    np.testing.assert_array_equal(np.diag(np.asarray(padded.hcore))[nao:], PAD_LEVEL_HARTREE)
    assert np.all(np.asarray(padded.ao)[:, nao:] == 0.0) and np.all(np.asarray(padded.ao)[ngrid:] == 0.0)
    assert padded.ao_grad.shape == (3, ngrid + 10, nao + 3)
    assert np.all(np.asarray(padded.weights)[ngrid:] == 0.0)
    assert padded.cderi.shape == (naux + 2, nao + 3, nao + 3)
    np.testing.assert_array_equal(np.asarray(padded.ao_mask), [1.0] * nao + [0.0] * 3)
    np.testing.assert_array_equal(np.asarray(padded.ao_atom)[nao:], -1)
    assert padded.n_ao == nao + 3 and padded.n_ao_real == nao
    with pytest.raises(ValueError, match="cannot pad ngrid from"):
        pad_system(system, nao, ngrid - 1, naux)


# --- input errors -------------------------------------------------------------------------------


def test_unknown_element_for_basis():
    with pytest.raises(ValueError, match="basis '6-31g' has no functions for element 'Rb'"):
        System.from_symbols(["Rb", "H"], [[0, 0, 0], [0, 0, 2.0]], "6-31g", "pbe")


def test_odd_electron_count():
    with pytest.raises(ValueError, match=r"9 electrons \(charge 1\).*even number of electrons.*charge 0 or 2"):
        System.from_symbols(H2O_SYMBOLS, H2O_POSITIONS, "def2-svp", "pbe", charge=1)
    open_shell = gto.M(atom="O 0 0 0; O 0 0 1.21", basis="def2-svp", spin=2, verbose=0)
    with pytest.raises(ValueError, match="spin = 2"):
        System.from_pyscf(open_shell, xc="pbe")


def test_overlapping_atoms():
    positions = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.96], [0.0, 0.0, 0.99]]
    with pytest.raises(ValueError, match=r"atoms 1 \(H\) and 2 \(H\) are 0.0300 Angstrom apart"):
        System.from_symbols(H2O_SYMBOLS, positions, "def2-svp", "pbe")


def test_overlap_not_positive_definite():
    """Two identical s shells on one atom make S singular."""
    shell = [0, [1.2, 1.0]]
    mol = gto.M(atom="H 0 0 0; H 0 0 0.74", basis={"H": [shell, shell]}, verbose=0)
    with pytest.raises(ValueError, match=r"S is not positive definite: smallest eigenvalue .*e-1\d"):
        System.from_pyscf(mol, xc="lda,vwn")


def test_bad_arguments():
    # functionals the layer does not implement are refused at construction, named with their kind and
    # the supported list (global hybrids included)
    for xc, kind in (("tpss", "a meta-GGA"), ("wb97x", "range-separated"), ("wb97m_v", "non-local")):
        with pytest.raises(ValueError, match=rf"'{xc}' is [^:]*{kind}[^:]*: unsupported exchange-correlation functional "
                                             rf"'{xc}'.*global hybrids \['b3lyp', 'b3lyp5', 'pbe0'\]"):
            System.from_pyscf(dft.RKS(mole("H2O"), xc=xc))
    with pytest.raises(ValueError, match="xc is required"):
        System.from_pyscf(mole("H2O"))
    with pytest.raises(TypeError, match="restricted Kohn-Sham object.*got RHF"):
        System.from_pyscf(scf.RHF(mole("H2O")))
    with pytest.raises(ValueError, match="unknown smearing 'cold'"):
        System.from_pyscf(mole("H2O"), xc="pbe", smearing=("cold", 0.01))
    with pytest.raises(ValueError, match="positions must have shape"):
        System.from_symbols(H2O_SYMBOLS, [[0.0, 0.0, 0.0]], "def2-svp", "pbe")

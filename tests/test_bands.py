"""Band structures: the code path against PySCF's own k-space matrices and band energies, sparse
shift-invert against dense, inertia band indices, Fermi level, DOS, path, files and the CLI."""
import json

import jax
import numpy as np
import pytest
import scipy.linalg

from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell
from ai2dft.pyscf_bridge.overlap import pair_overlaps, valence_electrons
from elct_jax.analysis.bands import (HEXAGONAL_POINTS, BandSolver, ShiftInvert, band_path, dos, fermi_level, plot_bands,
                            save_bands)
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.geometry.graph import neighbor_pairs
from elct_jax.hamiltonian.sparse import pyscf_to_internal, sparse_from_basis
from crystals import GRAPHENE_A, graphene_supercell

BASIS = "gth-szv"


def real_space(structure, intor, cutoff=11.0):
    """Two-centre integral matrix M(R) (internal order) on all pairs within ``cutoff``."""
    basis = OrbitalBasis.from_pyscf(BASIS, structure.symbols)
    i, j, R = neighbor_pairs(structure, cutoff)
    onsite, blocks = pair_overlaps(structure.symbols, structure.positions_ang, structure.lattice_ang, BASIS,
                                   i, j, R, intor=intor)
    return pyscf_to_internal(basis, structure.symbols, sparse_from_basis(basis, structure.symbols, onsite, i, j, R, blocks))


@pytest.fixture(scope="module")
def crystal():
    """Displaced 2x2 graphene (8 C, 32 AOs); H := kinetic energy T(R) (any Hermitian operator with
    PySCF lattice sums to compare with), S(R) overlaps."""
    s = graphene_supercell((2, 2, 1))
    return s, BandSolver(real_space(s, "int1e_kin"), real_space(s, "int1e_ovlp"))


@pytest.fixture(scope="module")
def path(crystal):
    return band_path(crystal[0].lattice_ang, crystal[0].pbc, npoints=7)


def test_bands_equal_eigenvalues_of_pyscf_lattice_sums(crystal, path):
    s, solver = crystal
    cell = build_cell(s, DFTSettings(basis=BASIS, xc="lda", kmesh=(1, 1, 1)))
    kabs = cell.get_abs_kpts(path.kpts_frac)
    T = cell.pbc_intor("int1e_kin", hermi=1, kpts=kabs)
    S = cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kabs)
    ref = np.array([scipy.linalg.eigh(t, o, eigvals_only=True) for t, o in zip(T, S)])
    bands = solver.bands(path.kpts_frac, None, None, solver="dense")
    assert bands.energies.shape == (7, 32)
    assert np.abs(bands.energies - ref).max() < 1e-6  # PySCF's lattice sums stop at precision 1e-8
    assert np.ptp(ref[:, 0]) > 1e-3  # the path really disperses


def test_shift_invert_equals_dense_with_inertia_band_indices(crystal, path):
    _, solver = crystal
    dense = solver.bands(path.kpts_frac, None, None, solver="dense")
    sigma = float(np.median(dense.energies)) + 1e-3
    sparse = solver.bands(path.kpts_frac, 6, sigma, solver="sparse")
    assert np.all(np.diff(sparse.energies, axis=1) >= 0)
    for k in range(len(path.x)):  # band indices from the LDL^T inertia pick the right dense levels
        assert sparse.band_index[k].min() >= 0
        assert np.abs(dense.energies[k, sparse.band_index[k]] - sparse.energies[k]).max() < 1e-8
        window = solver.bands(path.kpts_frac[k], 6, sigma, solver="dense")
        assert np.abs(window.energies[0] - sparse.energies[k]).max() < 1e-8


def test_inertia_count_equals_number_of_levels_below_shift(crystal):
    _, solver = crystal
    for k in ([0.0, 0.0, 0.0], [0.2, 0.1, 0.0]):
        hk, sk = solver.matrices(k)
        levels = scipy.linalg.eigh(hk.toarray(), sk.toarray(), eigvals_only=True)
        for sigma in (levels[3] - 1e-4, 0.5 * (levels[10] + levels[11]), levels[-1] + 1.0):
            assert ShiftInvert(hk, sk, sigma).n_below == int(np.sum(levels < sigma))


def test_sparse_fermi_level_equals_dense(crystal):
    _, solver = crystal
    mesh = np.array([[a / 3, b / 3, 0.0] for a in range(3) for b in range(3)])
    n_el = valence_electrons(crystal[0].symbols, BASIS, "lda")
    assert n_el == 32
    for kpts in (mesh, np.zeros((1, 3))):
        dense = fermi_level(solver, n_el, kpts, method="dense")
        levels = np.sort(np.concatenate([solver.bands(k, None, None, "dense").energies[0] for k in kpts]))
        assert levels[n_el // 2 * len(kpts) - 1] <= dense <= levels[n_el // 2 * len(kpts)]
        assert abs(fermi_level(solver, n_el, kpts, method="sparse", nbands=6) - dense) < 1e-10
    with pytest.raises(ValueError, match="even"):
        fermi_level(solver, 31)


def test_graphene_path_and_dos(path):
    assert path.labels == ("G", "M", "K", "G")
    assert len(path.x) == 7 and np.all(np.diff(path.x) >= 0)
    lattice = graphene_supercell((1, 1, 1), sigma=0.0).lattice_ang
    reciprocal = 2 * np.pi * np.linalg.inv(lattice).T
    for special in (None, HEXAGONAL_POINTS):  # ASE's hexagonal points and ours name the same K, M
        k, m = (band_path(lattice, (True, True, False), p, npoints=1, special_points=special).kpts_frac[0]
                for p in ("K", "M"))
        assert np.isclose(np.linalg.norm(k @ reciprocal), 4 * np.pi / (3 * GRAPHENE_A))  # BZ corner
        assert np.isclose(np.linalg.norm(m @ reciprocal), 2 * np.pi / (np.sqrt(3) * GRAPHENE_A))  # edge centre
    energies = np.array([[0.0, 0.1], [0.05, 0.2]])
    grid = np.linspace(-1.0, 1.5, 5001)
    g = dos(energies, grid, 0.01)
    assert abs(np.trapezoid(g, grid) - 4.0) < 1e-6  # 2 bands x 2 spins per cell
    with pytest.raises(ValueError, match="molecule"):
        band_path(None)


def test_files_and_plot_join_bands_by_index(crystal, path, tmp_path):
    _, solver = crystal
    bands = solver.bands(path.kpts_frac, 4, 1.0, solver="sparse")
    save_bands(tmp_path / "b.npz", path, bands)
    plot_bands(path, bands, tmp_path / "b.png", title="test")
    data = np.load(tmp_path / "b.npz", allow_pickle=False)
    assert np.array_equal(data["band_index"], bands.band_index)
    assert np.allclose(data["energies_hartree"], bands.energies)
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_sparse_solver_needs_a_shift(crystal):
    with pytest.raises(ValueError, match="sigma"):
        crystal[1].bands(np.zeros((1, 3)), 4, None, solver="sparse")


def test_elct_bands_command(tmp_path):
    """End to end: a run directory (random float64 tiny model), a POSCAR, ``elct bands``."""
    from elct_jax.cli.main import build_parser
    from elct_jax.config import DataConfig, OptimConfig, RunConfig, preset
    from elct_jax.data.loader import species_index
    from elct_jax.geometry.graph import neighbor_graph
    from elct_jax.nn.model import make_predict_fn
    from elct_jax.train.checkpoint import Checkpointer
    from elct_jax.train.optim import make_optimizer
    from elct_jax.train.run import save_model_info
    from elct_jax.train.step import init_state

    basis = OrbitalBasis.from_pyscf(BASIS, ["C"])
    config = RunConfig(data=DataConfig(cutoff_ang=3.0), model=preset("tiny", dtype="float64", l_max=2))
    init, _ = make_predict_fn(config.model, basis)
    s = graphene_supercell((2, 2, 1))
    params = jax.jit(init)(jax.random.PRNGKey(0), neighbor_graph(s, 3.0, species_index(basis)))  # eager: slower
    run = tmp_path / "run"
    save_model_info(run, config, basis)
    ckpt = Checkpointer(run)
    ckpt.save(0, init_state(params, make_optimizer(OptimConfig(), 1)))
    ckpt.close()
    s.to_ase().write(tmp_path / "POSCAR", format="vasp")
    args = build_parser().parse_args(["bands", "--checkpoint", str(run), "--structure", str(tmp_path / "POSCAR"),
                              "--npoints", "5", "--nbands", "6", "--solver", "sparse", "--out", str(tmp_path / "out")])
    args.func(args)
    summary = json.loads((tmp_path / "out" / "bands.json").read_text())
    data = np.load(tmp_path / "out" / "bands.npz", allow_pickle=False)
    assert summary["n_electrons"] == 32 and summary["n_ao"] == 32
    assert data["energies_hartree"].shape == (len(data["x"]), 6) and len(data["x"]) >= 5
    assert np.all(data["band_index"] >= 0)
    # the Fermi level from the electron count sits between the 16th and 17th level at Gamma
    gamma = np.flatnonzero(np.all(data["kpts_frac"] == 0, axis=1))[0]
    e, idx = data["energies_hartree"][gamma], data["band_index"][gamma]
    fermi = float(data["fermi_hartree"])
    assert np.all(e[idx <= 15] <= fermi + 1e-12) and np.all(e[idx >= 16] >= fermi - 1e-12)


@pytest.mark.slow
def test_bands_of_pyscf_kohn_sham_h_equal_pyscf_get_bands():
    """The code path on a real LDA Hamiltonian: H(R), S(R) from crystal_labels (graphene primitive
    cell, gth-szv, 60 Ha) through SparseBlocks + BandSolver give PySCF's own get_bands energies."""
    from ai2dft.pyscf_bridge.labels import _krks, crystal_labels
    from elct_jax.hamiltonian.sparse import SparseBlocks

    s = graphene_supercell((1, 1, 1), sigma=0.03, seed=3)
    settings = DFTSettings(basis=BASIS, xc="lda", kmesh=(3, 3, 1), ke_cutoff_Ha=60, smearing=("fermi", 0.01))
    labels = crystal_labels(s, settings)
    basis = OrbitalBasis.from_pyscf(BASIS, s.symbols)
    h = pyscf_to_internal(basis, s.symbols, SparseBlocks.from_dict(labels.H, [4, 4]))
    o = pyscf_to_internal(basis, s.symbols, SparseBlocks.from_dict(labels.S, [4, 4]))
    path = band_path(s.lattice_ang, s.pbc, npoints=8)
    mf = _krks(build_cell(s, settings), settings)
    mf.kernel()
    ref = np.sort(np.asarray(mf.get_bands(mf.cell.get_abs_kpts(path.kpts_frac))[0]), axis=1)
    bands = BandSolver(h, o).bands(path.kpts_frac, None, None, solver="dense")
    assert np.abs(bands.energies - ref).max() < 1e-6
    sparse = BandSolver(h, o).bands(path.kpts_frac, 2, labels.fermi_energy, solver="sparse")
    for k in range(len(path.x)):
        assert np.abs(ref[k, sparse.band_index[k]] - sparse.energies[k]).max() < 1e-6


def test_elct_bands_reads_a_deeph_folder(crystal, path, tmp_path):
    """`elct bands --folder`: H(R), S(R) and the occupation of a DeepH-dock folder (as `elct predict` writes
    it) give the bands of PySCF's lattice sums and the Fermi level of the stored electron count."""
    from elct_jax.cli.main import main
    from elct_jax.data.deeph_dock import DeepHRecord, write_deeph_dock

    s, _ = crystal
    basis = OrbitalBasis.from_pyscf(BASIS, s.symbols)
    matrices = {"hamiltonian": real_space(s, "int1e_kin").to_dict(), "overlap": real_space(s, "int1e_ovlp").to_dict()}
    write_deeph_dock(tmp_path / "folder", DeepHRecord(s, basis, matrices, dft={"n_electrons": 32}))
    assert main(["bands", "--folder", str(tmp_path / "folder"), "--out", str(tmp_path / "out"), "--npoints", "7",
                 "--nbands", "0"]) == 0
    data = np.load(tmp_path / "out" / "bands.npz", allow_pickle=False)
    cell = build_cell(s, DFTSettings(basis=BASIS, xc="lda", kmesh=(1, 1, 1)))
    kabs = cell.get_abs_kpts(data["kpts_frac"])
    T = cell.pbc_intor("int1e_kin", hermi=1, kpts=kabs)
    S = cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kabs)
    ref = np.array([scipy.linalg.eigh(t, o, eigvals_only=True) for t, o in zip(T, S)])
    assert np.abs(data["energies_hartree"] - ref).max() < 1e-6
    assert json.loads((tmp_path / "out" / "bands.json").read_text())["n_electrons"] == 32
    fermi, gamma = float(data["fermi_hartree"]), ref[np.flatnonzero(np.all(data["kpts_frac"] == 0, axis=1))[0]]
    assert gamma[15] <= fermi + 1e-12 and gamma[16] >= fermi - 1e-12
    assert main(["bands", "--folder", str(tmp_path / "folder"), "--model", "x", "--out", str(tmp_path / "o2")]) != 0

"""Bad input gives a clear error naming the problem (issue 17): the free energy's H, DeepH folders, run configs.

Real small systems only: H2O and H2 in PySCF's sto-3g (LDA), each made bad in one way per check.
"""
import re
import shutil

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto

import ai2dft
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.data import DeepHFormatError, DeepHRecord, read_deeph_dock, write_deeph_dock, write_deeph_legacy
from elct_jax.data.dataset_dir import dataset_folders, read_dataset, read_record
from elct_jax.hamiltonian.blocks import dense_to_dict
from elct_jax.geometry.structure import Structure
from elct_jax.config import RunConfig, load_run_config

WATER = (("O", "H", "H"), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
HYDROGEN = (("H", "H"), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.74]]))


def lda_sto3g(symbols, positions):
    mol = gto.M(atom=list(zip(symbols, positions.tolist())), basis="sto-3g", verbose=0)
    mf = dft.RKS(mol, xc="lda,vwn").density_fit()
    mf.conv_tol = 1e-10
    mf.kernel()
    assert mf.converged
    return mf


@pytest.fixture(scope="module")
def water():
    """(converged RKS, its System, its Fock matrix [7, 7] Hartree)."""
    mf = lda_sto3g(*WATER)
    return mf, ai2dft.System.from_pyscf(mf), np.asarray(mf.get_fock())


@pytest.fixture(scope="module")
def records():
    """DeepH records of H2O and H2 with overlap, Hamiltonian and density matrix (Hartree, internal order)."""
    out = []
    for symbols, positions in (WATER, HYDROGEN):
        mf = lda_sto3g(symbols, positions)
        basis = OrbitalBasis.from_pyscf("sto-3g", symbols)
        dense = {"overlap": mf.get_ovlp(), "hamiltonian": mf.get_fock(), "density_matrix": mf.make_rdm1()}
        out.append(DeepHRecord(Structure(symbols, positions), basis,
                               {name: dense_to_dict(m, basis, symbols) for name, m in dense.items()}))
    return out


# ---------------------------------------------------------------- ai2dft.free_energy


def test_free_energy_accepts_the_scf_fock_matrix_eagerly_and_under_jit(water):
    mf, system, F = water
    assert abs(float(ai2dft.free_energy(system, jnp.asarray(F))) - mf.e_tot) < 1e-8
    omega, grad = jax.jit(jax.value_and_grad(ai2dft.free_energy, argnums=1))(system, jnp.asarray(F))
    assert abs(float(omega) - mf.e_tot) < 1e-8 and float(jnp.max(jnp.abs(grad))) < 1e-5


def test_free_energy_rejects_a_non_hermitian_h(water):
    _, system, F = water
    bad = F.copy()
    bad[1, 3] += 0.1
    with pytest.raises(ValueError, match=r"H is not Hermitian: max \|H - H\^H\| = 1.000e-01"):
        ai2dft.free_energy(system, jnp.asarray(bad))
    # inside jit H is a tracer: no value check (it would cost the compiled step a host sync)
    assert np.isfinite(float(jax.jit(ai2dft.free_energy)(system, jnp.asarray(bad))))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_free_energy_rejects_non_finite_h(water, value):
    _, system, F = water
    bad = F.copy()
    bad[2, 2] = value
    with pytest.raises(ValueError, match="H has 1 non-finite entries"):
        ai2dft.free_energy(system, jnp.asarray(bad))


def test_free_energy_rejects_a_complex_h_for_a_molecule_also_under_jit(water):
    _, system, F = water
    message = r"H is complex \(complex128\), but a molecular System takes a real symmetric H"
    with pytest.raises(ValueError, match=message):
        ai2dft.free_energy(system, jnp.asarray(F, dtype=jnp.complex128))
    with pytest.raises(ValueError, match=message):  # the dtype is static: checked while tracing
        jax.jit(ai2dft.free_energy)(system, jnp.asarray(F, dtype=jnp.complex128))
    with pytest.raises(ValueError, match=message):
        ai2dft.density_matrix(system, jnp.asarray(F, dtype=jnp.complex128))


# ---------------------------------------------------------------- DeepH folders


def test_folder_with_deeph_files_but_no_structure_file_is_named(tmp_path, records):
    water, hydrogen = records
    write_deeph_dock(tmp_path / "data" / "ok", water)
    write_deeph_dock(tmp_path / "data" / "unlabelled", DeepHRecord(hydrogen.structure, hydrogen.basis, {}))
    assert dataset_folders(tmp_path / "data") == [tmp_path / "data" / "ok", tmp_path / "data" / "unlabelled"]
    assert [set(r.matrices) for r in read_dataset(tmp_path / "data")] == [set(water.matrices), set()]
    (write_deeph_dock(tmp_path / "data" / "sub" / "h2", hydrogen) / "POSCAR").unlink()
    with pytest.raises(DeepHFormatError, match=r"data/sub/h2: has \['density_matrix.h5', 'hamiltonian.h5', "
                       r"'info.json', 'overlap.h5'\] but no POSCAR \(DeepH-dock\) or lat.dat \(legacy DeepH\)"):
        dataset_folders(tmp_path / "data")
    shutil.rmtree(tmp_path / "data" / "sub")
    (write_deeph_legacy(tmp_path / "data" / "legacy", hydrogen) / "lat.dat").unlink()
    with pytest.raises(DeepHFormatError, match=r"data/legacy: has \['density_matrices.h5', 'hamiltonians.h5', "
                       r"'info.json', 'overlaps.h5'\] but no POSCAR"):
        read_dataset(tmp_path / "data")


def test_required_matrix_file_missing_names_file_and_folder(tmp_path, records):
    water, hydrogen = records
    dock = write_deeph_dock(tmp_path / "dock", water)
    (dock / "hamiltonian.h5").unlink()
    assert set(read_record(dock).matrices) == {"overlap", "density_matrix"}  # optional unless required
    with pytest.raises(DeepHFormatError, match=rf"{re.escape(str(dock))}: file\(s\) \['hamiltonian.h5'\] missing; "
                       "needed: the hamiltonian, overlap matrices"):
        read_record(dock, require=("hamiltonian", "overlap"))
    legacy = write_deeph_legacy(tmp_path / "data" / "legacy", hydrogen)
    (legacy / "overlaps.h5").unlink()
    with pytest.raises(DeepHFormatError, match=rf"{re.escape(str(legacy))}: file\(s\) \['overlaps.h5'\] missing"):
        read_dataset(tmp_path / "data", require=("hamiltonian", "overlap"))


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_non_finite_matrix_entries_name_file_folder_and_block(tmp_path, records, value):
    water, hydrogen = records
    dock = write_deeph_dock(tmp_path / "dock", water)
    with h5py.File(dock / "hamiltonian.h5", "r+") as f:
        f["entries"][len(f["entries"]) - 1] = value  # last entry of the last block, H-H
        last = tuple(int(v) for v in f["atom_pairs"][-1])
    assert last == (0, 0, 0, 2, 2)
    with pytest.raises(DeepHFormatError, match=rf"{re.escape(str(dock))}/hamiltonian.h5: 1 non-finite \(NaN/Inf\) "
                       r"entries, the first in block \(0, 0, 0, 2, 2\)"):
        read_deeph_dock(dock)
    legacy = write_deeph_legacy(tmp_path / "legacy", hydrogen)
    with h5py.File(legacy / "overlaps.h5", "r+") as f:
        f["[0, 0, 0, 1, 2]"][0, 0] = value
    with pytest.raises(DeepHFormatError,
                       match=rf"{re.escape(str(legacy))}/overlaps.h5: block \[0, 0, 0, 1, 2\] has 1 non-finite"):
        read_record(legacy)


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[:9], "not a readable POSCAR"),                              # positions cut off
    (lambda lines: lines[:9] + ["0 abc -0.4692"] + lines[10:], "not a readable POSCAR"),
    (lambda lines: lines[:9] + ["0 nan -0.4692"] + lines[10:], "positions_ang contains non-finite values"),
])
def test_malformed_poscar_is_named(tmp_path, records, edit, message):
    dock = write_deeph_dock(tmp_path / "dock", records[0])
    lines = (dock / "POSCAR").read_text().splitlines()
    assert lines[5:8] == ["O H", "1 2", "Cartesian"]
    (dock / "POSCAR").write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(DeepHFormatError, match=rf"{re.escape(str(dock))}/POSCAR: {message}"):
        read_record(dock)


# ---------------------------------------------------------------- `elct train` config


def test_misspelt_model_key_is_named_like_other_sections(tmp_path):
    assert RunConfig.from_dict({"model": {"preset": "tiny", "channels": 4}}).model.channels == 4
    toml = tmp_path / "run.toml"
    toml.write_text('[data]\npath = "data"\n\n[model]\npreset = "tiny"\nchanels = 4\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['chanels'\] in \[model\]; allowed: \[.*'channels'"):
        load_run_config(toml)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['cutof'\] in \[model.radial\]"):
        RunConfig.from_dict({"model": {"radial": {"cutof": 4.0}}})


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_batch_size_must_be_a_positive_integer(tmp_path, batch_size):
    assert RunConfig.from_dict({"data": {"batch_size": 3}}).data.batch_size == 3
    toml = tmp_path / "run.toml"
    toml.write_text(f'[data]\npath = "data"\nbatch_size = {batch_size}\n')
    with pytest.raises(ValueError, match=rf"data.batch_size must be a positive integer, got {batch_size}"):
        load_run_config(toml)


def test_run_settings_are_checked_when_the_config_is_read(tmp_path):
    """An unknown preset and a non-positive cutoff are named with their [table] when the TOML is read,
    not after the dataset was loaded."""
    from elct_jax.config import load_run_config

    toml = tmp_path / "run.toml"
    toml.write_text('[data]\npath = "data"\n[model]\npreset = "huge"\n')
    with pytest.raises(ValueError, match=r"unknown preset 'huge' \(\[model\] preset\)"):
        load_run_config(toml)
    toml.write_text('[data]\npath = "data"\ncutoff_ang = 0\n')
    with pytest.raises(ValueError, match="data.cutoff_ang must be a positive number"):
        load_run_config(toml)


def test_missing_model_and_molecule_bands_and_crystal_atoms_outside_the_cell(tmp_path):
    from elct_jax.cli.bands import run_bands_from_folder
    from elct_jax.data.deeph_dock import DeepHRecord, write_deeph_dock
    from elct_jax.geometry.basis import OrbitalBasis
    from elct_jax.geometry.structure import Structure
    from elct_jax.train.saved_model import load_model

    with pytest.raises(FileNotFoundError, match=r"model '.*nowhere' not found: neither a directory"):
        load_model(tmp_path / "nowhere")
    basis = OrbitalBasis.from_pyscf("sto-3g", ["H"])
    h2 = Structure(("H", "H"), [[0, 0, 0], [0, 0, 0.74]])
    blocks = {(0, 0, 0, i, j): np.eye(1) * (i == j) for i in range(2) for j in range(2)}
    folder = write_deeph_dock(tmp_path / "h2", DeepHRecord(h2, basis, {"hamiltonian": blocks, "overlap": blocks},
                                                           dft={"n_electrons": 2}))
    with pytest.raises(ValueError, match=r"h2 is a molecule \(no periodic direction\); elct bands needs a crystal"):
        run_bands_from_folder(folder, tmp_path / "out")
    chain = Structure(("H", "H"), [[-0.3, 0, 0], [0.5, 0, 0]], np.diag([1.6, 10.0, 10.0]), (True, True, True))
    with pytest.warns(UserWarning, match=r"1 atom\(s\) \(first: atom 0\) lie outside the home cell"):
        write_deeph_dock(tmp_path / "chain", DeepHRecord(chain, basis, {"overlap": blocks}))

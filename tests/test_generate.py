"""Dataset generation with real PySCF runs: DeepH-dock round trip against a fresh PySCF calculation,
resuming after a killed run, non-converged and failed SCFs, unaliased crystal H(R) (graphene); the
``elct data generate`` command's exit status and report, its stop on SIGINT / SIGTERM and a killed worker."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import pytest
import scipy.linalg
from pyscf import dft
from pyscf.pbc import dft as pbc_dft
from pyscf.pbc import gto as pbc_gto

from ai2dft.pyscf_bridge.labels import DFTSettings, crystal_labels
from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.cli.main import main
from elct_jax.data import sampling
from elct_jax.analysis.evaluate import band_errors
from elct_jax.config import preset
from elct_jax.data.baseline import BASELINE, add_baseline, baseline_settings
from elct_jax.inference.predict import predict_blocks
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.saved_model import TrainedModel
from elct_jax.data.deeph_dock import read_deeph_dock, write_deeph_dock
from elct_jax.data.generate import MANIFEST, Recipe, generate_dataset, label_record, sample_structure
from elct_jax.geometry.graph import neighbor_graph, pad_to_bucket
from elct_jax.hamiltonian.blocks import block_layout, blocks_from_dict, bloch_sum, dense_to_dict
from elct_jax.geometry.structure import Structure

WATER = Structure(("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
FAST = DFTSettings(basis="sto-3g", xc="lda", grid_level=3)  # LDA/STO-3G water: ~0.3 s per SCF
A = 2.46
GRAPHENE = Structure(("C", "C"), [[0, 0, 5], [A / 2, A / (2 * np.sqrt(3)), 5]],
                     [[A, 0, 0], [A / 2, A * np.sqrt(3) / 2, 0], [0, 0, 10]], (True, True, False))
GRAPHENE_DFT = DFTSettings(basis="gth-szv", xc="lda", kmesh=(3, 3, 1), ke_cutoff_Ha=60,
                           smearing=("fermi", 0.01))


def _status(out_dir) -> dict:
    return json.loads((out_dir / MANIFEST).read_text())["structures"]


def _fresh_rks(structure: Structure, settings: DFTSettings):
    """F(D), S, D of an independent PySCF run, PySCF order."""
    mol = structure.to_ase()
    mf = dft.RKS(pyscf_mole(mol, settings.basis), xc=settings.xc).density_fit()
    mf.grids.level = settings.grid_level
    mf.conv_tol = settings.conv_tol
    mf.kernel()
    dm = mf.make_rdm1()
    return mf.get_fock(dm=dm), mf.get_ovlp(), dm


def pyscf_mole(atoms, basis):
    from pyscf import gto

    return gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)], basis=basis,
                 unit="Angstrom", verbose=0)


def test_generated_water_records_match_fresh_pyscf_and_round_trip(tmp_path, capsys):
    recipe = Recipe("normal_modes", temperature_K=500.0, dft=FAST)
    manifest = generate_dataset(WATER, recipe, tmp_path, n_structures=2, n_workers=0, seed=3, progress=True)
    err = capsys.readouterr().err  # the one slow serial phase says what it does and how long it took
    assert f"computing the Hessian of H2O ({FAST.xc}/{FAST.basis}) (normal modes) ..." in err
    assert re.search(r"Hessian of H2O .* done in \d+\.\d s", err), err
    assert [manifest["structures"][str(i)]["status"] for i in range(2)] == ["done", "done"]
    modes = sampling.NormalModes.load(tmp_path / "normal_modes.npz")
    basis = OrbitalBasis.from_pyscf(FAST.basis, WATER.symbols)
    for i in range(2):
        record = read_deeph_dock(tmp_path / str(i))
        expected = sample_structure(WATER, recipe, sampling.rng_for(3, i), modes)
        np.testing.assert_allclose(record.structure.positions_ang, expected.positions_ang, rtol=0, atol=1e-12)
        assert record.structure.symbols == WATER.symbols and not record.structure.is_periodic
        F, S, D = _fresh_rks(record.structure, FAST)
        for name, ref, tol in (("hamiltonian", F, 1e-8), ("overlap", S, 1e-12), ("density_matrix", D, 1e-7)):
            ref_blocks = dense_to_dict(ref, basis, WATER.symbols, "pyscf")
            assert record.matrices[name].keys() == ref_blocks.keys()
            err = max(np.abs(record.matrices[name][k] - ref_blocks[k]).max() for k in ref_blocks)
            assert err < tol, f"{name} differs from a fresh PySCF run by {err:.2e}"
        assert record.dft["converged"] and record.dft["n_electrons"] == 10
    # in-memory record -> disk -> record is exact
    original, converged = label_record(expected, FAST)
    assert converged
    back = read_deeph_dock(write_deeph_dock(tmp_path / "copy", original))
    np.testing.assert_array_equal(back.structure.positions_ang, original.structure.positions_ang)
    for name, blocks in original.matrices.items():
        assert back.matrices[name].keys() == blocks.keys()
        for key, block in blocks.items():
            np.testing.assert_allclose(back.matrices[name][key], block, rtol=1e-12, atol=1e-14)
    assert abs(back.fermi_energy_hartree - original.fermi_energy_hartree) < 1e-12


_GENERATION_SCRIPT = """
import sys
from elct_jax.geometry.structure import Structure
from elct_jax.data.generate import Recipe, generate_dataset
from ai2dft.pyscf_bridge.labels import DFTSettings

if __name__ == "__main__":
    water = Structure(("O", "H", "H"), {positions})
    recipe = Recipe("random", sigma_ang=0.03, dft=DFTSettings(basis="sto-3g", xc="lda", grid_level=3))
    generate_dataset(water, recipe, sys.argv[1], n_structures=6, n_workers=1, seed=11, progress=False)
"""


def test_killed_generation_resumes_without_recomputing(tmp_path):
    out = tmp_path / "data"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_GENERATION_SCRIPT.format(positions=WATER.positions_ang.tolist())))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / MANIFEST).exists() and any(e["status"] == "done" for e in _status(out).values()):
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the generator and its worker process
        output = proc.communicate()[0].decode()
    before = _status(out)
    done_before = sorted(int(i) for i, e in before.items() if e["status"] == "done")
    assert 1 <= len(done_before) < 6, f"the run was not interrupted mid-way: {before}\n{output}"
    stamps = {i: os.stat(out / str(i) / "hamiltonian.h5") for i in done_before}

    recipe = Recipe("random", sigma_ang=0.03, dft=FAST)
    manifest = generate_dataset(WATER, recipe, out, n_structures=6, n_workers=0, seed=11, progress=False)
    assert all(manifest["structures"][str(i)]["status"] == "done" for i in range(6))
    for i in done_before:  # neither recomputed nor rewritten
        assert manifest["structures"][str(i)] == before[str(i)]
        now = os.stat(out / str(i) / "hamiltonian.h5")
        assert (now.st_mtime_ns, now.st_ino) == (stamps[i].st_mtime_ns, stamps[i].st_ino)
    assert not list(out.glob(".tmp-*"))
    for i in range(6):  # the resumed set is the one an uninterrupted run gives
        expected = sample_structure(WATER, recipe, sampling.rng_for(11, i))
        np.testing.assert_allclose(read_deeph_dock(out / str(i)).structure.positions_ang,
                                   expected.positions_ang, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="different seed"):
        generate_dataset(WATER, recipe, out, n_structures=6, n_workers=0, seed=12, progress=False)


def test_non_converged_scf_is_recorded_and_excluded(tmp_path):
    recipe = Recipe("random", sigma_ang=0.03, dft=DFTSettings(basis="sto-3g", xc="lda", grid_level=3, max_cycle=1))
    generate_dataset(WATER, recipe, tmp_path, n_structures=2, n_workers=0, seed=0, progress=False)
    first = _status(tmp_path)
    assert [first[str(i)]["status"] for i in range(2)] == ["not_converged"] * 2
    assert not (tmp_path / "0").exists() and not (tmp_path / "1").exists()
    generate_dataset(WATER, recipe, tmp_path, n_structures=3, n_workers=0, seed=0, progress=False)
    second = _status(tmp_path)
    assert second["0"] == first["0"] and second["1"] == first["1"]  # not recomputed
    assert second["2"]["status"] == "not_converged"


def test_failed_calculation_is_recorded_with_its_error(tmp_path):
    recipe = Recipe("random", sigma_ang=0.03, dft=DFTSettings(basis="sto-3g", xc="lda", charge=1))
    generate_dataset(WATER, recipe, tmp_path, n_structures=1, n_workers=0, seed=0, progress=False)
    entry = _status(tmp_path)["0"]
    assert entry["status"] == "failed" and "even" in entry["error"] and "9 electrons" in entry["error"]
    assert not (tmp_path / "0").exists()


def test_recipe_must_fit_the_base_structure(tmp_path):
    with pytest.raises(ValueError, match="crystal_random"):
        generate_dataset(WATER, Recipe("crystal_random"), tmp_path, 1, n_workers=0, progress=False)
    with pytest.raises(ValueError, match="unknown recipe kind"):
        Recipe("md")


def test_graphene_real_space_blocks_reproduce_pyscf_bands(tmp_path):
    """Stored H(R), S(R) of a strained, displaced graphene cell -> H(k), S(k) at PySCF's k-points
    (the project's Bloch sum) -> band energies equal to PySCF's get_bands to 1e-6 Ha."""
    recipe = Recipe("crystal_random", sigma_ang=0.03, strain=0.02, dft=GRAPHENE_DFT)
    manifest = generate_dataset(GRAPHENE, recipe, tmp_path, n_structures=1, n_workers=0, seed=0, progress=False)
    assert manifest["structures"]["0"]["status"] == "done", manifest
    record = read_deeph_dock(tmp_path / "0")
    structure = record.structure
    assert structure.pbc == (True, True, False)
    assert record.dft["max_overlap_deviation"] < 1e-7  # PySCF truncates lattice sums at cell.precision 1e-8

    cell = pbc_gto.M(a=structure.lattice_ang, atom=[(s, p) for s, p in zip(structure.symbols, structure.positions_ang)],
                     basis="gth-szv", pseudo="gth-pade", ke_cutoff=GRAPHENE_DFT.ke_cutoff_Ha, unit="Angstrom", verbose=0)
    mf = pbc_dft.KRKS(cell, cell.make_kpts((3, 3, 1)), xc="lda").multigrid_numint().smearing(sigma=0.01, method="fermi")
    mf.conv_tol = 1e-10
    mf.kernel()
    bands_ref = np.array(mf.get_bands(mf.kpts)[0])

    symbols = structure.symbols
    distances = [np.linalg.norm(structure.positions_ang[j] + np.array(R) @ structure.lattice_ang
                                - structure.positions_ang[i]) for (*R, i, j) in record.matrices["overlap"]]
    graph_cutoff = max(distances) + 0.1
    graph = neighbor_graph(structure, graph_cutoff, {el: n for n, el in enumerate(record.basis.elements)})
    layout = block_layout(record.basis, symbols, graph)
    kfrac = cell.get_scaled_kpts(mf.kpts)
    dense = {}
    for name in ("hamiltonian", "overlap"):
        onsite, edges, found = blocks_from_dict(record.matrices[name], record.basis, symbols, graph)
        assert found.sum() + len(symbols) == len(record.matrices[name])  # every stored block is used
        dense[name] = np.asarray(bloch_sum(jnp.asarray(onsite), jnp.asarray(edges), layout, kfrac, order="pyscf"))
    bands = np.array([scipy.linalg.eigh(h, s, eigvals_only=True)
                      for h, s in zip(dense["hamiltonian"], dense["overlap"])])
    err = np.abs(bands - bands_ref).max()
    print(f"graphene: {len(record.matrices['overlap'])} blocks, realspace_kmesh {record.dft['realspace_kmesh']}, "
          f"max |S(R) - direct| {record.dft['max_overlap_deviation']:.1e}, band error {err:.2e} Ha")
    assert err < 1e-6, f"band energies from stored H(R), S(R) differ from PySCF by {err:.2e} Ha"

    # band errors of H + c S: every level and E_F move by c; relative to each one's E_F nothing changed
    shift = 0.01
    shifted = {k: h + shift * record.matrices["overlap"][k] for k, h in record.matrices["hamiltonian"].items()}
    errors = band_errors(shifted, record)
    assert abs(errors.fermi - shift) < 1e-8 and abs(errors.mae - shift) < 1e-8 and errors.worst_aligned < 1e-8

    # the zeroth-step H0(R) = F[D_minao] on the same blocks: its Bloch sums are PySCF's F[D0](k)
    onsite, edges, found = blocks_from_dict(record.matrices[BASELINE], record.basis, symbols, graph)
    assert found.sum() + len(symbols) == len(record.matrices[BASELINE]) == len(record.matrices["hamiltonian"])
    h0_k = np.asarray(bloch_sum(jnp.asarray(onsite), jnp.asarray(edges), layout, kfrac, order="pyscf"))
    scf_mesh = pbc_dft.KRKS(cell, cell.make_kpts(GRAPHENE_DFT.kmesh), xc="lda").multigrid_numint()
    dm0 = scf_mesh.get_init_guess(cell, key="minao")
    h0_ref = np.asarray(mf.get_hcore(cell, mf.kpts) + scf_mesh.get_veff(cell, dm0, kpts=scf_mesh.kpts,
                                                                     kpts_band=mf.kpts))
    assert np.abs(h0_k - h0_ref).max() < 1e-7  # as S(R): lattice sums at cell.precision 1e-8
    assert np.abs(h0_k - dense["hamiltonian"]).max() > 1e-3  # H0 is not the converged H
    # add-h0 on a crystal record without it rebuilds the same blocks (no SCF)
    stored = record.matrices[BASELINE]
    (tmp_path / "0" / f"{BASELINE}.h5").unlink()
    assert add_baseline(tmp_path, progress=False) == 1
    again = read_deeph_dock(tmp_path / "0").matrices[BASELINE]
    assert again.keys() == stored.keys() and max(np.abs(again[k] - stored[k]).max() for k in stored) < 1e-10
    # a crystal model of H - H0 adds a fresh H0(R) to the network's blocks
    settings = baseline_settings(record)
    assert settings["pseudopotential"] == "gth-pade" and settings["kmesh"] == [3, 3, 1]
    config = preset("tiny", dtype="float64", l_max=2)
    init, apply = make_predict_fn(config, record.basis)
    params = jax.jit(init)(jax.random.PRNGKey(0), pad_to_bucket(graph))
    plain = TrainedModel(config, record.basis, float(graph_cutoff), params, apply)
    with_h0 = predict_blocks(dataclasses.replace(plain, baseline=settings), structure)
    without = predict_blocks(plain, structure)
    assert max(np.abs(with_h0[k] - without[k] - stored[k]).max() for k in stored) < 1e-10


def test_aliased_realspace_mesh_is_refused():
    """A 3x3 Born-von Karman supercell cannot hold gth-szv graphene's overlaps: clear error, before any SCF."""
    settings = DFTSettings(basis="gth-szv", xc="lda", kmesh=(3, 3, 1), ke_cutoff_Ha=60, realspace_kmesh=(3, 3, 1))
    with pytest.raises(ValueError, match=r"differ from direct real-space overlaps by [0-9.e-]+.*larger realspace_kmesh"):
        crystal_labels(GRAPHENE, settings)


# ---- the elct data generate command: exit status, report, signals, dead workers (H2 / LiH, STO-3G) ----
H2_XYZ = "2\nH2\nH 0 0 0\nH 0 0 0.74\n"
LIH_XYZ = "2\nLiH\nLi 0 0 0\nH 0 0 1.6\n"
TINY = ["--recipe", "random", "--sigma", "0.02", "--basis", "sto-3g", "--xc", "lda", "--grid-level", "1"]
N_LONG = 16  # structures of the interrupted runs: H2/STO-3G ~0.3 s each after a first one of ~5 s


def _xyz(tmp_path, text: str) -> str:
    path = tmp_path / f"{text.split()[1]}.xyz"
    path.write_text(text)
    return str(path)


def _folders(out) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_dir() and p.name.isdigit()}


def test_cli_lists_every_failed_or_unconverged_structure_and_exits_1(tmp_path, capsys):
    lih, h2 = _xyz(tmp_path, LIH_XYZ), _xyz(tmp_path, H2_XYZ)
    charged = tmp_path / "charged"
    assert main(["data", "generate", lih, "--out", str(charged), "--n", "2", "--workers", "0", "--charge", "1",
                 *TINY]) == 1
    err = capsys.readouterr().err
    for i in range(2):
        assert f"{charged / str(i)}: failed: ValueError: 3 electrons (charge 1): RKS labels need an even count" in err
    stalled = tmp_path / "stalled"
    assert main(["data", "generate", h2, "--out", str(stalled), "--n", "2", "--workers", "0", "--max-cycle", "1",
                 *TINY]) == 1
    out, err = capsys.readouterr()
    assert "0 done, 2 not_converged, 0 failed" in out
    for i in range(2):
        assert f"{stalled / str(i)}: not_converged: SCF not converged after 1 cycles" in err
    assert main(["data", "generate", h2, "--out", str(tmp_path / "good"), "--n", "2", "--workers", "0", *TINY]) == 0
    out, err = capsys.readouterr()
    assert "2 done, 0 not_converged, 0 failed" in out and "failed or did not converge" not in err


@pytest.mark.parametrize("command", [["generate", "STRUCTURE"], ["benchmark", "water-md17"]], ids=" ".join)
def test_cli_n_0_has_nothing_to_do(tmp_path, capsys, command):
    command = [_xyz(tmp_path, H2_XYZ) if word == "STRUCTURE" else word for word in command]
    assert main(["data", *command, "--out", str(tmp_path / "new"), "--n", "0"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()


def _start(tmp_path, out, n_workers: int) -> tuple[subprocess.Popen, object]:
    """``elct data generate`` of N_LONG H2 structures in a new session; returns it once a folder is written."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "elct_jax.cli.main", "data", "generate", _xyz(tmp_path, H2_XYZ),
                             "--out", str(out), "--n", str(N_LONG), "--workers", str(n_workers), *TINY],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out.is_dir() and _folders(out)):
        time.sleep(0.02)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    return proc, log


def _group_processes(pgid: int) -> list:
    alive = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p.cmdline())
    return alive


def _finish(proc: subprocess.Popen, log) -> tuple[int, str, list]:
    """Exit status, stderr and the processes of its group still alive 10 s after it exited (then killed)."""
    try:
        code = proc.wait(timeout=300)
        deadline = time.time() + 10  # multiprocessing's resource tracker exits once its parent has
        while (survivors := _group_processes(proc.pid)) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return code, open(log.name).read(), survivors


@pytest.mark.parametrize("signum, to_group, n_workers", [(signal.SIGTERM, False, 2), (signal.SIGINT, True, 2),
                                                          (signal.SIGINT, True, 0)],
                         ids=["SIGTERM-process-2-workers", "Ctrl-C-group-2-workers", "Ctrl-C-in-process"])
def test_signal_finishes_structures_in_progress_records_them_and_leaves_no_process(tmp_path, signum, to_group,
                                                                                     n_workers):
    """SIGTERM to the generator (``kill PID``) or SIGINT to its process group (a terminal's Ctrl-C): it finishes
    the structures in progress, every folder on disk is done in the manifest, exit 128 + signal without a
    traceback, no worker or resource-tracker process left; the same command then finishes the rest."""
    out = tmp_path / "data"
    proc, log = _start(tmp_path, out, n_workers)
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    code, err, survivors = _finish(proc, log)
    name = signal.Signals(signum).name
    assert code == 128 + signum, err
    assert f"{name} received: finishing the structure(s) in progress" in err and f"stopped by {name}" in err
    assert "Traceback" not in err, err
    assert survivors == [], survivors
    structures = _status(out)
    done = {i for i, e in structures.items() if e["status"] == "done"}
    assert _folders(out) == done and 1 <= len(done) < N_LONG, structures
    assert all(e["status"] == "done" for e in structures.values()), structures  # nothing lost to the stop
    stamps = {i: os.stat(out / i / "hamiltonian.h5").st_ino for i in done}
    assert main(["data", "generate", _xyz(tmp_path, H2_XYZ), "--out", str(out), "--n", str(N_LONG), "--workers", "0",
                 *TINY]) == 0
    assert _folders(out) == {str(i) for i in range(N_LONG)}
    assert {i: os.stat(out / i / "hamiltonian.h5").st_ino for i in done} == stamps  # resumed, not recomputed


def test_killed_worker_fails_only_its_own_structure(tmp_path):
    """SIGKILL one of two workers: exactly one structure fails, reported with the reason; a new worker does the
    rest; a re-run labels the failed one."""
    out = tmp_path / "data"
    proc, log = _start(tmp_path, out, 2)
    workers = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2
    workers[0].kill()
    code, err, survivors = _finish(proc, log)
    assert code == 1 and survivors == [], err
    structures = _status(out)
    failed = [i for i, e in structures.items() if e["status"] == "failed"]
    assert len(failed) == 1 and len(structures) == N_LONG, structures
    assert structures[failed[0]]["error"] == "worker process died (killed by SIGKILL)"
    assert f"{out / failed[0]}: failed: worker process died (killed by SIGKILL)" in err
    assert _folders(out) == set(structures) - set(failed)
    assert main(["data", "generate", _xyz(tmp_path, H2_XYZ), "--out", str(out), "--n", str(N_LONG), "--workers", "0",
                 *TINY]) == 0
    assert _status(out)[failed[0]]["status"] == "done"

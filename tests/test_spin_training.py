"""Label-free training of collinear spin-polarized molecules, float64: the O2 triplet's UKS labels (PBE/STO-3G) become a
collinear spinful record and an ai2dft.SpinSystem; Omega of the labelled H equals PySCF's UKS energy and the
self-consistency residual vanishes there, padded or not; a random collinear model trains on Omega and on the residual
through the same jitted step; spin-orbit data stay supervised."""
import jax
import numpy as np
import pytest

from ai2dft.pyscf_bridge.labels import DFTSettings
from ai2dft.spin_system import SpinSystem
from elct_jax.config import AttentionConfig, LossWeights, OptimConfig, preset
from elct_jax.data.deeph_dock import DeepHRecord, read_deeph_dock, write_deeph_dock
from elct_jax.data.generate import label_record
from elct_jax.data.loader import PadSizes, collate, make_example, merged_basis, pad_sizes
from elct_jax.data.spinful import quadrants, spin_treatment
from elct_jax.data.systems import system_from_record
from elct_jax.geometry.structure import Structure
from elct_jax.hamiltonian.blocks import dict_to_dense
from elct_jax.nn.model import make_predict_fn
from elct_jax.train.losses import energy_losses, system_hamiltonians
from elct_jax.train.optim import make_optimizer
from elct_jax.train.step import init_state, make_train_step

SETTINGS = DFTSettings(basis="sto-3g", xc="pbe", spin=2, grid_level=2)
SMALL = dict(dtype="float64", l_max=2, channels=4, ffn_channels=4, attention=AttentionConfig(heads=2, alpha_dim=2))


@pytest.fixture(scope="module")
def o2():
    """(record, SpinSystem, basis) of the O2 triplet at 1.21 A from ``elct data generate``'s labeller."""
    record, converged = label_record(Structure(("O", "O"), np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 1.2]])), SETTINGS)
    assert converged
    return record, system_from_record(record), merged_basis([record])


def test_uks_labels_are_a_collinear_record(o2, tmp_path):
    record, system, basis = o2
    again = read_deeph_dock(write_deeph_dock(tmp_path / "o2", record))
    assert again.spinful and spin_treatment(True, again.matrices["hamiltonian"]) == "collinear"
    assert again.dft["spin"] == 2 and again.dft["multiplicity"] == 3 and again.dft["magmom"] == [1.0, 1.0]
    assert again.dft["n_electrons_per_spin"] == [9, 7] and again.dft["n_electrons"] == 16
    up, down = (dict_to_dense({k: quadrants(b)[q] for k, b in again.matrices["hamiltonian"].items()}, basis, ("O", "O"))
                for q in (0, 3))
    assert np.abs(up - down).max() > 0.05  # exchange splitting of the triplet (0.08 Ha)
    S = dict_to_dense(again.matrices["overlap"], basis, ("O", "O"))
    levels = [np.linalg.eigvalsh(np.linalg.solve(np.linalg.cholesky(S), np.linalg.solve(np.linalg.cholesky(S), h).T))
              for h in (up, down)]
    homo, lumo = max(levels[0][8], levels[1][6]), min(levels[0][9], levels[1][7])
    assert homo < again.fermi_energy_hartree < lumo
    assert isinstance(system, SpinSystem) and float(system.spin) == 2.0 and float(system.n_electrons) == 16.0


@pytest.mark.parametrize("extra_ao", [0, 6])
def test_omega_is_the_uks_energy_and_the_residual_vanishes_at_the_labels(o2, extra_ao):
    """The labelled H [2, nao, nao] from the batch's collinear targets: Omega = PySCF's e_tot (same grid, density
    fitting), |H - F[D(H)]| at SCF convergence; padding AOs, grid points and auxiliary functions changes neither."""
    record, system, basis = o2
    example = make_example(record, basis, 5.0, system, spin="collinear")
    sizes = pad_sizes([example], basis)
    sizes = PadSizes(sizes.n_node, sizes.n_edge, sizes.n_ao + extra_ao, sizes.n_grid + 256 * (extra_ao > 0),
                     sizes.n_aux + extra_ao)
    batch = collate([example], basis, sizes=sizes)
    onsite, edges = batch.targets["hamiltonian"]
    H = system_hamiltonians(batch.systems, onsite, edges, batch.layout)
    assert H.shape == (1, 2, sizes.n_ao, sizes.n_ao)
    omega, sc = energy_losses(batch.systems, onsite, edges, batch.layout, batch.has_system, 1.0, 1.0)
    assert abs(float(omega) * 16 - record.dft["e_tot_hartree"]) < 1e-8
    assert float(sc) < 1e-8


@pytest.fixture(scope="module")
def random_model(o2):
    """(batch, params, apply): the O2 record's collinear batch and a random collinear model, built once for both
    label-free terms (one jitted initialisation; the step's loss weights are traced, so it compiles once too)."""
    record, system, basis = o2
    batch = collate([make_example(record, basis, 5.0, system, spin="collinear")], basis)
    init, apply = make_predict_fn(preset("tiny", spin="collinear", **SMALL), basis)
    return batch, jax.jit(init)(jax.random.PRNGKey(0), batch.graph), apply  # eager init: several times slower


@pytest.mark.parametrize("weights", [LossWeights(mae=0.0, omega=1.0), LossWeights(mae=0.0, sc=1.0)],
                         ids=["omega", "sc"])
def test_label_free_steps_from_random_parameters_lower_the_loss(random_model, weights):
    batch, params, apply = random_model
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, clip_norm=0.0), 1)
    step = make_train_step(apply, optimizer)
    state, losses = init_state(params, optimizer), []
    for _ in range(8):
        state, metrics = step(state, batch, weights.array())
        losses.append(float(metrics["loss"]))
        assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0
    assert losses[-1] < losses[0], losses
    assert float(metrics["mae"]) > 0  # the labels are there, but weight 0: the run is label-free


def test_spin_models_take_their_own_kind_of_system(o2):
    record, system, basis = o2
    complex_h = {k: b.astype(np.complex128) for k, b in record.matrices["hamiltonian"].items()}
    soc = DeepHRecord(record.structure, basis, {**record.matrices, "hamiltonian": complex_h}, dft=record.dft,
                      spinful=True)
    with pytest.raises(ValueError, match="spin = 'soc' takes an ai2dft.SpinorSystem, got SpinSystem"):
        make_example(soc, basis, 5.0, system, spin="soc")
    with pytest.raises(ValueError, match="spin = 'collinear' takes an ai2dft.SpinSystem or SpinCrystalSystem, got System"):
        make_example(record, basis, 5.0, system.base, spin="collinear")

"""Loss terms of the training step, for a batch of B structures of one kind (molecules or crystals).

    mae    mean |H_pred - H_ref| over the real orbital pairs of labelled structures (Hartree); complex (spin-orbit)
           entries count as two real numbers: the mean of |Re| and |Im| of the error over all entries
    mae_orth  the same error in the orthonormal (Loewdin) basis of each structure's overlap, X (H_pred - H_ref) X with
           X = S^-1/2 (``orthonormal_mae``; spinless labels; for crystals at Gamma)
    omega  mean over structures with a DFT system of Omega(H_pred) / n_electrons (Hartree per electron;
           both per cell for crystals)
    sc     mean over those structures of the size of the self-consistency residual r = H - T(H) (Hartree),
           T(H) = the Fock matrix after ``sc_iterations`` Roothaan-DIIS steps from H (1: T = F[D(H)]):
           molecules: mean_ij |r_ij| over real AO pairs;
           crystals:  sum_k w_k (mean_ij |r_ij(k)| + mean_ij |(X^+ r X)_ij(k)|), X(k) = P S(k)^-1/2 P the
                      orthogonalizer of the basis PySCF keeps;
           spin-polarized (either): the mean over both spins of its base kind's size;
           spin-orbit molecules: mean |r_ij| over real spinor pairs of the [2 nao, 2 nao] complex residual

The network's blocks become the system's H through one extension point, ``system_hamiltonians``
(dispatched on the system type): the dense real H [B, nao, nao] of ``blocks_to_dense`` for molecules,
H(k) = sum_R H(R) exp(2 pi i k.R) [B, nk, nao, nao] at each crystal's k-points for crystals (PySCF
order), and for spin-polarized systems (``ai2dft.SpinSystem``, ``ai2dft.SpinCrystalSystem``) the base kind's H of
each of a collinear model's (up, down) blocks, (H_alpha, H_beta) [B, 2, *H-shape], and for spin-orbit molecules
(``ai2dft.SpinorSystem``) the dense spin-outer [B, 2 nao, 2 nao] complex H of a spin-orbit model's blocks. Omega and T are ai2dft's, for either kind (``ai2dft.free_energy``, ``ai2dft.api.roothaan_diis``);
the size of the residual is the other per-kind choice (``residual_size``).

Omega is invariant under H -> H + c S, so label-free training fixes H only up to that shift; the
self-consistency residual is not, and pins it. Omega also leaves the occupied-occupied and
virtual-virtual blocks of H free (it depends on H only through D(H)), and its gradient
dOmega/dH = chi[F - H] is damped by the response chi ~ (f_i - f_a) / (e_i - e_a), tiny for levels far
from the Fermi level: plain first-order training on Omega stalls (experiments/unsupervised_h2o.py).

The residual is differentiated with the target held fixed (``stop_gradient``): T is the label the
structure generates for itself, as in self-consistency training (Zhang et al., ICML 2024), with no
back-propagation through the Fock build. With one iteration, T = F[D(H)] and the H-gradient sign(H - F)
points along the preconditioned Omega gradient -chi^{-1} dOmega/dH = H - F (the direction of the
project's variational solver, ``ai2dft.lbfgs``). Near the solution H - F[D(H)] = (1 - K chi)(H - H_scf):
the residual weighs the error through the dielectric operator (K the Hartree-XC kernel), and at a finite
budget training settles where that weighted error, not |H - H_scf|, is small. More iterations
(``sc_iterations`` = n, warm-started DIIS, each one Fock build without gradient) bring T towards the
SCF solution H_scf itself, so the residual becomes |H - H_scf| and label-free training converges as
supervised training does (experiments/unsupervised_h2o.py). The fixed point H = T(H) is the SCF
solution for every n, which pins every block of H.

Why two bases for crystals: the AO term fixes the entries the network outputs, as the supervised MAE
does; the orthonormal term weighs the residual as band energies see it. At zone-boundary k the Bloch sums
of the diffuse AOs nearly cancel (bcc Na, gth-szv, 4x4x4 k: smallest eigenvalue of S(k) 0.025 at Gamma,
0.11 at the cube corner), so an AO-small error there moves a band by eV: trained on the AO term alone, the
network put an empty level of the cube corner 14 eV low, below E_F, and its free energy stayed 10-40
mHa/cell off while the AO residual kept falling; with both terms it matches supervised training.
Everything here is pure jnp and vmaps over structures.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ai2dft.api import free_energy, roothaan_diis
from ai2dft.crystal import CrystalSystem
from ai2dft.density import inverse_sqrt_overlap
from ai2dft.hermitian import dagger
from ai2dft.spin_system import SpinPolarized
from ai2dft.spinor_system import SpinorSystem
from ai2dft.system import System
from elct_jax.hamiltonian.blocks import BlockLayout, bloch_sum, blocks_to_dense, structure_layout
from elct_jax.hamiltonian.spinor import spinor_to_dense

TARGET_TOL = 1e-10  # Hartree: the target's DIIS stops early once its commutator is below this


def abs_errors(pred, target, mask):
    """(|pred - target|, mask) of arrays of one shape [n]; mask 1 where labelled, 0 elsewhere (apply it with
    :func:`masked_mean`). Complex arrays: [2, n], the real and the imaginary parts (each labelled entry counts twice)."""
    if jnp.iscomplexobj(pred) or jnp.iscomplexobj(target):
        parts = lambda x: jnp.stack([jnp.real(x), jnp.imag(x)])
        pred, target, mask = parts(pred), parts(target), jnp.stack([mask, mask])
    return jnp.abs(pred - target), mask


def orthonormal_mae(onsite, edges, targets: dict, masks: dict, layout: BlockLayout, weight) -> jax.Array:
    """[] mean |X (H - H_ref) X| over the real AO pairs of the labelled structures, X = S^-1/2 (Loewdin) of the
    structure's labelled overlap (Hartree; 0 while the traced ``weight`` is 0, when nothing is computed).

    onsite [n_node, n_max, n_max], edges [n_edge, n_max, n_max]: the network's blocks (internal order; against the
    "hamiltonian" target as it is stored, i.e. H - H0 with a baseline: the same error). targets, masks: the batch's
    (``Batch.targets``, ``Batch.target_masks``), with "hamiltonian" and "overlap". A crystal's blocks of all R sum to
    its Gamma-point matrices, so for crystals this is the error at Gamma.
    Spinful targets and records without overlap give 0 (``elct_jax.train.run.train`` refuses a nonzero weight on
    data without overlap). Why: the AO-basis MAE weighs every entry alike, but along nearly
    linearly dependent AO combinations (def2-SVP: S eigenvalues down to 3e-3) an AO-small error moves orbital energies
    by eV; in the orthonormal basis an entry's error is what the spectrum sees."""
    if "hamiltonian" not in targets or "overlap" not in targets or targets["hamiltonian"][0].ndim != 3:
        return jnp.zeros((), jnp.real(onsite).dtype)

    def term():
        (t_on, t_ed), (m_on, m_ed) = targets["hamiltonian"], masks["hamiltonian"]
        (s_on, s_ed), (ms_on, ms_ed) = targets["overlap"], masks["overlap"]
        err = blocks_to_dense((onsite - t_on.astype(onsite.dtype)) * m_on, (edges - t_ed.astype(edges.dtype)) * m_ed,
                              layout, pad_diagonal=0.0)  # [S, nao_pad, nao_pad]
        X = inverse_sqrt_overlap(blocks_to_dense(s_on * ms_on, s_ed * ms_ed, layout, pad_diagonal=1.0)).astype(err.dtype)
        real_ao = jnp.diagonal(blocks_to_dense(m_on.astype(err.dtype), jnp.zeros(edges.shape, err.dtype), layout,
                                               pad_diagonal=0.0), axis1=-2, axis2=-1)  # [S, nao_pad] 1: labelled AO
        pair = real_ao[..., :, None] * real_ao[..., None, :]
        return (jnp.sum(jnp.abs(X @ err @ X) * pair) / jnp.maximum(jnp.sum(pair), 1.0)).astype(onsite.dtype)

    return jax.lax.cond(weight != 0, term, lambda: jnp.zeros((), onsite.dtype))


def masked_mean(values, mask):
    """Mean of values [...] over mask [...] (0/1); 0 if the mask is empty."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@functools.singledispatch
def system_hamiltonians(systems, onsite, edges, layout: BlockLayout) -> jax.Array:
    """[B, *H-shape] the H of every structure of the batch, as its system takes it (PySCF order, the
    systems' dtype). onsite [n_node, n_max, n_max], edges [n_edge, n_max, n_max]: the network's blocks
    (internal order, Hartree) of the whole batch graph; systems: stacked over B; layout: the batch's."""
    raise TypeError(f"no Hamiltonian assembly for systems of type {type(systems).__name__}")


@system_hamiltonians.register
def dense_hamiltonians(systems: System, onsite, edges, layout: BlockLayout) -> jax.Array:
    """[B, nao_pad, nao_pad] dense real H of each molecule (padded AOs on the padding level)."""
    return blocks_to_dense(onsite, edges, layout, order="pyscf").astype(systems.overlap.dtype)


@system_hamiltonians.register
def spin_hamiltonians(systems: SpinPolarized, onsite, edges, layout: BlockLayout) -> jax.Array:
    """[B, 2, *H-shape of the base] (H_alpha, H_beta) of each spin-polarized system (dense real H of a molecule,
    H(k) of a crystal) from a collinear model's blocks onsite [n_node, 2, n_max, n_max], edges
    [n_edge, 2, n_max, n_max] (spin up = alpha: the majority spin along positive initial moments)."""
    H = [system_hamiltonians(systems.base, onsite[:, s], edges[:, s], layout) for s in (0, 1)]
    return jnp.stack(H, axis=1)


@system_hamiltonians.register
def spinor_hamiltonians(systems: SpinorSystem, onsite, edges, layout: BlockLayout) -> jax.Array:
    """[B, 2 nao_pad, 2 nao_pad] dense spin-outer complex H of each spin-orbit molecule from a spin-orbit model's
    blocks onsite [n_node, 2, 2, n_max, n_max], edges [n_edge, 2, 2, n_max, n_max] (padded AOs on the padding level)."""
    return spinor_to_dense(onsite, edges, layout, order="pyscf").astype(systems.hcore_so.dtype)


@system_hamiltonians.register
def bloch_hamiltonians(systems: CrystalSystem, onsite, edges, layout: BlockLayout) -> jax.Array:
    """[B, nk, nao, nao] H(k) of every crystal at its systems' k-points. The layout's padded AO slots
    (uncoupled) are cut off: nao is the systems' AO count."""
    n_ao = systems.overlap.shape[-1]

    def one(g, kpts_frac):
        H = bloch_sum(onsite, edges, structure_layout(layout, g), kpts_frac, order="pyscf")
        return H[:, :n_ao, :n_ao]

    H = jax.vmap(one)(jnp.arange(systems.kpts_frac.shape[0]), systems.kpts_frac)
    return H.astype(systems.overlap.dtype)


def free_energy_per_electron(system, H) -> jax.Array:
    """[] Omega(H) / n_electrons for one (padded) system (Hartree per electron; per cell for crystals)."""
    return free_energy(system, H) / system.n_electrons


@functools.singledispatch
def residual_size(system, r) -> jax.Array:
    """[] the size (Hartree) of a self-consistency residual r (H-shaped) that the sc loss minimizes."""
    raise TypeError(f"no residual size for a system of type {type(system).__name__}")


@residual_size.register
def _(system: System, r) -> jax.Array:
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]
    return jnp.sum(jnp.abs(r) * pair) / jnp.sum(pair)


@residual_size.register
def _(system: SpinorSystem, r) -> jax.Array:
    mask = jnp.tile(system.base.ao_mask, 2)
    pair = mask[:, None] * mask[None, :]
    return jnp.sum(jnp.abs(r) * pair) / jnp.sum(pair)


@residual_size.register
def _(system: SpinPolarized, r) -> jax.Array:
    return 0.5 * (residual_size(system.base, r[0]) + residual_size(system.base, r[1]))  # mean over both spins


@residual_size.register
def _(system: CrystalSystem, r) -> jax.Array:
    X = system.basis_projector @ system.s_inv_sqrt  # P S^-1/2 P: the dropped directions (1 - P) left out
    r_orth = dagger(X) @ r @ X
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]
    per_k = jnp.sum((jnp.abs(r) + jnp.abs(r_orth)) * pair, axis=(-2, -1)) / jnp.sum(pair)  # [nk]
    return jnp.sum(system.kweights * per_k)


def self_consistency_residual(system, H, iterations: int = 1) -> jax.Array:
    """[] ``residual_size`` of H - T(H), T(H) the Fock matrix after ``iterations`` Roothaan-DIIS steps from
    H (1: F[D(H)]); differentiated with T held fixed."""
    F, *_ = roothaan_diis(system, jax.lax.stop_gradient(H), iterations, TARGET_TOL)
    return residual_size(system, H - jax.lax.stop_gradient(F))


def energy_losses(systems, onsite, edges, layout: BlockLayout, has_system, w_omega, w_sc, sc_iterations: int = 1):
    """(omega, sc) batch means. systems: System or CrystalSystem stacked over B; onsite, edges: the network's
    blocks of the batch graph; layout: the batch's BlockLayout; has_system [B]; sc_iterations: Roothaan-DIIS
    steps of the self-consistency target (static).

    Each term is computed only when its (traced) weight is non-zero, so a supervised-only step pays
    nothing for it while sharing the same compiled function.
    """
    H = system_hamiltonians(systems, onsite, edges, layout)
    zero = jnp.zeros((), jnp.real(H).dtype)
    omega = jax.lax.cond(
        w_omega != 0,
        lambda: masked_mean(jax.vmap(free_energy_per_electron)(systems, H), has_system),
        lambda: zero,
    )
    sc = jax.lax.cond(
        w_sc != 0,
        lambda: masked_mean(jax.vmap(lambda s, h: self_consistency_residual(s, h, sc_iterations))(systems, H),
                            has_system),
        lambda: zero,
    )
    return omega, sc

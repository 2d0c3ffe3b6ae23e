"""Label-free loss terms of the training step for a batch of B crystals of one shape.

    omega  mean over crystals of Omega(H(k)) / n_electrons (Hartree per electron; both per cell)
    sc     mean over crystals of sum_k w_k (mean_ij |r_ij(k)| + mean_ij |(X^+ r X)_ij(k)|) over real AO pairs
           (Hartree), r = H(k) - T(H)(k), T(H) the Fock matrix after ``sc_iterations`` Roothaan-DIIS steps from
           H(k) (1: F[D(H)](k)), X(k) = P S(k)^-1/2 P the orthogonalizer of the basis PySCF keeps

Why two bases: the AO term fixes the entries the network outputs, as the supervised MAE does; the
orthonormal term weighs the residual as band energies see it. At zone-boundary k the Bloch sums of the
diffuse AOs nearly cancel (bcc Na, gth-szv, 4x4x4 k: smallest eigenvalue of S(k) 0.025 at Gamma, 0.11 at
the cube corner), so an AO-small error there moves a band by eV: trained on the AO term alone, the
network put an empty level of the cube corner 14 eV low, below E_F, and its free energy stayed 10-40
mHa/cell off while the AO residual kept falling; with both terms it matches supervised training.

H(k) = sum_R H(R) exp(2 pi i k.R) is assembled from the network's real-space blocks by
``elct_jax.hamiltonian.bloch_sum`` at the k-points of each crystal's ``CrystalSystem`` (PySCF order),
and Omega, D(H) and F[D] are those of ``ai2dft.crystal_energy`` (exact against PySCF KRKS). The
semantics are those of the molecular terms (``elct_jax.train.losses``): Omega is differentiated
through D(H) (network -> H(R) -> H(k) -> Omega), the self-consistency residual with F[D(H)] held
fixed (``stop_gradient``), so with one iteration its gradient points along the preconditioned Omega
direction H - F, and with more it approaches |H(k) - H_scf(k)| (in both bases).
Everything here is pure jnp; the B crystals are vmapped.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ai2dft.crystal import CrystalSystem
from ai2dft.crystal_energy import free_energy
from ai2dft.crystal_scf import roothaan_diis
from elct_jax.hamiltonian import BlockLayout, bloch_sum
from elct_jax.train.losses import TARGET_TOL, masked_mean


def structure_layout(layout: BlockLayout, g) -> BlockLayout:
    """The single-structure layout of structure ``g`` (int, may be traced) of a batched ``layout``:
    the same blocks, with every block of another structure sent to the dump slot."""
    if not layout.batched:
        return layout
    size = layout.n_ao_pad**2

    def own(dest):  # flat index g' * size + row * P + col -> row * P + col if g' == g, else the dump slot
        dest = jnp.asarray(dest)
        return jnp.where(dest // size == g, dest - g * size, size).astype(dest.dtype)

    return dataclasses.replace(
        layout,
        onsite_dest={k: own(v) for k, v in layout.onsite_dest.items()},
        edge_dest={k: own(v) for k, v in layout.edge_dest.items()},
        ao_mask=jnp.asarray(layout.ao_mask)[g][None],
        n_graph=1,
        batched=False,
    )


def bloch_hamiltonians(onsite, edges, layout: BlockLayout, systems: CrystalSystem) -> jax.Array:
    """[B, nk, nao, nao] H(k) of every crystal of the batch at its systems' k-points, PySCF order.

    onsite [n_node, n_max, n_max], edges [n_edge, n_max, n_max]: the network's blocks (internal order,
    Hartree) of the whole batch graph; systems: CrystalSystem stacked over B. The layout's padded AO
    slots (uncoupled) are cut off: nao is the systems' AO count.
    """
    n_ao = systems.overlap.shape[-1]

    def one(g, kpts_frac):
        H = bloch_sum(onsite, edges, structure_layout(layout, g), kpts_frac, order="pyscf")
        return H[:, :n_ao, :n_ao]

    H = jax.vmap(one)(jnp.arange(systems.kpts_frac.shape[0]), systems.kpts_frac)
    return H.astype(systems.overlap.dtype)


def free_energy_per_electron(system: CrystalSystem, H_k) -> jax.Array:
    """[] Omega(H(k)) / n_electrons of one crystal (Hartree per electron). H_k: [nk, nao, nao]."""
    return free_energy(system, H_k) / system.n_electrons


def self_consistency_residual(system: CrystalSystem, H_k, iterations: int = 1) -> jax.Array:
    """[] sum_k w_k (mean_ij |r_ij(k)| + mean_ij |(X^+ r X)_ij(k)|) over real AO pairs (Hartree), r = H_k - T,
    T the Fock matrix after ``iterations`` Roothaan-DIIS steps from H_k [nk, nao, nao] (1: F[D(H)]), held
    fixed; X = P S^-1/2 P, the orthogonalizer of the basis PySCF keeps (module docstring: why both)."""
    target, *_ = roothaan_diis(system, jax.lax.stop_gradient(H_k), iterations, TARGET_TOL)
    r = H_k - jax.lax.stop_gradient(target)
    X = system.basis_projector @ system.s_inv_sqrt  # P S^-1/2 P: the dropped directions (1 - P) left out
    r_orth = jnp.conj(jnp.swapaxes(X, -1, -2)) @ r @ X
    pair = system.ao_mask[:, None] * system.ao_mask[None, :]
    per_k = jnp.sum((jnp.abs(r) + jnp.abs(r_orth)) * pair, axis=(-2, -1)) / jnp.sum(pair)  # [nk]
    return jnp.sum(system.kweights * per_k)


def crystal_energy_losses(systems: CrystalSystem, onsite, edges, layout: BlockLayout, has_system, w_omega, w_sc,
                          sc_iterations: int = 1):
    """(omega, sc) batch means for crystals; each term is computed only when its traced weight is non-zero.

    systems: CrystalSystem stacked over B; onsite, edges: the network's blocks of the batch graph;
    layout: the batch's BlockLayout; has_system [B]; sc_iterations: DIIS steps of the sc target (static).
    """
    H = bloch_hamiltonians(onsite, edges, layout, systems)
    real = jnp.real(H).dtype
    omega = jax.lax.cond(
        w_omega != 0,
        lambda: masked_mean(jax.vmap(free_energy_per_electron)(systems, H), has_system),
        lambda: jnp.zeros((), real),
    )
    sc = jax.lax.cond(
        w_sc != 0,
        lambda: masked_mean(jax.vmap(lambda s, h: self_consistency_residual(s, h, sc_iterations))(systems, H),
                            has_system),
        lambda: jnp.zeros((), real),
    )
    return omega, sc

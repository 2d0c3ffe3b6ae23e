"""Spinful blocks of the network: spin-orbit spinor blocks and collinear (up, down) blocks, padded like the spinless ones.

Layout (spin axes before the orbital axes, each orbital square padded to n_max as in ``hamiltonian.blocks``):
  spin-orbit  [n, 2, 2, n_max, n_max] complex: [s, t] is the (s, t) spin quadrant, s, t = up, down (spin along
              lab z); entry [s, t, i, j] is element (s n_i + i, t n_j + j) of the record's spin-outer
              [2 n_i, 2 n_j] block [[uu, ud], [du, dd]] (``elct_jax.data.spinful``)
  collinear   [n, 2, n_max, n_max] real: the (up, up) and (down, down) quadrants; the others are zero. Spin up is
              along the atoms' initial moments (``graph.nodes["magmom"]``, Bohr magnetons along z, scalars: in a
              collinear calculation without spin-orbit coupling spin space does not rotate with the lattice)

Spin-orbit block of a time-reversal symmetric (non-magnetic) system:
    H_ij = A_ij x 1_2 + i sum_a B_ij^a x sigma_a,     A, B^a real,  a = x, y, z (lab)
(written spin outer: H[s, t] = A delta_st + i sum_a B^a sigma_a[s, t]). A rotation R acts on the orbitals by
D^l(R) and on the spin by U(R) in SU(2) with U sigma_a U^+ = sum_b R_ba sigma_b, so B is a vector (l = 1) in its
index a; spin is even under inversion, so B^a is a pseudovector: l1 x l2 x 1e (the ``spin_rank`` 1 head).
Time reversal Theta = -i sigma_y K maps H to sigma_y conj(H) sigma_y = A x 1 + i sum_a B^a x sigma_a for real
A, B: every such H commutes with Theta (H_dd = conj(H_uu), H_du = -conj(H_ud)). Hermiticity of the whole matrix,
H_ji = H_ij^+, holds when A_ji = A_ij^T and B_ji = -B_ij^T: on-site B antisymmetric (the atomic xi L.S has
B^a = -i xi L_a / 2 with L_a imaginary antisymmetric in real orbitals), edges through ``reverse``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ai2dft.units import PAD_LEVEL_HARTREE
from elct_jax.geometry.basis import LAB_TO_E3NN
from elct_jax.hamiltonian.blocks import BlockLayout, blocks_to_dense

E3NN_TO_LAB = np.argsort(LAB_TO_E3NN)  # v_lab = v_e3nn[E3NN_TO_LAB]
PAULI = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]])  # [3 (lab x, y, z), 2, 2]


def spinor_blocks(a, b):
    """[n, 2, 2, n_max, n_max] complex A x 1_2 + i sum_a B^a x sigma_a from A [n, n_max, n_max] and B
    [n, 3, n_max, n_max] (vector index in e3nn's l = 1 order, lab (y, z, x), as the head gives it)."""
    b_lab = b[:, E3NN_TO_LAB]
    spin = 1j * jnp.einsum("nakl,ast->nstkl", b_lab, jnp.asarray(PAULI, jnp.result_type(1j, b)))
    return spin + a[:, None, None] * jnp.eye(2, dtype=a.dtype)[None, :, :, None, None]


@jax.jit
def antisymmetrize_onsite(b):
    """(B - B^T) / 2 over the orbital axes of on-site blocks [n, 3, n_max, n_max]."""
    return 0.5 * (b - jnp.swapaxes(b, -1, -2))


@jax.jit
def antisymmetrize_edges(b, reverse):
    """(B - B[reverse]^T) / 2, so that B_ji(-R) = -B_ij(R)^T exactly. [n_edge, 3, n_max, n_max]."""
    return 0.5 * (b - jnp.swapaxes(b[reverse], -1, -2))


def spinor_to_dense(onsite, edge_blocks, layout: BlockLayout, order: str = "pyscf"):
    """Dense spin-outer [2 P, 2 P] matrix [[M_uu, M_ud], [M_du, M_dd]] (P = n_ao_pad; [n_graph, 2 P, 2 P] for a
    batched layout) of spin-orbit blocks onsite [n_node, 2, 2, n_max, n_max], edges [n_edge, 2, 2, n_max, n_max]
    (PySCF's GKS layout for ``order`` "pyscf"); padded AOs get the padding level in the spin-diagonal quadrants."""
    quadrant = [[blocks_to_dense(onsite[:, s, t], edge_blocks[:, s, t], layout, order=order,
                                 pad_diagonal=PAD_LEVEL_HARTREE if s == t else 0.0) for t in (0, 1)] for s in (0, 1)]
    return jnp.concatenate([jnp.concatenate(row, axis=-1) for row in quadrant], axis=-2)


def spin_independent(blocks):
    """The spin-independent part [n, n_max, n_max] of padded blocks: A = Re(H_uu + H_dd) / 2 of spin-orbit blocks
    [n, 2, 2, n_max, n_max], (H_up + H_down) / 2 of collinear ones [n, 2, n_max, n_max]; spinless ones as they are."""
    if blocks.ndim == 5:
        return jnp.real(blocks[:, 0, 0] + blocks[:, 1, 1]) / 2
    return (blocks[:, 0] + blocks[:, 1]) / 2 if blocks.ndim == 4 else blocks


def collinear_blocks_from_parts(parts, parts_flipped):
    """Collinear blocks [n, 2, n_max, n_max] (up, down) from the network's (charge, spin) parts [n, 2, n_max, n_max]
    at the initial moments m and at -m: H_c = (c(m) + c(-m)) / 2 is even and H_s = (s(m) - s(-m)) / 2 odd under
    reversing every moment, so H_up = H_c + H_s and H_down = H_c - H_s swap exactly when all moments flip."""
    charge = 0.5 * (parts[:, 0] + parts_flipped[:, 0])
    spin = 0.5 * (parts[:, 1] - parts_flipped[:, 1])
    return jnp.stack([charge + spin, charge - spin], axis=1)

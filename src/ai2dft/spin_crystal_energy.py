"""Kohn-Sham energy and Fock matrices of a collinear spin-polarized crystal: the spin-crystal kind.

For D [2, nk, nao, nao] = (D_alpha(k), D_beta(k)) (per spin, not k-weighted) and the spin densities rho_s(r) on
the FFT mesh of ``system.base`` (``crystal_energy.grid_density`` of D_s):

    E_KS[D] = sum_s sum_k w_k Re tr(D_s(k) hcore(k)) + E_H[rho_a + rho_b] + E_xc[rho_a, rho_b] + E_nuc
    F_s(k)  = hcore(k) + <phi^k_i| v_H + v_xc,s |phi^k_j>   (GGA: + the grad-rho_s terms)      (Hartree per cell)

with E_xc from ``ai2dft.xc_spin`` (libxc's spin-polarized functionals) and the Hartree term, potential matrices
and grid walk of the closed-shell crystal (``ai2dft.crystal_energy``), both spins in one pass (vmapped). As
there, ``energy`` carries a custom VJP whose cotangent is w_k conj(F_s(k)).

D(H) reuses the closed-shell ``density_and_entropy`` (its divided-difference VJP) in the basis PySCF keeps:
fixed magnetisation: each spin on its own, N_s electrons per cell and its own chemical potential
(D_s = density_and_entropy(H_s, 2 N_s) / 2, entropy halved); free magnetisation: the two spins as 2 nk
k-points of weight w_k / 2 sharing one chemical potential for N electrons (D = density_and_entropy / 2, whose
entropy is already the sum over spin-orbitals). Omega = E_KS[D] - sigma * entropy; equal to PySCF's KUKS
(FFTDF) on the same mesh: tests/test_spin_crystal.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import coulomb_fft, kind, xc_spin
from ai2dft.crystal_energy import effective_hamiltonian, grid_density, kept_part, one_electron_energy, potential_matrix
from ai2dft.density import density_and_entropy
from ai2dft.spin_crystal import SpinCrystalSystem

Array = jax.Array


def spin_grid_density(system: SpinCrystalSystem, D: Array) -> Array:
    """[2, n_deriv, n_pad] spin densities (row 0, Bohr^-3) and for GGAs their gradients (rows 1-3)."""
    return jax.vmap(lambda d: grid_density(system.base, d))(D)


def _xc_inputs(rho: Array, gga: bool) -> tuple[Array, Array | None]:
    """libxc's spin-polarized input: rho [2, n_pad] and sigma [3, n_pad] = (aa, ab, bb) or None (LDA)."""
    if not gga:
        return rho[:, 0], None
    g = rho[:, 1:]
    return rho[:, 0], jnp.stack([jnp.sum(g[0] * g[0], 0), jnp.sum(g[0] * g[1], 0), jnp.sum(g[1] * g[1], 0)])


def _potentials(system: SpinCrystalSystem, rho: Array) -> tuple[Array, Array, Array]:
    """(E_H + E_xc, v [2, n_pad], v_grad [2, n_deriv - 1, n_pad]): the potential of each spin density and of its
    gradient, dE = dV sum_s sum_r (v_s drho_s + v_grad_s . dgrad rho_s)."""
    base = system.base
    n_grid, n_pad = base.n_grid, rho.shape[-1]
    total = rho[0, 0, :n_grid] + rho[1, 0, :n_grid]
    v_h = coulomb_fft.hartree_potential(total, base.coulG, base.mesh)
    e_xc, v_rho, v_sigma = xc_spin.potentials(base.xc, *_xc_inputs(rho, base.is_gga))
    g = rho[:, 1:]  # [2, n_deriv - 1, n_pad]; empty for LDAs
    v_grad = jnp.stack([2.0 * v_sigma[0] * g[0] + v_sigma[1] * g[1], 2.0 * v_sigma[2] * g[1] + v_sigma[1] * g[0]])
    e2 = coulomb_fft.hartree_energy(total, v_h, base.grid_weight) + base.grid_weight * jnp.sum(e_xc)
    return e2, v_rho + jnp.pad(v_h, (0, n_pad - n_grid))[None], v_grad


def _focks(system: SpinCrystalSystem, v: Array, v_grad: Array) -> Array:
    """[2, nk, nao, nao] F_s(k) = hcore(k) + V_s(k) of the spin potentials."""
    return system.base.hcore + jax.vmap(lambda a, b: potential_matrix(system.base, a, b))(v, v_grad)


def energy_terms(system: SpinCrystalSystem, D: Array) -> dict[str, Array]:
    """Kohn-Sham energy pieces (Hartree per cell): one_electron, hartree, xc, nuclear."""
    base, rho = system.base, spin_grid_density(system, D)
    total = rho[0, 0, :base.n_grid] + rho[1, 0, :base.n_grid]
    v_h = coulomb_fft.hartree_potential(total, base.coulG, base.mesh)
    return dict(
        one_electron=one_electron_energy(base, D[0] + D[1]),
        hartree=coulomb_fft.hartree_energy(total, v_h, base.grid_weight),
        xc=base.grid_weight * jnp.sum(xc_spin.energy_density(base.xc, *_xc_inputs(rho, base.is_gga))),
        nuclear=base.e_nuc,
    )


@jax.custom_vjp
def energy(system: SpinCrystalSystem, D: Array) -> Array:
    """[] Kohn-Sham total energy E_KS[D] per cell (Hartree). D: [2, nk, nao, nao] complex (alpha, beta).

    Reverse-mode derivative with respect to D_s(k): w_k conj(F_s(k)), F = ``fock(system, D)``; none with
    respect to ``system``.
    """
    return _energy_fwd(system, D)[0]


def _energy_fwd(system, D):
    e2, v, v_grad = _potentials(system, spin_grid_density(system, D))
    return one_electron_energy(system.base, D[0] + D[1]) + e2 + system.base.e_nuc, (system, v, v_grad)


def _energy_bwd(residuals, g):
    system, v, v_grad = residuals
    return None, (g * system.base.kweights)[:, None, None] * jnp.conj(_focks(system, v, v_grad))


energy.defvjp(_energy_fwd, _energy_bwd)
kind.energy.register(SpinCrystalSystem, energy)


@kind.fock.register
def fock(system: SpinCrystalSystem, D: Array) -> Array:
    """[2, nk, nao, nao] Kohn-Sham matrices F_s(k) = hcore(k) + V_H(k) + V_xc,s(k) (Hartree), Hermitian."""
    _, v, v_grad = _potentials(system, spin_grid_density(system, D))
    return _focks(system, v, v_grad)


@kind.density_and_entropy_of.register
def _(system: SpinCrystalSystem, H: Array, X: Array | None = None) -> tuple[Array, Array]:
    base = system.base
    H = effective_hamiltonian(base, H)
    X = kind.orthogonalizer(system) if X is None else X
    if system.spin is None:
        flat = (-1,) + H.shape[2:]
        D, entropy = density_and_entropy(H.reshape(flat), system.overlap.reshape(flat), base.n_electrons, base.sigma,
                                         base.smearing_kind, kweights=0.5 * jnp.tile(base.kweights, 2),
                                         ao_mask=base.ao_mask, s_inv_sqrt=X.reshape(flat))
        return 0.5 * D.reshape(H.shape), entropy

    def one_spin(h, x, n):
        D, entropy = density_and_entropy(h, base.overlap, 2.0 * n, base.sigma, base.smearing_kind,
                                         kweights=base.kweights, ao_mask=base.ao_mask, s_inv_sqrt=x)
        return 0.5 * D, 0.5 * entropy

    D, entropy = jax.vmap(one_spin)(H, X, system.spin_electrons)
    return D, jnp.sum(entropy)


@kind.orthogonalizer.register
def _(system: SpinCrystalSystem) -> Array:
    return jnp.broadcast_to(system.base.s_inv_sqrt, (2,) + system.base.s_inv_sqrt.shape)


@kind.effective_hamiltonian.register
def _(system: SpinCrystalSystem, H: Array) -> Array:
    return effective_hamiltonian(system.base, H)


@kind.kept_part.register
def _(system: SpinCrystalSystem, A: Array) -> Array:
    return kept_part(system.base, A)


@kind.metric.register
def _(system: SpinCrystalSystem) -> Array:
    return kind.metric(system.base)

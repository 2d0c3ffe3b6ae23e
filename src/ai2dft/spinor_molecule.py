"""The spin-orbit (spinor) molecule kind: E_KS, F and ``ai2dft.kind`` for ``ai2dft.SpinorSystem``.

For D [2 nao, 2 nao] complex Hermitian, spin outer, with spin blocks D_uu, D_ud, D_dd (``SpinorSystem``):

    E_KS[D] = Re tr(hcore_so D) + E_H[Re(D_uu + D_dd)] + E_xc[n, m] + E_nuc,      F = dE_KS/dD  (Hartree)

with E_H the base's density-fitted Hartree energy and E_xc under the system's ``collinear`` scheme (module
``ai2dft.spinor_system``). The ncol magnetisation |m| has a kink-free square: |m|^2 = (rho_uu - rho_dd)^2 +
4 |rho_ud|^2, where rho_ud(r) = sum_ij D_ud,ij phi_i phi_j; below |m|^2 = 1e-40 its derivative is taken as 0,
as PySCF drops the magnetisation potential below |m| = 1e-20 (the spin-scaling function of the LDA is even
in |m|, so the limit is 0). F is jax.grad's conj: dE = Re sum conj(F) dD, the kind's metric 1.

D(H): the closed-shell ``density_and_entropy`` on the spinor problem (H, [[S, 0], [0, S]]) at twice the
electron count, halved: occupations in [0, 1] per spinor, the entropy summed over spinors; its divided-
difference VJP makes Kramers-degenerate levels exact.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ai2dft import coulomb, kind, molecule, spin_energy, xc_spin  # noqa: F401  (molecule: the base's kind)
from ai2dft.density import density_and_entropy
from ai2dft.energy import density_on_grid
from ai2dft.hermitian import hermitian_part
from ai2dft.spin_system import SpinSystem
from ai2dft.spinor_system import SpinorSystem

Array = jax.Array
_TINY_M2 = 1e-40  # |m|^2 below which the magnetisation is taken as zero (PySCF: |m| < 1e-20)


def spin_blocks(D: Array) -> tuple[Array, Array, Array]:
    """(D_uu, D_dd, D_ud), each [nao, nao], of a spin-outer D [2 nao, 2 nao]."""
    n = D.shape[-1] // 2
    return D[:n, :n], D[n:, n:], D[:n, n:]


def _symmetric(a: Array) -> Array:
    return 0.5 * (a + a.T)


def xc_energy(system: SpinorSystem, D: Array) -> Array:
    """[] semi-local XC energy (Hartree) of a Hermitian D under the system's collinear scheme."""
    uu, dd, ud = spin_blocks(D)
    diagonal = jnp.stack([jnp.real(uu), jnp.real(dd)])
    if system.collinear == "col":
        return spin_energy.xc_energy(SpinSystem(system.base, None), diagonal)
    base = system.base
    rho_u, rho_d, re_ud, im_ud = (density_on_grid(base, m)[0] for m in
                                  (diagonal[0], diagonal[1], _symmetric(jnp.real(ud)), _symmetric(jnp.imag(ud))))
    m2 = (rho_u - rho_d) ** 2 + 4.0 * (re_ud**2 + im_ud**2)
    small = m2 < _TINY_M2
    s = jnp.where(small, 0.0, jnp.sqrt(jnp.where(small, 1.0, m2)))
    n = rho_u + rho_d
    rho = jnp.stack([0.5 * (n + s), 0.5 * (n - s)])
    return jnp.dot(base.weights, xc_spin.energy_density(base.xc, rho, None))


def energy_terms(system: SpinorSystem, D: Array) -> dict[str, Array]:
    """Components of E_KS[D] in Hartree: "one_electron", "hartree", "xc", "nuclear"."""
    D = hermitian_part(D)
    uu, dd, _ = spin_blocks(D)
    return {
        "one_electron": jnp.real(jnp.sum(jnp.conj(system.hcore_so) * D)),  # tr(h D) of Hermitian h, D
        "hartree": coulomb.hartree_energy(system.base.cderi, jnp.real(uu + dd)),
        "xc": xc_energy(system, D),
        "nuclear": system.base.e_nuc,
    }


def energy(system: SpinorSystem, D: Array) -> Array:
    """[] Kohn-Sham total energy E_KS[D] (Hartree) of a spinor density matrix D [2 nao, 2 nao]."""
    return sum(energy_terms(system, D).values())


def fock(system: SpinorSystem, D: Array) -> Array:
    """[2 nao, 2 nao] Kohn-Sham matrix F[D] = dE_KS/dD (Hartree), complex Hermitian."""
    return hermitian_part(jnp.conj(jax.grad(energy, argnums=1)(system, D)))


kind.energy.register(SpinorSystem, energy)
kind.fock.register(SpinorSystem, fock)


def _spinor_mask(system: SpinorSystem) -> Array:
    return jnp.tile(system.base.ao_mask, 2)


@kind.orthogonalizer.register
def _(system: SpinorSystem) -> Array:
    return jnp.kron(jnp.eye(2, dtype=system.hcore_so.dtype), kind.orthogonalizer(system.base))


@kind.density_and_entropy_of.register
def _(system: SpinorSystem, H, X=None) -> tuple[Array, Array]:
    base = system.base
    X = kind.orthogonalizer(system) if X is None else X
    D, entropy = density_and_entropy(H, system.overlap, 2.0 * base.n_electrons, base.sigma, base.smearing_kind,
                                     ao_mask=_spinor_mask(system), s_inv_sqrt=X)
    return 0.5 * D, 0.5 * entropy


@kind.effective_hamiltonian.register
def _(system: SpinorSystem, H) -> Array:
    return H  # padding is handled inside density_and_entropy


@kind.kept_part.register
def _(system: SpinorSystem, A) -> Array:
    mask = _spinor_mask(system)
    return jnp.where((mask[:, None] * mask[None, :]) > 0, A, 0.0)


@kind.metric.register
def _(system: SpinorSystem) -> Array:
    return jnp.ones((), system.base.overlap.dtype)

"""The small interface a kind of system implements; the solvers are written against it alone.

Each function is a ``functools.singledispatch`` function of the system's Python type, so dispatch
works unchanged under ``jax.jit``, ``jax.grad`` and ``jax.vmap`` (a traced System is still a System).
``ai2dft.molecule`` implements it for ``System`` (H real [nao, nao]), ``ai2dft.crystal_energy`` for
``CrystalSystem`` (H(k) complex [nk, nao, nao]), ``ai2dft.spin_molecule`` for ``SpinSystem`` (H [2, nao, nao],
alpha and beta), ``ai2dft.spin_crystal_energy`` for ``SpinCrystalSystem`` (H(k) [2, nk, nao, nao]); a new kind
implements them in its own module, registered on import, and ``density_matrix``, ``free_energy``, ``scf``,
``roothaan_diis`` and ``minimize_free_energy`` take it unchanged. "H-shaped": the kind's shape of H. The interface: ``energy``,
``fock``, ``orthogonalizer``, ``density_and_entropy_of``, ``effective_hamiltonian``, ``kept_part`` (the
kept basis: padding and dropped near-null directions of S excluded) and ``metric`` (the real inner product
<a, b> = sum w Re(conj(a) b): k-weights for crystals, 1 for molecules; ``inner``, ``fock_of_gradient``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NoReturn

import jax
import jax.numpy as jnp

Array = jax.Array


def not_a_system(name: str, system: Any) -> NoReturn:
    """Raise the TypeError of a public function called with something that is not a system."""
    raise TypeError(f"ai2dft.{name} needs an ai2dft.System, CrystalSystem, SpinSystem, SpinCrystalSystem or SpinorSystem as its "
                    f"first argument, got {type(system).__name__}")


def check_kind(name: str, system: Any) -> None:
    """The TypeError of :func:`not_a_system` unless ``system``'s type is a registered kind (the argument check
    of the functions written on top of the interface)."""
    if energy.dispatch(type(system)) is energy.dispatch(object):
        not_a_system(name, system)


def _interface(name: str, doc: str) -> Callable:
    """A singledispatch function ``name(system, *args)`` with no default implementation."""

    @functools.singledispatch
    def function(system, *args):
        not_a_system(name, system)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


energy = _interface("energy", """(system, D) -> [] Kohn-Sham total energy E_KS[D] (Hartree; per cell for crystals).
    jax.grad in D gives the Fock matrix (molecules) or w_k conj(F(k)) (crystals): metric(system) * conj(F).""")
fock = _interface("fock", """(system, D) -> Kohn-Sham matrix F[D] = dE_KS/dD (Hartree), same shape as D.""")
orthogonalizer = _interface("orthogonalizer", """(system) -> X, H-shaped: Loewdin S^-1/2 on the kept basis
    (padded AOs and dropped directions: identity).""")
density_and_entropy_of = _interface("density_and_entropy_of", """(system, H, X=None) -> (D(H), entropy): the
    spin-summed (SpinSystem: per spin) density matrix (H-shaped) and dimensionless smearing entropy at the system's electron count,
    smearing and overlap; X = orthogonalizer(system) if precomputed.""")
effective_hamiltonian = _interface("effective_hamiltonian", """(system, H) -> H as D(H) sees it: restricted to
    the kept basis, dropped directions at an unreachable level.""")
kept_part = _interface("kept_part", """(system, A) -> the H-shaped A restricted to the kept basis (padded AOs and
    dropped directions zeroed).""")
metric = _interface("metric", """(system) -> weights w broadcastable to H-shaped arrays: <a, b> = sum w Re(conj(a) b),
    dE = <F, dD>.""")


def inner(system, a, b) -> Array:
    """<a, b> = sum w Re(conj(a) b) over the trailing H-shaped axes of a [..., *H] and b [*H] -> [...]."""
    return jnp.real(jnp.tensordot(jnp.conj(a), metric(system) * b, axes=b.ndim))


def fock_of_gradient(system, dE) -> Array:
    """F from dE = jax.grad(energy, argnums=1)(system, D) = metric * conj(F), without a Fock build."""
    return jnp.conj(dE) / metric(system)

"""The conjugate transpose and the Hermitian part of matrices over the last two axes.

One definition for the whole project: real symmetric matrices (molecules) are the real case
(conj is the identity there), complex Hermitian H(k) (crystals) the complex one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dagger(a: jax.Array) -> jax.Array:
    """a^H: conjugate transpose over the last two axes, [..., n, m] -> [..., m, n]."""
    return jnp.conj(jnp.swapaxes(a, -1, -2))


def hermitian_part(a: jax.Array) -> jax.Array:
    """(a + a^H) / 2 over the last two axes, [..., n, n] (the symmetric part of a real a)."""
    return 0.5 * (a + dagger(a))

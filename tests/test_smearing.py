"""Occupations, entropies, divided differences and the chemical potential (float64)."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import erfc as np_erfc

from ai2dft import smearing

KINDS = smearing.KINDS
occupations = jax.jit(smearing.occupations, static_argnums=4)


def _f_ref(kind, x):
    return 0.5 * (1.0 - np.tanh(0.5 * x)) if kind == "fermi" else 0.5 * np_erfc(x)


def _fprime_ref(kind, t):
    if kind == "fermi":
        e = np.exp(-abs(t))
        return -e / (1.0 + e) ** 2
    return -np.exp(-t * t) / math.sqrt(math.pi)


def _levels(seed, nk=3, nb=7):
    rng = np.random.default_rng(seed)
    eps = np.sort(rng.normal(scale=0.4, size=(nk, nb)), axis=1)
    kw = rng.uniform(0.5, 1.5, size=nk)
    return jnp.asarray(eps), jnp.asarray(2.0 * np.broadcast_to((kw / kw.sum())[:, None], eps.shape))


@pytest.mark.parametrize("kind", KINDS)
def test_occupations_hold_the_electrons(kind):
    eps, weights = _levels(0)
    for n_electrons, sigma in itertools.product((1.0, 5.3, 9.0), (0.0, 1e-4, 0.02, 0.3)):
        f, mu = occupations(eps, weights, n_electrons, sigma, kind)
        assert np.all((np.asarray(f) >= 0) & (np.asarray(f) <= 1))
        np.testing.assert_allclose(float(jnp.sum(weights * f)), n_electrons, rtol=1e-11)
        if sigma > 0:
            np.testing.assert_allclose(np.asarray(f), _f_ref(kind, (np.asarray(eps) - float(mu)) / sigma), atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_sigma_fills_lowest_levels_and_splits_a_degenerate_fermi_level(kind):
    eps = jnp.array([0.4, -1.0, -0.2, 0.1, -0.2, -0.2])  # 3-fold level at -0.2
    weights = jnp.full(6, 2.0)
    f, mu = occupations(eps, weights, 4.0, 0.0, kind)  # 2 below + 2 in the 3-fold level
    np.testing.assert_allclose(np.asarray(f), [0, 1, 1 / 3, 0, 1 / 3, 1 / 3], atol=1e-15)
    assert float(mu) == -0.2
    f, mu = occupations(eps, weights, 8.0, 0.0, kind)  # gapped: level full, mu mid-gap
    np.testing.assert_array_equal(np.asarray(f), [0, 1, 1, 0, 1, 1])
    np.testing.assert_allclose(float(mu), -0.05, atol=1e-15)
    # sigma -> 0+ approaches the step occupations (degenerate fraction included)
    f_small, _ = occupations(eps, weights, 4.0, 1e-5, kind)
    np.testing.assert_allclose(np.asarray(f_small), [0, 1, 1 / 3, 0, 1 / 3, 1 / 3], atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_entropy_is_minus_integral_of_x_fprime(kind):
    """s(x) = -int_x^inf t f'(t) dt (the property that makes Mermin's free energy variational)."""
    xs = np.array([-3.5, -2.5, -0.7, 0.0, 0.3, 1.9, 4.0])
    s = np.asarray(smearing.entropy(kind, jnp.asarray(xs)))
    top = 45.0 if kind == "fermi" else 12.0  # the integrand beyond is below 1e-17

    def integral(a, b):  # t f'(t) has one sign on each piece
        return integrate.quad(lambda t: t * _fprime_ref(kind, t), a, b, epsabs=1e-17, epsrel=1e-12, limit=200)[0]

    ref = [-((integral(x, 0.0) if x < 0 else 0.0) + integral(max(x, 0.0), top)) for x in xs]
    np.testing.assert_allclose(s, ref, rtol=1e-10, atol=1e-15)
    if kind == "fermi":  # and it is the mixing entropy of the occupation
        f = _f_ref(kind, xs)
        np.testing.assert_allclose(s, -(f * np.log(f) + (1 - f) * np.log1p(-f)), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_derivatives_and_extreme_arguments(kind):
    xs = jnp.linspace(-8.0, 8.0, 33)
    grad_f = jax.jit(jax.vmap(jax.grad(lambda x: smearing.occupation(kind, x))))
    grad_s = jax.jit(jax.vmap(jax.grad(lambda x: smearing.entropy(kind, x))))
    np.testing.assert_allclose(np.asarray(smearing.occupation_derivative(kind, xs)), np.asarray(grad_f(xs)), atol=1e-15)
    np.testing.assert_allclose(np.asarray(grad_s(xs)), np.asarray(xs * smearing.occupation_derivative(kind, xs)),
                               atol=1e-14)
    big = jnp.array([-1e8, -800.0, 800.0, 1e8])
    values = [smearing.occupation(kind, big), smearing.occupation_derivative(kind, big), smearing.entropy(kind, big),
              smearing.divided_difference(kind, big[:, None], big[None, :])]
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in values)
    np.testing.assert_array_equal(np.asarray(values[0]), [1, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(values[2]), [0, 0, 0, 0])


@pytest.mark.parametrize("kind", KINDS)
def test_divided_difference_is_accurate_for_close_and_far_pairs(kind):
    pairs = [(0.3, 0.3), (0.3, 0.3 + 1e-12), (0.3, 0.3 + 1e-7), (1.1, 1.13), (2.0, 2.049), (2.0, 2.051),
             (-3.0, -3.2), (-5.0, 5.0), (-30.0, 30.0), (6.0, 6.5), (-1.0, 3.0)]
    a, b = (jnp.array(v) for v in zip(*pairs))
    got = np.asarray(smearing.divided_difference(kind, a, b))
    ref = []
    for xa, xb in pairs:  # the mean of f' over [xb, xa]: an integral with no cancellation
        if xa == xb:
            ref.append(_fprime_ref(kind, xa))
        else:
            ref.append(integrate.quad(lambda t: _fprime_ref(kind, t), xb, xa, epsabs=0, epsrel=1e-13)[0] / (xa - xb))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(got, np.asarray(smearing.divided_difference(kind, b, a)), rtol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_occupation_jacobian_includes_the_chemical_potential_shift(kind):
    eps, weights = _levels(1, nk=2, nb=5)
    sigma, n_electrons = 0.15, 4.4
    occ = jax.jit(lambda e: smearing.occupations(e, weights, n_electrons, sigma, kind)[0])
    jac = np.asarray(jax.jit(jax.jacobian(occ))(eps)).reshape(eps.size, eps.size)
    h = 1e-6
    steps = h * jnp.eye(eps.size).reshape((eps.size,) + eps.shape)
    fd = np.asarray(jax.vmap(lambda s: occ(eps + s) - occ(eps - s))(steps)).reshape(eps.size, eps.size).T / (2 * h)
    np.testing.assert_allclose(jac, fd, atol=1e-8 * np.max(np.abs(fd)))
    # the electron count does not move: sum_i w_i df_i/deps_j = 0
    np.testing.assert_allclose(np.asarray(weights).ravel() @ jac, 0.0, atol=1e-12)
    # d mu / d n_electrons and d mu / d sigma from the implicit function theorem
    mu = jax.jit(lambda *a: smearing.chemical_potential(kind, *a))
    args = (eps, weights, n_electrons, sigma)
    for argnum in (2, 3):
        g = jax.jit(jax.grad(mu, argnums=argnum))(*args)
        lo, hi = list(args), list(args)
        lo[argnum], hi[argnum] = args[argnum] - 1e-6, args[argnum] + 1e-6
        fd_mu = (mu(*hi) - mu(*lo)) / 2e-6
        np.testing.assert_allclose(float(g), float(fd_mu), rtol=1e-6)


def test_chemical_potential_is_robust_to_wide_gaps_and_tiny_sigma():
    eps = jnp.array([-20.0, -0.5, 0.7, 30.0, 1e3])
    weights = jnp.full(5, 2.0)
    for kind in KINDS:
        for sigma in (1e-9, 1e-3, 2.0):
            f, mu = occupations(eps, weights, 4.0, sigma, kind)
            np.testing.assert_allclose(float(jnp.sum(weights * f)), 4.0, rtol=1e-12)
            assert np.isfinite(float(mu))


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown smearing kind 'cold'"):
        smearing.occupation("cold", jnp.zeros(3))

"""Smearing: occupations, entropies and the chemical potential at fixed electron count.

Conventions (identical to PySCF's ``scf.addons.smearing`` and DFTK's ``Smearing.jl``):
``x = (eps - mu) / sigma`` with ``eps``, ``mu``, ``sigma`` in Hartree;

* ``"fermi"``:    f(x) = 1 / (1 + exp(x)),   s(x) = -f log f - (1 - f) log(1 - f)
* ``"gaussian"``: f(x) = erfc(x) / 2,        s(x) = exp(-x^2) / (2 sqrt(pi))

f is the occupation of one spin-orbital in [0, 1], s its dimensionless entropy; both satisfy
s'(x) = x f'(x), which makes the Mermin free energy E - sigma * sum_i w_i s(x_i) variational.

``sigma == 0`` (exactly; it may be a traced value) gives step occupations: states are filled in
order of energy, and a level that is degenerate (within ``DEGENERACY_TOL``) at the Fermi energy is
filled evenly, which is the sigma -> 0+ limit of both smearings. Its entropy is 0.

The chemical potential is found by a bracketed Newton/bisection solve inside ``jax.lax``; the solve
is never differentiated: ``chemical_potential`` carries a ``custom_jvp`` with the implicit-function
derivative at fixed electron count.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfc

KINDS = ("fermi", "gaussian")
DEGENERACY_TOL = 1e-9  # Hartree: levels closer than this share the Fermi-level filling at sigma = 0
_BRACKET_WIDTHS = 50.0  # mu is bracketed by [min(eps), max(eps)] widened by this many sigmas
_MAX_MU_ITERATIONS = 200
_GAUSS_SERIES_RADIUS = 0.05  # |xa - xb| below which the Gaussian divided difference uses its series


def validate_kind(kind: str) -> str:
    """Return ``kind`` if it names a supported smearing, else raise ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"unknown smearing kind {kind!r}; expected one of {KINDS}")
    return kind


def occupation(kind: str, x: jax.Array) -> jax.Array:
    """Occupation f(x) in [0, 1] of one spin-orbital, elementwise."""
    if validate_kind(kind) == "fermi":
        return jax.nn.sigmoid(-x)
    return 0.5 * erfc(x)


def occupation_derivative(kind: str, x: jax.Array) -> jax.Array:
    """df/dx (<= 0), elementwise; overflow-free for any finite x."""
    if validate_kind(kind) == "fermi":
        t = jnp.exp(-jnp.abs(x))
        return -t / (1.0 + t) ** 2
    return -jnp.exp(-x * x) / math.sqrt(math.pi)


def entropy(kind: str, x: jax.Array) -> jax.Array:
    """Entropy s(x) >= 0 of one spin-orbital (dimensionless), elementwise; s'(x) = x f'(x)."""
    if validate_kind(kind) == "fermi":
        a = jnp.abs(x)  # s is even; this form has no cancellation for large |x|
        return jnp.log1p(jnp.exp(-a)) + a * jax.nn.sigmoid(-a)
    return jnp.exp(-x * x) / (2.0 * math.sqrt(math.pi))


def divided_difference(kind: str, xa: jax.Array, xb: jax.Array) -> jax.Array:
    """(f(xa) - f(xb)) / (xa - xb), and f'(xa) where xa == xb; broadcasts xa against xb.

    Accurate to a few ulps of max|f'| for all pairs (no threshold that trades accuracy):
    Fermi-Dirac uses the exact identity
    f(a) - f(b) = -sinh((a - b)/2) / (2 cosh(a/2) cosh(b/2)), evaluated in logarithms;
    Gaussian uses the central Taylor series to 7th order for |a - b| < 0.05 (truncation < 1e-17)
    and the tail-wise difference of erfc otherwise (rounding < 1e-14).
    """
    if validate_kind(kind) == "fermi":
        return _fermi_divided_difference(xa, xb)
    return _gaussian_divided_difference(xa, xb)


def _log_cosh(z):
    a = jnp.abs(z)
    return a + jnp.log1p(jnp.exp(-2.0 * a)) - math.log(2.0)


def _log_sinhc(z):
    """log(sinh(z) / z), 0 at z = 0.

    Three pieces that agree to round-off at their joins (series below 0.01, the direct formula
    up to 1, the asymptotic form above), each fed a clipped argument: XLA may recompute z in a
    fused loop and get a value a few ulps different at each use, so no piece may depend on an
    exact test such as z == 0 (with one it returned log(sinh(1)) on the diagonal under vmap).
    """
    a = jnp.abs(z)
    a2 = a * a
    series = a2 * (1.0 / 6.0 - a2 * (1.0 / 180.0 - a2 / 2835.0))  # error < 3e-21 for a < 0.01
    mid = jnp.clip(a, 0.01, 1.0)
    direct = jnp.log(jnp.sinh(mid) / mid)
    far = jnp.maximum(a, 1.0)
    asymptotic = far + jnp.log1p(-jnp.exp(-2.0 * far)) - jnp.log(2.0 * far)
    return jnp.where(a < 0.01, series, jnp.where(a < 1.0, direct, asymptotic))


def _fermi_divided_difference(xa, xb):
    log_mag = _log_sinhc(0.5 * (xa - xb)) - _log_cosh(0.5 * xa) - _log_cosh(0.5 * xb)
    return -0.25 * jnp.exp(log_mag)


def _gaussian_divided_difference(xa, xb):
    xa, xb = jnp.broadcast_arrays(xa, xb)
    m, h = 0.5 * (xa + xb), 0.5 * (xa - xb)
    # f^(2k+1)(m) = -H_2k(m) exp(-m^2) / sqrt(pi); sum_k f^(2k+1)(m) h^2k / (2k+1)!
    m2, h2 = m * m, h * h
    hermite = (1.0, 4.0 * m2 - 2.0, (16.0 * m2 - 48.0) * m2 + 12.0,
               ((64.0 * m2 - 480.0) * m2 + 720.0) * m2 - 120.0)
    series = hermite[0] + h2 * (hermite[1] / 6.0 + h2 * (hermite[2] / 120.0 + h2 * hermite[3] / 5040.0))
    near = -jnp.exp(-m2) / math.sqrt(math.pi) * series
    close = jnp.abs(xa - xb) < _GAUSS_SERIES_RADIUS
    dx = jnp.where(close, 1.0, xa - xb)
    # both in the upper tail: erfc(a) - erfc(b); both in the lower tail: erfc(-b) - erfc(-a)
    upper = m >= 0
    diff = jnp.where(upper, erfc(xa) - erfc(xb), erfc(-xb) - erfc(-xa))
    return jnp.where(close, near, 0.5 * diff / dx)


def zero_temperature_occupations(eps: jax.Array, weights: jax.Array, n_electrons) -> tuple[jax.Array, jax.Array]:
    """Step occupations and a Fermi level for sigma = 0.

    eps: state energies, any shape; weights: electrons held by each state when full (e.g.
    2 * k-weight), same shape. Fills the lowest states; a level degenerate within DEGENERACY_TOL at
    the Fermi energy gets the same fractional occupation on each of its states.
    Returns (f [same shape as eps] in [0, 1], mu): mu is the Fermi level if it is partly filled,
    else the midpoint between the highest filled and lowest empty level (the top level if none is empty).
    """
    e, w = eps.ravel(), jnp.broadcast_to(weights, eps.shape).ravel()
    order = jnp.argsort(e)
    e_sorted, filled = e[order], jnp.cumsum(w[order])
    slack = 1e-10 * jnp.maximum(n_electrons, 1.0)
    enough = filled >= n_electrons - slack
    fermi_index = jnp.where(enough[-1], jnp.argmax(enough), e.size - 1)  # all full if n exceeds capacity
    e_fermi = jnp.where(n_electrons > slack, e_sorted[fermi_index], e_sorted[0] - 1.0)
    below = e < e_fermi - DEGENERACY_TOL
    at = jnp.abs(e - e_fermi) <= DEGENERACY_TOL
    n_at = jnp.sum(jnp.where(at, w, 0.0))
    fraction = jnp.clip((n_electrons - jnp.sum(jnp.where(below, w, 0.0))) / jnp.where(n_at > 0, n_at, 1.0), 0.0, 1.0)
    f = jnp.where(below, 1.0, jnp.where(at, fraction, 0.0)).astype(eps.dtype)
    above = e > e_fermi + DEGENERACY_TOL
    e_empty = jnp.min(jnp.where(above, e, jnp.inf))
    gap_mid = jnp.where(jnp.isfinite(e_empty), 0.5 * (e_fermi + e_empty), e_fermi)
    mu = jnp.where(fraction < 1.0, e_fermi, gap_mid)
    return f.reshape(eps.shape), mu


def electron_count(kind: str, eps, weights, mu, sigma) -> tuple[jax.Array, jax.Array]:
    """N(mu) = sum_i w_i f((eps_i - mu) / sigma) and dN/dmu (>= 0) for sigma > 0."""
    x = (eps - mu) / sigma
    n = jnp.sum(weights * occupation(kind, x))
    dn_dmu = -jnp.sum(weights * occupation_derivative(kind, x)) / sigma
    return n, dn_dmu


def _solve_mu(kind, eps, weights, n_electrons, sigma, mu0):
    """Safeguarded Newton on N(mu) = n_electrons inside a shrinking bracket (sigma > 0)."""
    sigma_safe = jnp.where(sigma > 0, sigma, 1.0)
    lo0 = jnp.min(eps) - _BRACKET_WIDTHS * sigma_safe
    hi0 = jnp.max(eps) + _BRACKET_WIDTHS * sigma_safe
    tol = 1e3 * jnp.finfo(eps.dtype).eps * jnp.maximum(n_electrons, 1.0)

    def cond(state):
        it, _, _, _, done = state
        return (~done) & (it < _MAX_MU_ITERATIONS) & (sigma > 0)

    def body(state):
        it, mu, lo, hi, _ = state
        n, dn = electron_count(kind, eps, weights, mu, sigma_safe)
        r = n - n_electrons
        lo = jnp.where(r < 0, mu, lo)
        hi = jnp.where(r > 0, mu, hi)
        newton = mu - r / jnp.where(dn > 0, dn, 1.0)
        accept = (dn > 0) & (newton > lo) & (newton < hi)
        width_done = hi - lo <= 4.0 * jnp.finfo(eps.dtype).eps * jnp.maximum(jnp.abs(lo), jnp.abs(hi))
        done = (jnp.abs(r) <= tol) | width_done
        mu_next = jnp.where(done, mu, jnp.where(accept, newton, 0.5 * (lo + hi)))
        return it + 1, mu_next, lo, hi, done

    mu_start = jnp.clip(mu0, lo0, hi0)
    state = (jnp.asarray(0), mu_start, lo0, hi0, jnp.asarray(False))
    return jax.lax.while_loop(cond, body, state)[1]


def chemical_potential(kind: str, eps, weights, n_electrons, sigma) -> jax.Array:
    """mu with sum_i w_i f((eps_i - mu) / sigma) = n_electrons (scalar, Hartree).

    eps: state energies, any shape; weights: electrons per full state, broadcastable to eps.
    For sigma = 0 the zero-temperature mu of ``zero_temperature_occupations``. Derivatives follow
    from the implicit-function theorem (the solver itself is never differentiated); they vanish
    where sum_i w_i f'_i = 0 (sigma = 0, or a gap much wider than sigma), where mu is not
    determined by the electron count.
    """
    validate_kind(kind)
    eps = jnp.asarray(eps)
    weights = jnp.broadcast_to(jnp.asarray(weights, eps.dtype), eps.shape)
    return _chemical_potential(kind, eps, weights, jnp.asarray(n_electrons, eps.dtype), jnp.asarray(sigma, eps.dtype))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _chemical_potential(kind, eps, weights, n_electrons, sigma):
    _, mu0 = zero_temperature_occupations(eps, weights, n_electrons)
    return jnp.where(sigma > 0, _solve_mu(kind, eps, weights, n_electrons, sigma, mu0), mu0)


@_chemical_potential.defjvp
def _chemical_potential_jvp(kind, primals, tangents):
    eps, weights, n_electrons, sigma = primals
    d_eps, d_weights, d_n, d_sigma = tangents
    mu = _chemical_potential(kind, eps, weights, n_electrons, sigma)
    sigma_safe = jnp.where(sigma > 0, sigma, 1.0)
    x = (eps - mu) / sigma_safe
    fx = occupation_derivative(kind, x)  # df/dx <= 0
    z = jnp.sum(weights * fx)
    # 0 = dN - sum_i dw_i f_i - sum_i w_i f'(x_i) (d eps_i - d mu - x_i d sigma) / sigma
    numerator = (jnp.sum(weights * fx * (d_eps - x * d_sigma))
                 - sigma_safe * (d_n - jnp.sum(d_weights * occupation(kind, x))))
    ok = (sigma > 0) & (z < 0)
    d_mu = jnp.where(ok, numerator / jnp.where(ok, z, 1.0), 0.0)
    return mu, d_mu


def occupations(eps: jax.Array, weights: jax.Array, n_electrons, sigma, kind: str) -> tuple[jax.Array, jax.Array]:
    """Occupations f in [0, 1] per spin-orbital (same shape as eps) and mu, at fixed electron count.

    Differentiable in eps (and sigma, n_electrons) including the chemical-potential shift.
    """
    mu = chemical_potential(kind, eps, weights, n_electrons, sigma)
    sigma_safe = jnp.where(sigma > 0, sigma, 1.0)
    f_step, _ = zero_temperature_occupations(jax.lax.stop_gradient(eps), jnp.broadcast_to(weights, eps.shape),
                                             n_electrons)
    return jnp.where(sigma > 0, occupation(kind, (eps - mu) / sigma_safe), f_step), mu


def total_entropy(eps: jax.Array, weights: jax.Array, mu, sigma, kind: str) -> jax.Array:
    """sum_i w_i s((eps_i - mu) / sigma), dimensionless; 0 at sigma = 0. Multiply by sigma for Hartree."""
    sigma_safe = jnp.where(sigma > 0, sigma, 1.0)
    s = jnp.sum(weights * entropy(kind, (eps - mu) / sigma_safe))
    return jnp.where(sigma > 0, s, 0.0)

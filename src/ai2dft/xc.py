"""Spin-unpolarized exchange-correlation functionals in JAX, point by point equal to libxc.

Each functional is a sum of libxc components, written as an energy per volume
``e(rho, sigma) = rho * eps_xc`` (Hartree / Bohr^3) with ``rho`` the total density and
``sigma = |grad rho|^2``. Potentials come from automatic differentiation of ``e``, which is
pointwise, so ``vrho = de/drho`` and ``vsigma = de/dsigma`` (libxc's ``vrho`` and ``vsigma``).

Small densities are treated as libxc 7 does: a component is exactly zero (energy and
potentials) where the density is below its ``dens_threshold`` (exchange screens each spin
channel, i.e. ``rho/2 <= 1e-15``; PBE correlation uses 1e-12), and ``sigma`` is floored at
``sigma_threshold**2`` with libxc's ``sigma_threshold = dens_threshold**(4/3)``.
Inactive points are evaluated at a safe dummy density inside ``jnp.where``, so gradients are
finite at ``rho = 0`` (padding grid points).

Names follow PySCF's ``"exchange,correlation"`` form. Exchange: ``lda`` (Slater, ``LDA_X``),
``pbe`` (``GGA_X_PBE``), ``b88`` (Becke 88, ``GGA_X_B88``). Correlation: ``vwn`` (libxc ``LDA_C_VWN``
= VWN5, which is what PySCF's ``VWN`` means; ``vwn_rpa``, PySCF's ``VWN3``/``VWNRPA``, is
``LDA_C_VWN_RPA``), ``pw`` (original PW92, ``LDA_C_PW``), ``pw_mod`` (``LDA_C_PW_MOD``, the PW92
inside PBE), ``pbe`` (``GGA_C_PBE``), ``lyp`` (``GGA_C_LYP``). Either part may be empty (``"pbe,"``
is PBE exchange only). Shorthands as in PySCF: ``"lda"`` and ``"slater"`` mean ``"lda,"`` (exchange
only!), ``"svwn"`` is ``"lda,vwn"``, ``"spw92"`` is ``"lda,pw_mod"``, ``"pbe"`` is ``"pbe,pbe"``,
``"blyp"`` is ``"b88,lyp"``.

Global hybrids (canonical names ``"pbe0"``, ``"b3lyp"``, ``"b3lyp5"``) add a fraction
``exact_exchange_fraction(name)`` of density-fitted exact exchange (``ai2dft.exchange``) to a
weighted sum of the components above; ``energy_density`` and ``potentials`` give the semi-local
part only, as libxc's ``eval_xc`` does. ``pbe0`` (alias ``pbeh``, ``pbe1pbe``) is libxc
``HYB_GGA_XC_PBEH``: 0.25 HF + 0.75 PBE exchange + PBE correlation. ``b3lyp`` (alias ``b3lypg``) is
what PySCF means by B3LYP, libxc ``HYB_GGA_XC_B3LYP``: 0.2 HF + 0.08 Slater + 0.72 B88 exchange,
0.19 VWN_RPA (VWN's RPA fit, "VWN3" in PySCF / VWN1RPA in Gaussian's naming) + 0.81 LYP correlation;
``b3lyp5`` is the same with VWN5 (PySCF's ``B3LYP5``).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

_RS_FACTOR = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # rs = _RS_FACTOR * rho^(-1/3)
_LDA_X_FACTOR = -0.75 * (3.0 / math.pi) ** (1.0 / 3.0)  # eps_x = _LDA_X_FACTOR * rho^(1/3)

# VWN parameters of the paramagnetic fit (libxc vwn.mpl, Hartree): A, b, c, x0.
_VWN5 = (0.0310907, 3.72744, 12.9352, -0.10498)
_VWN_RPA = (0.0310907, 13.0720, 42.7198, -0.409286)

# PW92 paramagnetic parameters (libxc lda_c_pw.mpl): A, alpha1, beta1..beta4 (p = 1).
_PW_BETAS = (7.5957, 3.5876, 1.6382, 0.49294)
_PW = (0.031091, 0.21370) + _PW_BETAS
_PW_MOD = (0.0310907, 0.21370) + _PW_BETAS

# PBE (libxc gga_x_pbe.mpl, gga_c_pbe.mpl).
_PBE_KAPPA = 0.8040
_PBE_MU = 0.2195149727645171
_PBE_BETA = 0.06672455060314922
_PBE_GAMMA = (1.0 - math.log(2.0)) / math.pi**2

# B88 (libxc gga_x_b88.mpl) and LYP (libxc gga_c_lyp.mpl: a, b, c, d).
_B88_BETA = 0.0042
_LYP = (0.04918, 0.132, 0.2533, 0.349)
_CF = 0.3 * (3.0 * math.pi**2) ** (2.0 / 3.0)  # Thomas-Fermi constant C_F


def _rs(rho: Array) -> Array:
    """Wigner-Seitz radius (Bohr) of a positive density."""
    return _RS_FACTOR / jnp.cbrt(rho)


def _vwn_eps(rs: Array, params: tuple[float, float, float, float]) -> Array:
    """Paramagnetic VWN correlation energy per particle (libxc ``f_aux``)."""
    A, b, c, x0 = params
    q = math.sqrt(4.0 * c - b * b)
    f2 = b * x0 / (x0 * x0 + b * x0 + c)
    x = jnp.sqrt(rs)
    fx = rs + b * x + c
    atan = jnp.arctan(q / (2.0 * x + b))
    return A * (
        jnp.log(rs / fx)
        + (2.0 * b / q - f2 * 2.0 * (2.0 * x0 + b) / q) * atan
        - f2 * jnp.log((x - x0) ** 2 / fx)
    )


def _pw_eps(rs: Array, params: tuple[float, ...]) -> Array:
    """Paramagnetic PW92 correlation energy per particle (libxc ``g(1, rs)``)."""
    A, alpha1, b1, b2, b3, b4 = params
    x = jnp.sqrt(rs)
    den = 2.0 * A * (b1 * x + b2 * rs + b3 * rs * x + b4 * rs * rs)
    # log(1 + x) as libxc writes it (log1p would differ from libxc by ~1e-8 relative at rs ~ 1e4)
    return -2.0 * A * (1.0 + alpha1 * rs) * jnp.log(1.0 + 1.0 / den)


def _lda_x(rho: Array, sigma: Array) -> Array:
    return _LDA_X_FACTOR * rho * jnp.cbrt(rho)


def _lda_c(eps_fn: Callable[[Array], Array]) -> Callable[[Array, Array], Array]:
    return lambda rho, sigma: rho * eps_fn(_rs(rho))


def _gga_x_pbe(rho: Array, sigma: Array) -> Array:
    # s^2 = sigma / (4 (3 pi^2)^(2/3) rho^(8/3))
    rho13 = jnp.cbrt(rho)
    s2 = sigma / (4.0 * (3.0 * math.pi**2) ** (2.0 / 3.0) * rho**2 * rho13**2)
    fx = 1.0 + _PBE_KAPPA * (1.0 - _PBE_KAPPA / (_PBE_KAPPA + _PBE_MU * s2))
    return _LDA_X_FACTOR * rho * rho13 * fx


def _gga_c_pbe(rho: Array, sigma: Array) -> Array:
    rs = _rs(rho)
    ec = _pw_eps(rs, _PW_MOD)
    # t^2 = sigma / (rho^(8/3) * 16 * 2^(2/3) * rs)  (phi = 1 for the unpolarized gas)
    t2 = sigma / (rho**2 * jnp.cbrt(rho) ** 2 * 16.0 * 2.0 ** (2.0 / 3.0) * rs)
    a = _PBE_BETA / (_PBE_GAMMA * (jnp.exp(-ec / _PBE_GAMMA) - 1.0))  # exp - 1 and log(1 + x) as libxc
    f1 = t2 + a * t2 * t2
    h = _PBE_GAMMA * jnp.log(1.0 + _PBE_BETA * f1 / (_PBE_GAMMA * (1.0 + a * f1)))
    return rho * (ec + h)


def _gga_x_b88(rho: Array, sigma: Array) -> Array:
    # Becke's correction per spin channel (rho_s = rho/2, |grad rho_s| = sqrt(sigma)/2), both channels
    rho_s43 = (0.5 * rho) * jnp.cbrt(0.5 * rho)
    x = 0.5 * jnp.sqrt(sigma) / rho_s43
    correction = -2.0 * _B88_BETA * rho_s43 * x * x / (1.0 + 6.0 * _B88_BETA * x * jnp.arcsinh(x))
    return _lda_x(rho, sigma) + correction


def _gga_c_lyp(rho: Array, sigma: Array) -> Array:
    # Miehlich et al.'s gradient form of LYP at rho_a = rho_b = rho/2 (no Laplacian), with r = rho^(-1/3):
    # e = -a / (1 + d r) [rho + b exp(-c r) (C_F rho - sigma rho^(-5/3) (3 + 7 delta) / 72)]
    a, b, c, d = _LYP
    r = 1.0 / jnp.cbrt(rho)
    delta = c * r + d * r / (1.0 + d * r)
    gradient = sigma * r**5 * (3.0 + 7.0 * delta) / 72.0
    return -a / (1.0 + d * r) * (rho + b * jnp.exp(-c * r) * (_CF * rho - gradient))


class _Component(NamedTuple):
    """One libxc functional: energy per volume on active points and libxc's thresholds."""

    fn: Callable[[Array, Array], Array]
    dens_threshold: float
    per_spin: bool  # libxc exchange screens each spin channel: zero where rho/2 <= threshold
    gga: bool = False


_EXCHANGE = {
    "lda": _Component(_lda_x, 1e-15, True),
    "pbe": _Component(_gga_x_pbe, 1e-15, True, gga=True),
    "b88": _Component(_gga_x_b88, 1e-15, True, gga=True),
}
_CORRELATION = {
    "vwn": _Component(_lda_c(lambda rs: _vwn_eps(rs, _VWN5)), 1e-15, False),
    "vwn_rpa": _Component(_lda_c(lambda rs: _vwn_eps(rs, _VWN_RPA)), 1e-15, False),
    "pw": _Component(_lda_c(lambda rs: _pw_eps(rs, _PW)), 1e-15, False),
    "pw_mod": _Component(_lda_c(lambda rs: _pw_eps(rs, _PW_MOD)), 1e-15, False),
    "pbe": _Component(_gga_c_pbe, 1e-12, False, gga=True),
    "lyp": _Component(_gga_c_lyp, 1e-14, False, gga=True),
}


class _Hybrid(NamedTuple):
    """A global hybrid: exact-exchange fraction and weighted semi-local exchange / correlation parts."""

    exact_exchange: float
    exchange: tuple[tuple[str, float], ...]
    correlation: tuple[tuple[str, float], ...]


_B3 = ((("lda", 1.0 - 0.2 - 0.72), ("b88", 0.72)), 1.0 - 0.81, 0.81)  # libxc's arithmetic: 1 - a0 - ax, ax; 1 - ac, ac
_HYBRIDS = {
    "pbe0": _Hybrid(0.25, (("pbe", 0.75),), (("pbe", 1.0),)),
    "b3lyp": _Hybrid(0.2, _B3[0], (("vwn_rpa", _B3[1]), ("lyp", _B3[2]))),
    "b3lyp5": _Hybrid(0.2, _B3[0], (("vwn", _B3[1]), ("lyp", _B3[2]))),
}
_HYBRID_ALIASES = {"pbeh": "pbe0", "pbe1pbe": "pbe0", "b3lypg": "b3lyp"}

# PySCF spellings: whole names, then the exchange and correlation tokens of "x,c".
_NAME_ALIASES = {
    "lda": "lda,", "slater": "lda,", "svwn": "lda,vwn", "spw92": "lda,pw_mod", "pbe": "pbe,pbe", "blyp": "b88,lyp",
}
_EXCHANGE_ALIASES = {"slater": "lda", "gga_x_pbe": "pbe", "lda_x": "lda", "gga_x_b88": "b88"}
_CORRELATION_ALIASES = {
    "vwn5": "vwn", "vwn3": "vwn_rpa", "vwnrpa": "vwn_rpa", "lda_c_vwn": "vwn", "lda_c_vwn_rpa": "vwn_rpa",
    "lda_c_pw": "pw", "lda_c_pw_mod": "pw_mod", "pwmod": "pw_mod", "gga_c_pbe": "pbe", "gga_c_lyp": "lyp",
}


def _unsupported(name: str) -> ValueError:
    return ValueError(
        f"unsupported exchange-correlation functional {name!r}: give 'exchange,correlation' with "
        f"exchange in {sorted(_EXCHANGE)} (or empty) and correlation in {sorted(_CORRELATION)} "
        f"(or empty), e.g. 'lda,vwn', 'pbe,pbe'; shorthands {sorted(_NAME_ALIASES)}; global hybrids "
        f"{sorted(_HYBRIDS)} (meta-GGAs, range-separated and double hybrids and non-local VV10 are not implemented)"
    )


def canonical_xc(name: str) -> str:
    """Canonical name of a supported functional (PySCF spellings, case and spaces ignored):
    ``"lda,vwn"``, ``"pbe,pbe"``, ``"lda,"`` (exchange only), ..., or a hybrid's ``"pbe0"``, ``"b3lyp"``.

    Raises ``ValueError`` listing the supported parts for anything else.
    """
    key = "".join(str(name).split()).lower()
    key = _HYBRID_ALIASES.get(key, key)
    if key in _HYBRIDS:
        return key
    key = _NAME_ALIASES.get(key, key)
    parts = key.split(",")
    if len(parts) != 2:
        raise _unsupported(name)
    x = _EXCHANGE_ALIASES.get(parts[0], parts[0])
    c = _CORRELATION_ALIASES.get(parts[1], parts[1])
    if x not in _EXCHANGE | {"": None} or c not in _CORRELATION | {"": None} or not (x or c):
        raise _unsupported(name)
    return f"{x},{c}"


def component_names(name: str) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]:
    """The semi-local part as ((exchange, weight), ...), ((correlation, weight), ...), in the canonical
    part names (keys of the exchange and correlation tables, e.g. ``(("pbe", 0.75),), (("pbe", 1.0),)`` for pbe0)."""
    canonical = canonical_xc(name)
    if canonical in _HYBRIDS:
        return _HYBRIDS[canonical].exchange, _HYBRIDS[canonical].correlation
    x, c = canonical.split(",")
    return (((x, 1.0),) if x else ()), (((c, 1.0),) if c else ())


def _components(name: str) -> list[tuple[float, _Component]]:
    """(weight, component) of the semi-local part."""
    exchange, correlation = component_names(name)
    return [(w, _EXCHANGE[x]) for x, w in exchange] + [(w, _CORRELATION[c]) for c, w in correlation]


def is_gga(name: str) -> bool:
    """True when the functional depends on sigma = |grad rho|^2."""
    return any(c.gga for _, c in _components(name))


def exact_exchange_fraction(name: str) -> float:
    """Fraction alpha of exact (Hartree-Fock) exchange: 0.25 for PBE0, 0.2 for B3LYP, 0 for LDAs/GGAs."""
    canonical = canonical_xc(name)
    return _HYBRIDS[canonical].exact_exchange if canonical in _HYBRIDS else 0.0


def _screened(component: _Component, rho: Array, sigma: Array) -> Array:
    """libxc's thresholds around one component; zero, with zero gradient, on inactive points."""
    thr = component.dens_threshold
    active = (rho / 2.0 > thr) if component.per_spin else (rho >= thr)
    rho_safe = jnp.where(active, rho, 1.0)
    sigma_safe = jnp.where(active, jnp.maximum(sigma, thr ** (8.0 / 3.0)), 0.0)
    return jnp.where(active, component.fn(rho_safe, sigma_safe), 0.0)


def _sigma_or_zeros(name: str, rho: Array, sigma: Array | None) -> Array:
    if sigma is not None:
        return sigma
    if is_gga(name):
        raise ValueError(f"functional {name!r} is a GGA: sigma = |grad rho|^2 is required")
    return jnp.zeros_like(rho)


def energy_density(name: str, rho: Array, sigma: Array | None = None) -> Array:
    """Semi-local XC energy per volume ``rho * eps_xc`` [ngrid] (Hartree/Bohr^3), exact exchange excluded.

    rho: [ngrid] total density (Bohr^-3); sigma: [ngrid] |grad rho|^2 (Bohr^-8), GGAs only.
    """
    sigma = _sigma_or_zeros(name, rho, sigma)
    return sum(w * _screened(c, rho, sigma) for w, c in _components(name))


def potentials(name: str, rho: Array, sigma: Array | None = None) -> tuple[Array, Array, Array]:
    """``(e, vrho, vsigma)`` each [ngrid]: energy per volume, de/drho and de/dsigma.

    These are libxc's ``rho * exc``, ``vrho`` and ``vsigma``; ``vsigma`` is zero for LDAs.
    """
    sigma = _sigma_or_zeros(name, rho, sigma)
    e, vjp = jax.vjp(lambda r, s: energy_density(name, r, s), rho, sigma)
    vrho, vsigma = vjp(jnp.ones_like(e))
    return e, vrho, vsigma

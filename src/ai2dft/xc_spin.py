"""Spin-polarized (collinear) exchange-correlation functionals in JAX, point by point equal to libxc (spin=1).

Inputs as libxc's: ``rho`` [2, ngrid] = (rho_alpha, rho_beta) (Bohr^-3) and, for GGAs, ``sigma`` [3, ngrid]
= (grad rho_a . grad rho_a, grad rho_a . grad rho_b, grad rho_b . grad rho_b) (Bohr^-8). Each functional is
an energy per volume e = rho * eps_xc (Hartree / Bohr^3, rho = rho_a + rho_b); ``vrho`` [2, ngrid] and
``vsigma`` [3, ngrid] are its derivatives by automatic differentiation (libxc's vrho and vsigma). The
names and parts are those of ``ai2dft.xc`` (every functional it supports, hybrids' semi-local part included).

Exchange obeys the exact spin scaling E_x[rho_a, rho_b] = (E_x[2 rho_a] + E_x[2 rho_b]) / 2, so the
unpolarized exchange of ``ai2dft.xc`` is used as it is: e_x = sum_s e_x(2 rho_s, 4 sigma_ss) / 2, zero
where rho_s <= 1e-15 (libxc screens exchange per spin channel). Correlation, with zeta = (rho_a - rho_b) / rho,
f(z) = ((1 + z)^(4/3) + (1 - z)^(4/3) - 2) / (2^(4/3) - 2) and f''(0) = 4 / (9 (2^(1/3) - 1)) (libxc's .mpl files):

* ``vwn`` (LDA_C_VWN, VWN5): eps_P + alpha_c f (1 - z^4) / f''(0) + (eps_F - eps_P) f z^4
* ``vwn_rpa`` (LDA_C_VWN_RPA): eps_P (1 - f) + eps_F f   (the RPA fits, no spin stiffness)
* ``pw``, ``pw_mod`` (PW92): g1 + z^4 f (g2 - g1 + g3 / f''(0)) - f g3 / f''(0), g3 = -alpha_c
* ``pbe`` (GGA_C_PBE): PW_MOD + gamma phi^3 log(1 + beta/gamma t^2 (1 + A t^2) / (1 + A t^2 + A^2 t^4)),
  phi = ((1 + z)^(2/3) + (1 - z)^(2/3)) / 2, t^2 = |grad rho|^2 / (16 2^(2/3) phi^2 rs rho^(8/3))
* ``lyp`` (GGA_C_LYP): Miehlich, Savin, Stoll and Preuss, Chem. Phys. Lett. 157, 200 (1989), eq. 2

Thresholds as libxc 7: correlation is zero where rho_a + rho_b < its ``dens_threshold``; elsewhere each rho_s
is raised to at least dens_threshold, sigma_aa and sigma_bb to dens_threshold^(8/3), sigma_ab is clipped to
+-(sigma_aa + sigma_bb) / 2 and 1 +- zeta to at least ``ZETA_THRESHOLD``; libxc evaluates the potentials at
the raised values, so the raises pass derivatives through unchanged.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from ai2dft import xc

Array = jax.Array

ZETA_THRESHOLD = 2.220446049250313e-16  # libxc's default zeta_threshold (DBL_EPSILON)
_FZ20 = 4.0 / (9.0 * (2.0 ** (1.0 / 3.0) - 1.0))  # f''(0) of the spin interpolation f(zeta)

# VWN fits (libxc vwn.mpl, Hartree: A, b, c, x0): ferromagnetic and spin stiffness; paramagnetic in ai2dft.xc
_VWN5_FERRO = (0.01554535, 7.06042, 18.0578, -0.32500)
_VWN5_STIFFNESS = (-1.0 / (6.0 * math.pi**2), 1.13107, 13.0045, -0.0047584)
_VWN_RPA_FERRO = (0.01554535, 20.1231, 101.578, -0.743294)

# PW92 (libxc lda_c_pw.mpl, A, alpha1, beta1..beta4): ferromagnetic and -alpha_c fits, and f''(0) as written there
_PW_FERRO = (0.015545, 0.20548, 14.1189, 6.1977, 3.3662, 0.62517)
_PW_STIFFNESS = (0.016887, 0.11125, 10.357, 3.6231, 0.88026, 0.49671)
_PW_MOD_FERRO = (0.01554535,) + _PW_FERRO[1:]
_PW_MOD_STIFFNESS = (0.0168869,) + _PW_STIFFNESS[1:]
_PW_SETS = {  # name: (paramagnetic, ferromagnetic, -alpha_c, f''(0))
    "pw": (xc._PW, _PW_FERRO, _PW_STIFFNESS, 1.709921),
    "pw_mod": (xc._PW_MOD, _PW_MOD_FERRO, _PW_MOD_STIFFNESS, 1.709920934161365617563962776245),
}


def _opz_pow(z: Array, n: float) -> Array:
    """(1 + z)^n with 1 + z raised to at least libxc's zeta threshold."""
    return jnp.maximum(1.0 + z, ZETA_THRESHOLD) ** n


def _f_zeta(z: Array) -> Array:
    return (_opz_pow(z, 4.0 / 3.0) + _opz_pow(-z, 4.0 / 3.0) - 2.0) / (2.0 ** (4.0 / 3.0) - 2.0)


def _vwn5(rs: Array, z: Array) -> Array:
    para, fz, z4 = xc._vwn_eps(rs, xc._VWN5), _f_zeta(z), z**4
    return para + xc._vwn_eps(rs, _VWN5_STIFFNESS) * fz * (1.0 - z4) / _FZ20 + (xc._vwn_eps(rs, _VWN5_FERRO) - para) * fz * z4


def _vwn_rpa(rs: Array, z: Array) -> Array:
    fz = _f_zeta(z)
    return xc._vwn_eps(rs, xc._VWN_RPA) * (1.0 - fz) + xc._vwn_eps(rs, _VWN_RPA_FERRO) * fz


def _pw(name: str) -> Callable[[Array, Array], Array]:
    para, ferro, stiffness, fz20 = _PW_SETS[name]

    def eps(rs: Array, z: Array) -> Array:
        g1, g2, g3 = xc._pw_eps(rs, para), xc._pw_eps(rs, ferro), xc._pw_eps(rs, stiffness)
        fz = _f_zeta(z)
        return g1 + z**4 * fz * (g2 - g1 + g3 / fz20) - fz * g3 / fz20

    return eps


def _total(rho_a, rho_b):
    """rho, zeta and rs of two (raised) spin densities."""
    rho = rho_a + rho_b
    return rho, (rho_a - rho_b) / rho, xc._rs(rho)


def _lda_c(eps: Callable[[Array, Array], Array]) -> Callable[..., Array]:
    def energy(rho_a, rho_b, s_aa, s_ab, s_bb):
        rho, z, rs = _total(rho_a, rho_b)
        return rho * eps(rs, z)

    return energy


_pw_mod = _pw("pw_mod")


def _gga_c_pbe(rho_a, rho_b, s_aa, s_ab, s_bb):
    rho, z, rs = _total(rho_a, rho_b)
    ec = _pw_mod(rs, z)
    phi = 0.5 * (_opz_pow(z, 2.0 / 3.0) + _opz_pow(-z, 2.0 / 3.0))
    t2 = (s_aa + 2.0 * s_ab + s_bb) / (rho**2 * jnp.cbrt(rho) ** 2 * 16.0 * 2.0 ** (2.0 / 3.0) * phi**2 * rs)
    gamma_phi3 = xc._PBE_GAMMA * phi**3
    a = xc._PBE_BETA / (xc._PBE_GAMMA * (jnp.exp(-ec / gamma_phi3) - 1.0))
    f1 = t2 + a * t2 * t2
    return rho * (ec + gamma_phi3 * jnp.log(1.0 + xc._PBE_BETA * f1 / (xc._PBE_GAMMA * (1.0 + a * f1))))


def _gga_c_lyp(rho_a, rho_b, s_aa, s_ab, s_bb):
    # Miehlich et al. eq. 2 with r = rho^(-1/3), omega = exp(-c r) / (1 + d r) rho^(-11/3), delta = c r + d r / (1 + d r)
    a, b, c, d = xc._LYP
    rho = rho_a + rho_b
    r = 1.0 / jnp.cbrt(rho)
    omega = jnp.exp(-c * r) / (1.0 + d * r) * r**11
    delta = c * r + d * r / (1.0 + d * r)
    s = s_aa + 2.0 * s_ab + s_bb  # |grad rho|^2
    ab = rho_a * rho_b
    bracket = (2.0 ** (11.0 / 3.0) * xc._CF * (rho_a ** (8.0 / 3.0) + rho_b ** (8.0 / 3.0))
               + (47.0 - 7.0 * delta) / 18.0 * s - (2.5 - delta / 18.0) * (s_aa + s_bb)
               - (delta - 11.0) / 9.0 * (rho_a * s_aa + rho_b * s_bb) / rho)
    gradient = (-2.0 / 3.0 * rho**2 * s + (2.0 / 3.0 * rho**2 - rho_a**2) * s_bb
                + (2.0 / 3.0 * rho**2 - rho_b**2) * s_aa)
    return -4.0 * a / (1.0 + d * r) * ab / rho - a * b * omega * (ab * bracket + gradient)


_CORRELATION = {  # the polarized forms of ai2dft.xc's correlation parts (same thresholds)
    "vwn": _lda_c(_vwn5),
    "vwn_rpa": _lda_c(_vwn_rpa),
    "pw": _lda_c(_pw("pw")),
    "pw_mod": _lda_c(_pw_mod),
    "pbe": _gga_c_pbe,
    "lyp": _gga_c_lyp,
}


def _raised(x: Array, floor: float) -> Array:
    """max(x, floor) with derivative 1 (libxc evaluates potentials at the raised input)."""
    return x + jax.lax.stop_gradient(jnp.maximum(x, floor) - x)


def _screened_correlation(name: str, rho: Array, sigma: Array) -> Array:
    """Correlation ``name`` with libxc's polarized thresholds; zero, with zero gradient, on inactive points."""
    thr = xc._CORRELATION[name].dens_threshold
    active = rho[0] + rho[1] >= thr
    rho_a, rho_b = (jnp.where(active, _raised(rho[s], thr), 1.0) for s in (0, 1))
    s_aa, s_bb = (jnp.where(active, _raised(sigma[i], thr ** (8.0 / 3.0)), 0.0) for i in (0, 2))
    bound = 0.5 * (s_aa + s_bb)
    s_ab = jnp.where(active, jnp.clip(sigma[1], -bound, bound), 0.0)
    return jnp.where(active, _CORRELATION[name](rho_a, rho_b, s_aa, s_ab, s_bb), 0.0)


def _exchange(name: str, rho: Array, sigma: Array) -> Array:
    """Exchange ``name`` by spin scaling: sum_s e_x(2 rho_s, 4 sigma_ss) / 2."""
    part = xc._EXCHANGE[name]
    return 0.5 * (xc._screened(part, 2.0 * rho[0], 4.0 * sigma[0]) + xc._screened(part, 2.0 * rho[1], 4.0 * sigma[2]))


def _sigma_or_zeros(name: str, rho: Array, sigma: Array | None) -> Array:
    if sigma is not None:
        return sigma
    if xc.is_gga(name):
        raise ValueError(f"functional {name!r} is a GGA: sigma [3, ngrid] (aa, ab, bb) is required")
    return jnp.zeros((3,) + rho.shape[1:], rho.dtype)


def energy_density(name: str, rho: Array, sigma: Array | None = None) -> Array:
    """Semi-local XC energy per volume ``rho * eps_xc`` [ngrid] (Hartree/Bohr^3) of a spin-polarized density,
    exact exchange excluded. rho: [2, ngrid] (alpha, beta); sigma: [3, ngrid] (aa, ab, bb), GGAs only."""
    sigma = _sigma_or_zeros(name, rho, sigma)
    exchange, correlation = xc.component_names(name)
    return (sum(w * _exchange(x, rho, sigma) for x, w in exchange)
            + sum(w * _screened_correlation(c, rho, sigma) for c, w in correlation))


def potentials(name: str, rho: Array, sigma: Array | None = None) -> tuple[Array, Array, Array]:
    """``(e [ngrid], vrho [2, ngrid], vsigma [3, ngrid])``: energy per volume and its derivatives in
    (rho_a, rho_b) and (sigma_aa, sigma_ab, sigma_bb), libxc's ``rho * exc``, ``vrho`` and ``vsigma``
    (transposed); vsigma is zero for LDAs."""
    sigma = _sigma_or_zeros(name, rho, sigma)
    e, vjp = jax.vjp(lambda r, s: energy_density(name, r, s), rho, sigma)
    vrho, vsigma = vjp(jnp.ones_like(e))
    return e, vrho, vsigma

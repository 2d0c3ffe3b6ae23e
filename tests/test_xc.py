"""XC functionals in JAX against libxc (through PySCF), point by point on real molecular densities."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft
from pyscf.dft import libxc

from ai2dft import xc
from molecules import rks

SLATER = 0.75 * (3.0 / np.pi) ** (1.0 / 3.0)  # |eps_x^LDA| / rho^(1/3)
NAMES = [  # PySCF spellings: single libxc components, then the supported combinations
    "lda,", ",vwn", ",vwn_rpa", ",pw", ",pw_mod", "pbe,", ",pbe",
    "b88,", ",lyp", "lda,vwn", "lda,vwn_rpa", "lda,pw", "lda,pw_mod", "pbe", "b88,lyp",
    "pbe0", "b3lyp", "b3lyp5",  # global hybrids: their semi-local part, which is what libxc's eval_xc gives
]


@pytest.fixture(scope="module")
def densities():
    """(rho [ngrid], sigma [ngrid]) of converged PBE H2O and NH3 on their grids, from PySCF,
    concatenated; they span rho from ~1e-32 (far grid points) to ~300 (oxygen core)."""
    rhos = []
    for name in ("H2O", "NH3"):
        mf = rks(name, "pbe")
        ao = dft.numint.eval_ao(mf.mol, mf.grids.coords, deriv=1)
        rhos.append(dft.numint.eval_rho(mf.mol, ao, mf.make_rdm1(), xctype="GGA"))
    rho = np.concatenate(rhos, axis=1)  # [4, ngrid]: rho, d/dx, d/dy, d/dz
    return rho, np.sum(rho[1:] ** 2, axis=0)


def libxc_reference(name, rho4):
    """libxc's (rho * exc, vrho, vsigma) for an unpolarized density rho4 [4, ngrid]."""
    gga = xc.is_gga(name)
    exc, vxc = libxc.eval_xc(name, rho4 if gga else rho4[0], spin=0, deriv=1)[:2]
    vsigma = vxc[1] if gga else np.zeros_like(rho4[0])
    return rho4[0] * exc, vxc[0], vsigma


@pytest.mark.parametrize("name", NAMES)
def test_matches_libxc_point_by_point(name, densities):
    """|ours - libxc| <= 1e-10 (|libxc| + Slater-exchange scale of that quantity at that density).

    The scale term matters only in the far tails where a component is a cancellation of two
    larger terms (PBE correlation -> 0 at large t); there both codes carry round-off relative
    to those terms, not to the tiny result.
    """
    rho4, sigma = densities
    rho = rho4[0]
    gga = xc.is_gga(name)
    ours = xc.potentials(name, jnp.asarray(rho), jnp.asarray(sigma) if gga else None)
    ex = SLATER * rho ** (4.0 / 3.0)
    scales = (ex, ex / rho, ex / (4.0 * (3.0 * np.pi**2) ** (2.0 / 3.0) * rho ** (8.0 / 3.0)))
    for label, a, b, scale in zip(("e", "vrho", "vsigma"), ours, libxc_reference(name, rho4), scales):
        err = np.abs(np.asarray(a) - b)
        bound = 1e-10 * (np.abs(b) + scale)
        worst = np.argmax(err / np.maximum(bound, 1e-300))
        assert np.all(err <= bound), (
            f"{name} {label}: {a[worst]} vs libxc {b[worst]} at rho={rho[worst]:.3e}, sigma={sigma[worst]:.3e}"
        )


@pytest.mark.parametrize("name", ["lda,", ",vwn", ",pw", "pbe,", ",pbe", "b88,", ",lyp", "b3lyp"])
def test_density_thresholds_as_libxc(name):
    """Zero output exactly where libxc gives zero: exchange below rho/2 = 1e-15, LDA correlation
    below 1e-15, LYP below 1e-14, PBE correlation below 1e-12; each part of a hybrid by its own."""
    rho = np.array([0.0, 5e-16, 0.99e-15, 1.01e-15, 1.99e-15, 2.01e-15, 0.99e-14, 1.01e-14, 0.99e-12, 1.01e-12, 1e-3])
    rho4 = np.stack([rho, 3.0 * rho ** (4.0 / 3.0), 0.0 * rho, 0.0 * rho])  # s ~ 0.3 (+ tiny sigma)
    sigma = rho4[1] ** 2
    e_ref, vrho_ref, _ = libxc_reference(name, rho4)
    e, vrho, _ = xc.potentials(name, jnp.asarray(rho), jnp.asarray(sigma) if xc.is_gga(name) else None)
    np.testing.assert_array_equal(np.asarray(e) == 0.0, e_ref == 0.0)
    np.testing.assert_array_equal(np.asarray(vrho) == 0.0, vrho_ref == 0.0)
    assert np.any(e_ref == 0.0) and np.any(e_ref != 0.0)


@pytest.mark.parametrize("name", ["lda,vwn", "lda,pw", "pbe", "b3lyp"])
def test_gradients_finite_at_zero_density(name):
    """Padding grid points (rho = sigma = 0) give zero energy and zero, finite gradients,
    first and second order."""
    rho = jnp.array([0.0, 0.0, 1e-30, 0.3])
    sigma = jnp.array([0.0, 1e-20, 0.0, 0.02])
    sig = sigma if xc.is_gga(name) else None

    def total(r, s):
        return jnp.sum(xc.energy_density(name, r, s))

    grads = jax.grad(total, argnums=(0, 1))(rho, sig) if sig is not None else (jax.grad(total)(rho, None),)
    hess = jax.hessian(lambda r: total(r, sig))(rho)
    for g in grads + (hess,):
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.all(np.asarray(g)[..., :3] == 0.0)
    assert np.asarray(xc.energy_density(name, rho, sig))[:3].tolist() == [0.0, 0.0, 0.0]
    assert np.asarray(grads[0])[3] < 0.0


@pytest.mark.parametrize(
    "alias", ["LDA", "Slater", "SVWN", "slater,vwn", "lda,vwn5", "lda,vwn3", "SPW92", "PBE", "pbe, pbe"]
)
def test_aliases_mean_what_pyscf_means(alias):
    """Each accepted spelling is evaluated by libxc exactly as its canonical name."""
    canonical = xc.canonical_xc(alias)
    rho4 = np.stack([np.logspace(-6, 2, 50), np.logspace(-8, 2, 50), 0 * np.ones(50), 0 * np.ones(50)])
    for a, b in zip(libxc_reference(alias, rho4), libxc_reference(canonical, rho4)):
        np.testing.assert_array_equal(a, b)
    assert canonical.count(",") == 1


def test_pyscf_vwn_is_vwn5_not_rpa():
    """PySCF's "VWN" is libxc's VWN5 (LDA_C_VWN, id 7), not VWN_RPA (id 8)."""
    assert dict(libxc.parse_xc("lda,vwn")[1]) == {1: 1, 7: 1}
    assert xc.canonical_xc("lda,vwn") == "lda,vwn" and xc.canonical_xc("lda,vwn3") == "lda,vwn_rpa"


@pytest.mark.parametrize("alias, canonical", [("BLYP", "b88,lyp"), ("PBEH", "pbe0"), ("pbe1pbe", "pbe0"),
                                              ("B3LYPG", "b3lyp"), ("B3LYP5", "b3lyp5")])
def test_hybrid_and_blyp_aliases_mean_what_pyscf_means(alias, canonical):
    """Same libxc semi-local part and the same exact-exchange fraction as PySCF gives the alias."""
    assert xc.canonical_xc(alias) == canonical
    rho4 = np.stack([np.logspace(-6, 2, 50), np.logspace(-8, 2, 50), 0 * np.ones(50), 0 * np.ones(50)])
    for a, b in zip(libxc_reference(alias, rho4), libxc_reference(canonical, rho4)):
        np.testing.assert_array_equal(a, b)
    assert xc.exact_exchange_fraction(alias) == libxc.hybrid_coeff(alias)


def test_pyscf_b3lyp_is_libxc_hyb_gga_xc_b3lyp_with_vwn_rpa():
    """PySCF's "B3LYP" is libxc's HYB_GGA_XC_B3LYP (id 402): 0.2 HF + 0.08 Slater + 0.72 B88,
    0.19 VWN_RPA + 0.81 LYP; VWN5 instead (PySCF's B3LYP5) changes the energy."""
    assert dict(libxc.parse_xc("b3lyp")[1]) == {402: 1} and libxc.hybrid_coeff("b3lyp") == 0.2
    assert xc.exact_exchange_fraction("b3lyp") == 0.2 and xc.exact_exchange_fraction("pbe0") == 0.25
    assert xc.exact_exchange_fraction("pbe") == 0.0
    rho4 = np.stack([np.logspace(-4, 2, 50), np.logspace(-6, 2, 50), 0 * np.ones(50), 0 * np.ones(50)])
    explicit = libxc.eval_xc(".08*lda + .72*b88, .19*vwn_rpa + .81*lyp", rho4, spin=0)[0]
    np.testing.assert_allclose(libxc.eval_xc("b3lyp", rho4, spin=0)[0], explicit, rtol=1e-13)
    assert np.max(np.abs(libxc.eval_xc("b3lyp5", rho4, spin=0)[0] - explicit) / np.abs(explicit)) > 1e-4


@pytest.mark.parametrize("bad", ["tpss", "wb97x", "b2plyp", "lda,tpss", "pbe,pbe,pbe", ","])
def test_unknown_functional_lists_supported(bad):
    with pytest.raises(ValueError, match=r"unsupported exchange-correlation functional .*'pbe'.*'vwn'"):
        xc.canonical_xc(bad)


def test_gga_needs_sigma():
    with pytest.raises(ValueError, match="GGA: sigma"):
        xc.potentials("pbe", jnp.ones(3))

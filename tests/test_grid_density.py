"""rho and grad rho on the molecular grid (ai2dft.grid_density): the hand-written VJP against
autodiff of the plain expression and against central finite differences, for every input (D, AO
values, AO gradients), under vmap and jit; H2O / def2-SVP AO values on PySCF's level-3 grid."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ai2dft import grid_density
from ai2dft.system import System
from molecules import mole


@pytest.fixture(scope="module")
def water():
    """(ao [ngrid, nao], ao_grad [3, ngrid, nao], a non-symmetric D [nao, nao], cotangent v [4, ngrid])."""
    system = System.from_pyscf(mole("H2O"), xc="pbe")
    rng = np.random.default_rng(0)
    nao, ngrid = system.n_ao, system.weights.shape[0]
    D = jnp.asarray(rng.standard_normal((nao, nao)))
    v = jnp.asarray(rng.standard_normal((4, ngrid))) * system.weights  # quadrature-weighted like w vrho
    return system.ao, system.ao_grad, D, v


def _plain(gga, ao, ao_grad, D):
    """The same map written for autodiff: rho = sum_l (ao D)_gl ao_gl, d_x rho = 2 sum_l (ao D)_gl d_x ao_gl."""
    C = ao @ D
    rows = [jnp.sum(C * ao, axis=-1)] + ([2.0 * jnp.sum(ao_grad[x] * C, axis=-1) for x in range(3)] if gga else [])
    return jnp.stack(rows)


@pytest.mark.parametrize("gga", [False, True])
def test_values_and_vjp_equal_autodiff_of_the_plain_map(water, gga):
    ao, ao_grad, D, v = water
    v = v if gga else v[:1]
    out, vjp = jax.vjp(lambda *a: grid_density.density(gga, *a), ao, ao_grad, D)
    ref, ref_vjp = jax.vjp(lambda *a: _plain(gga, *a), ao, ao_grad, D)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(ref))))
    for name, got, want in zip(("ao", "ao_grad", "D"), vjp(v), ref_vjp(v)):
        scale = float(jnp.max(jnp.abs(want)))  # 0 only for ao_grad of an LDA: then both are exactly 0
        assert scale > 0 or (name == "ao_grad" and not gga), name
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale, err_msg=name)


def test_vjp_matches_central_differences(water):
    """<v, d out> along random directions of D, ao and ao_grad equals the VJP's inner product; the map is
    linear in D and quadratic in the AO values, so the central difference is exact up to round-off."""
    ao, ao_grad, D, v = water
    rng = np.random.default_rng(1)
    dirs = [jnp.asarray(rng.standard_normal(x.shape)) for x in (ao, ao_grad, D)]
    f = jax.jit(lambda *a: jnp.sum(v * grid_density.density(True, *a)))
    bars = jax.jit(jax.grad(lambda *a: jnp.sum(v * grid_density.density(True, *a)), argnums=(0, 1, 2)))(ao, ao_grad, D)
    h = 1e-3
    for i, (d, bar) in enumerate(zip(dirs, bars)):
        plus = [x + h * d if j == i else x for j, x in enumerate((ao, ao_grad, D))]
        minus = [x - h * d if j == i else x for j, x in enumerate((ao, ao_grad, D))]
        fd = (float(f(*plus)) - float(f(*minus))) / (2 * h)
        assert abs(fd - float(jnp.sum(bar * d))) < 1e-9 * max(1.0, abs(fd)), i
        assert abs(fd) > 1e-3, i  # a direction that does change the output


def test_potential_matrix_is_the_d_cotangent(water):
    """potential_matrix (the Fock build's semi-local part) equals the VJP with respect to D."""
    ao, ao_grad, D, v = water
    _, vjp = jax.vjp(lambda D: grid_density.density(True, ao, ao_grad, D), D)
    np.testing.assert_array_equal(grid_density.potential_matrix(True, ao, ao_grad, v), vjp(v)[0])


def test_vmap_of_the_vjp_equals_each_item(water):
    """Two density matrices (one symmetrized) through jax.vmap of jit(grad): each row is the unbatched result."""
    ao, ao_grad, D, v = water
    Ds = jnp.stack([D, 0.5 * (D + D.T)])

    def loss(ao, ao_grad, D):
        return jnp.sum(v * grid_density.density(True, ao, ao_grad, D) ** 2)

    grad = jax.grad(loss, argnums=(0, 2))
    batched = jax.jit(jax.vmap(grad, in_axes=(None, None, 0)))(ao, ao_grad, Ds)
    for i in range(2):
        single = jax.jit(grad)(ao, ao_grad, Ds[i])
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(want))))

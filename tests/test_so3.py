"""Edge-frame Wigner-D: orthogonality, axis alignment, representation property, gradients at the poles."""
import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from elct_jax.nn.so3 import FrameLayout, edge_frame_matrix, edge_wigner_d, from_frame, to_frame, wigner_d

L_MAX = 6
POLES = np.array([[0.0, 1.3, 0.0], [0.0, -0.7, 0.0], [1e-12, 1.0, -1e-12], [2e-9, -1.0, 0.0]])


@pytest.fixture(scope="module")
def directions():
    rng = np.random.default_rng(0)
    equator = np.array([[1.0, 0.0, 0.0], [0.3, 0.0, -2.0]])
    return jnp.asarray(np.concatenate([rng.normal(size=(16, 3)), POLES, equator]))


_wigner = jax.jit(edge_wigner_d, static_argnums=(1, 2))
_wigner_q = jax.jit(wigner_d, static_argnums=(1,))


def _sh(r, l):
    return e3nn.spherical_harmonics(e3nn.Irreps([(1, (l, (-1) ** l))]), r, normalize=True).array


def test_orthogonal(directions):
    for l, d in enumerate(_wigner(directions, L_MAX, None)):
        err = np.abs(np.einsum("eij,ekj->eik", d, d) - np.eye(2 * l + 1)).max()
        assert err < 1e-12, (l, err)


def test_maps_edge_to_polar_axis(directions):
    """D^l(Q) Y_l(r_hat) = Y_l(e_y): the rotated edge lies on +y, for every degree."""
    e_y = jnp.array([0.0, 1.0, 0.0])
    q = edge_frame_matrix(directions)
    np.testing.assert_allclose(q @ (directions / jnp.linalg.norm(directions, axis=1, keepdims=True))[..., None],
                               np.broadcast_to(e_y[:, None], (len(directions), 3, 1)), atol=1e-13)
    @jax.jit
    def residuals(r):
        return [jnp.einsum("eij,ej->ei", d, _sh(r, l)) - _sh(e_y, l) for l, d in enumerate(edge_wigner_d(r, L_MAX))]

    for l, res in enumerate(residuals(directions)):
        assert np.abs(res).max() < 1e-12, l


def test_matches_e3nn_and_is_a_representation():
    """D(Q1 Q2) = D(Q1) D(Q2), equal to e3nn's D_from_matrix for generic rotations."""
    q1, q2 = (jnp.asarray(Rotation.random(5, random_state=s).as_matrix()) for s in (1, 2))
    d1, d2, d12 = (_wigner_q(q, L_MAX) for q in (q1, q2, q1 @ q2))
    for l in range(L_MAX + 1):
        np.testing.assert_allclose(d12[l], d1[l] @ d2[l], atol=1e-12)
    reference = jax.jit(lambda q: [e3nn.Irrep(l, 1).D_from_matrix(q) for l in range(4)])(q1)
    for l in range(4):
        np.testing.assert_allclose(d1[l], reference[l], atol=1e-12)


def test_m_truncation_keeps_rows():
    r = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)))
    full, trunc = _wigner(r, 4, None), _wigner(r, 4, 1)
    for l in range(5):
        ml = min(l, 1)
        np.testing.assert_array_equal(trunc[l], full[l][:, l - ml : l + ml + 1])


def test_gradients_finite_and_correct_at_poles():
    """Jacobian of D w.r.t. the edge vector at r along +-y: finite and equal to central differences."""

    def flat_d(r):  # [n, 3] -> [n, n_entries]
        return jnp.concatenate([d.reshape(len(r), -1) for d in edge_wigner_d(r, 4)], axis=1)

    r = jnp.asarray(POLES[:2])
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda x: flat_d(x[None])[0])))(r)  # [n, n_entries, 3]
    assert np.all(np.isfinite(jac))
    h = 1e-6
    shifted = jnp.concatenate([r[:, None] + h * jnp.eye(3), r[:, None] - h * jnp.eye(3)], axis=1).reshape(-1, 3)
    values = jax.jit(flat_d)(shifted).reshape(len(r), 2, 3, -1)
    fd = jnp.moveaxis((values[:, 0] - values[:, 1]) / (2 * h), 1, 2)
    np.testing.assert_allclose(jac, fd, atol=1e-7)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(flat_d(x) ** 3)))
    assert np.all(np.isfinite(grad(r)))
    assert np.all(np.isfinite(grad(jnp.zeros((1, 3)))))  # padding edge (r = 0) stays finite


def test_frame_round_trip(directions):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(len(directions), (4 + 1) ** 2, 2, 3)))
    full = _wigner(directions, 4, None)
    np.testing.assert_allclose(from_frame(to_frame(x, full), full), x, atol=1e-12)
    trunc = _wigner(directions, 4, 2)
    layout = FrameLayout(4, 2)
    y = jnp.asarray(rng.normal(size=(len(directions), layout.size, 2, 3)))
    np.testing.assert_allclose(to_frame(from_frame(y, trunc), trunc), y, atol=1e-12)


def test_float32_follows_input_dtype(directions):
    d = _wigner(directions.astype(jnp.float32), 4, None)
    assert all(x.dtype == jnp.float32 for x in d)
    assert np.abs(np.einsum("eij,ekj->eik", d[4], d[4]) - np.eye(9)).max() < 1e-5

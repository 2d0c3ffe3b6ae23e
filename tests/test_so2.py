"""SO(2) convolution: rotation about the axis, the inversion (mirror) constraint, full O(3) equivariance."""
import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from elct_jax.nn.so2 import SO2Linear, so2_tables
from elct_jax.nn.so3 import FrameLayout, edge_wigner_d, from_frame, to_frame

L_MAX, C_IN, C_OUT, N_EXTRA = 4, 3, 2, 5
MIRROR = np.diag([-1.0, 1.0, 1.0])  # a mirror through a plane containing the axis (e3nn coordinates)


def _rot_y(t):
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


def _act_frame(q, x, layout):
    """O(3) element q that preserves the y axis, acting on frame-layout x [E, K, 2, C]."""
    out = []
    for l in range(layout.l_max + 1):
        ml, sl = layout.m_of_l[l], slice(layout.offsets[l], layout.offsets[l + 1])
        rows = slice(l - ml, l + ml + 1)
        parts = [jnp.einsum("ij,ejc->eic", np.asarray(e3nn.Irrep(l, p).D_from_matrix(q))[rows, rows], x[:, sl, i])
                 for i, p in enumerate((1, -1))]
        out.append(jnp.stack(parts, axis=2))
    return jnp.concatenate(out, axis=1)


def _act_lab(q, x, l_max):
    """O(3) element q acting on lab-layout x [E, (L+1)**2, 2, C]."""
    out = []
    for l in range(l_max + 1):
        parts = [jnp.einsum("ij,ejc->eic", np.asarray(e3nn.Irrep(l, p).D_from_matrix(q)), x[:, l * l : (l + 1) ** 2, i])
                 for i, p in enumerate((1, -1))]
        out.append(jnp.stack(parts, axis=2))
    return jnp.concatenate(out, axis=1)


@pytest.fixture(scope="module", params=[L_MAX, 2], ids=["m_max=4", "m_max=2"])
def conv(request):
    m_max = request.param
    module = SO2Linear(C_OUT, l_max=L_MAX, m_max=m_max, n_extra=N_EXTRA, param_dtype=jnp.float64)
    layout = FrameLayout(L_MAX, m_max)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, layout.size, 2, C_IN)))
    radial = jnp.asarray(rng.normal(size=(6, 4)))
    params = module.init(jax.random.PRNGKey(0), x, radial)
    # non-trivial radial gains and biases (they start at zero)
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(1), a.shape), params)
    return jax.jit(module.apply), params, layout, x, radial


def test_commutes_with_rotations_about_the_axis(conv):
    apply, params, layout, x, radial = conv
    y, extra = apply(params, x, radial)
    assert np.abs(y).max() > 0.1 and np.abs(extra).max() > 0.1
    for t in (0.3, 2.1):
        q = _rot_y(t)
        y2, extra2 = apply(params, _act_frame(q, x, layout), radial)
        np.testing.assert_allclose(y2, _act_frame(q, y, layout), atol=1e-12)
        np.testing.assert_allclose(extra2, extra, atol=1e-12)


def test_commutes_with_the_mirror_inversion_leaves(conv):
    """Inversion of the structure acts in the edge frame as a mirror containing the axis."""
    apply, params, layout, x, radial = conv
    y, extra = apply(params, x, radial)
    for q in (MIRROR, _rot_y(0.7) @ MIRROR):
        y2, extra2 = apply(params, _act_frame(q, x, layout), radial)
        np.testing.assert_allclose(y2, _act_frame(q, y, layout), atol=1e-12)
        np.testing.assert_allclose(extra2, extra, atol=1e-12)


def test_mirror_constraint_is_not_vacuous(conv):
    """The mirror flips the (m=0, eps=-1) and the (m<0, eps=+1) components; outputs have them non-zero."""
    apply, params, layout, x, radial = conv
    y, _ = apply(params, x, radial)
    assert np.abs(y - _act_frame(MIRROR, y, layout)).max() > 0.1


def test_o3_equivariance_through_the_edge_frame(conv):
    """x (lab) -> frame of r -> SO(2) conv -> lab is O(3)-equivariant, also for r on the poles."""
    apply, params, layout, _, radial = conv
    rng = np.random.default_rng(5)
    r = np.concatenate([rng.normal(size=(4, 3)), [[0.0, 1.0, 0.0], [0.0, -2.0, 0.0]]])
    x = jnp.asarray(rng.normal(size=(6, (L_MAX + 1) ** 2, 2, C_IN)))

    def f(r, x):
        d = edge_wigner_d(jnp.asarray(r), L_MAX, layout.m_max)
        y, extra = apply(params, to_frame(x, d), radial)
        return from_frame(y, d), extra

    y, extra = f(r, x)
    rot = Rotation.random(random_state=7).as_matrix()
    for q in (rot, -rot, -np.eye(3)):
        y2, extra2 = f(r @ q.T, _act_lab(q, x, L_MAX))
        np.testing.assert_allclose(y2, _act_lab(q, y, L_MAX), atol=1e-11)
        np.testing.assert_allclose(extra2, extra, atol=1e-11)


def test_cost_is_cubic_in_l():
    """Weights per m: one (rows x rows) matrix over l >= m, both mirror types: sum ~ (4/3) L^3 C^2."""
    for l_max in (2, 4, 6, 8):
        tables = so2_tables(l_max, l_max)
        n_weights = sum(rows * rows for _, _, rows in tables.groups)
        expected = 2 * (l_max + 1) ** 2 + sum(4 * (l_max + 1 - m) ** 2 for m in range(1, l_max + 1))
        assert n_weights == expected
        assert n_weights < 2 * (l_max + 1) ** 3  # vs (L+1)^4 for a dense map on all components

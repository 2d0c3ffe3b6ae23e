"""D(H) and the smearing entropy: electron count, custom VJP against finite differences (float64)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import ai2dft
from ai2dft import density
from ai2dft.density import density_and_entropy

KINDS = ("fermi", "gaussian")
RTOL_GRAD = 1e-6
_density = jax.jit(density_and_entropy, static_argnums=4)


def _spd(rng, n, complex_=False):
    a = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
    return a @ np.conj(a.T) / n + np.eye(n)


def _hermitian(rng, n, complex_=False):
    a = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
    return 0.5 * (a + np.conj(a.T))


@functools.partial(jax.jit, static_argnames=("kind",))
def _loss(H, S, W, n_electrons, sigma, kind, kweights=None, entropy_weight=0.7):
    """A real scalar of D and the entropy: sum Re(W * D) + c * entropy."""
    D, ent = density_and_entropy(H, S, n_electrons, sigma, kind, kweights=kweights)
    return jnp.sum(jnp.real(W * D)) + entropy_weight * ent


_loss_grad = jax.jit(jax.grad(_loss, argnums=(0, 1)), static_argnames=("kind",))


def _directional_fd(fun, x, v, h=1e-5):
    return float((fun(x + h * v) - fun(x - h * v)) / (2 * h))


def _check_gradients(H, S, W, n_electrons, sigma, kind, kweights=None, seed=0):
    """The VJP of D(H) and of the entropy (and of D(S)) along random Hermitian directions."""
    rng = np.random.default_rng(seed)
    g_H, g_S = _loss_grad(H, S, W, n_electrons, sigma, kind, kweights)
    complex_ = np.iscomplexobj(H)
    for grad, which in ((g_H, 0), (g_S, 1)):
        for _ in range(2):
            v = np.stack([_hermitian(rng, H.shape[-1], complex_) for _ in range(H.size // H.shape[-1] ** 2)])
            v = jnp.asarray(v.reshape(H.shape))
            fun = (lambda x: _loss(x, S, W, n_electrons, sigma, kind, kweights)) if which == 0 else \
                (lambda x: _loss(H, x, W, n_electrons, sigma, kind, kweights))
            fd = _directional_fd(fun, (H, S)[which], v)
            # jax.grad of a real function of complex X is conj(dL/dX): dL = Re sum(grad * dX)
            ad = float(jnp.sum(jnp.real(grad * v)))
            np.testing.assert_allclose(ad, fd, rtol=RTOL_GRAD, atol=1e-9)


def _random_molecule(seed, n=8):
    rng = np.random.default_rng(seed)
    return jnp.asarray(_hermitian(rng, n)), jnp.asarray(_spd(rng, n)), jnp.asarray(_hermitian(rng, n))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [0.0, 0.02, 0.3])
def test_electron_count_and_idempotency(kind, sigma):
    H, S, _ = _random_molecule(0)
    D, ent = _density(H, S, 6.0, sigma, kind)
    np.testing.assert_allclose(float(jnp.trace(D @ S)), 6.0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(D), np.asarray(D.T), atol=1e-14)
    if sigma == 0.0:  # a gapped aufbau state: D = 2 C_occ C_occ^T from scipy's generalized eigh
        _, C = scipy.linalg.eigh(np.asarray(H), np.asarray(S))
        np.testing.assert_allclose(np.asarray(D), 2 * C[:, :3] @ C[:, :3].T, atol=1e-12)
        np.testing.assert_allclose(np.asarray(D @ S @ D), 2 * np.asarray(D), atol=1e-12)
        assert float(ent) == 0.0
    else:
        assert float(ent) > 0.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [0.0, 0.05, 0.5])
def test_vjp_matches_finite_differences(kind, sigma):
    H, S, W = _random_molecule(1)
    _check_gradients(H, S, W, 6.0, sigma, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_derivatives_in_electron_count_and_width(kind):
    """d/dn_electrons and d/dsigma of D and of the entropy (fixed-count implicit derivative)."""
    H, S, W = _random_molecule(16)
    g_n, g_sigma = jax.jit(jax.grad(_loss, argnums=(3, 4)), static_argnames=("kind",))(H, S, W, 6.3, 0.08, kind)
    h = 1e-5
    fd_n = (_loss(H, S, W, 6.3 + h, 0.08, kind) - _loss(H, S, W, 6.3 - h, 0.08, kind)) / (2 * h)
    fd_sigma = (_loss(H, S, W, 6.3, 0.08 + h, kind) - _loss(H, S, W, 6.3, 0.08 - h, kind)) / (2 * h)
    np.testing.assert_allclose([float(g_n), float(g_sigma)], [float(fd_n), float(fd_sigma)], rtol=RTOL_GRAD, atol=1e-9)


def test_vjp_matches_jax_eigh_autodiff_away_from_degeneracy():
    """Where eigh's own derivative is valid, both agree to round-off."""
    H, S, W = _random_molecule(2)

    def naive(H, S):
        s, v = jnp.linalg.eigh(S)
        X = v @ jnp.diag(s ** -0.5) @ v.T
        eps, U = jnp.linalg.eigh(X @ H @ X)
        C = X @ U
        from ai2dft import smearing
        f, mu = smearing.occupations(eps, jnp.full(eps.shape, 2.0), 6.0, 0.1, "fermi")
        D = 2 * (C * f) @ C.T
        return jnp.sum(W * D) + 0.7 * 2 * smearing.total_entropy(eps, jnp.ones(eps.shape), mu, 0.1, "fermi")

    ref = jax.jit(jax.grad(naive, argnums=(0, 1)))(H, S)
    got = _loss_grad(H, S, W, 6.0, 0.1, "fermi")
    for r, g in zip(ref, got):
        np.testing.assert_allclose(np.asarray(0.5 * (r + r.T)), np.asarray(g), atol=1e-12)


def _degenerate_fermi_level(seed=3):
    """H with generalized eigenvalues (-1, -0.6, 0, 0, 0, 0.5, 0.9, 1.3); 6 electrons put the
    Fermi energy exactly on the 3-fold level at 0."""
    rng = np.random.default_rng(seed)
    S = _spd(rng, 8)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    s_half = scipy.linalg.sqrtm(S).real
    eps = np.array([-1.0, -0.6, 0.0, 0.0, 0.0, 0.5, 0.9, 1.3])
    H = s_half @ q @ np.diag(eps) @ q.T @ s_half
    return jnp.asarray(0.5 * (H + H.T)), jnp.asarray(S), jnp.asarray(_hermitian(rng, 8))


def test_threefold_degenerate_fermi_level():
    H, S, W = _degenerate_fermi_level()
    np.testing.assert_allclose(scipy.linalg.eigh(np.asarray(H), np.asarray(S), eigvals_only=True)[2:5], 0.0, atol=1e-14)
    _check_gradients(H, S, W, 6.0, 0.05, "fermi", seed=4)


def test_plain_eigh_autodiff_fails_at_the_degenerate_fermi_level():
    """Why the custom VJP exists: JAX's eigh derivative divides by eps_i - eps_j ~ 1e-16."""
    H, S, W = _degenerate_fermi_level()
    X = jax.jit(density.inverse_sqrt_overlap)(S)

    def naive(H):
        eps, U = jnp.linalg.eigh(X @ H @ X)
        C = X @ U
        from ai2dft import smearing
        f, _ = smearing.occupations(eps, jnp.full(eps.shape, 2.0), 6.0, 0.05, "fermi")
        return jnp.sum(W * (2 * (C * f) @ C.T))

    v = jnp.asarray(_hermitian(np.random.default_rng(5), 8))
    fd = _directional_fd(lambda h: _loss(h, S, W, 6.0, 0.05, "fermi", entropy_weight=0.0), H, v)
    naive_dir = float(jnp.sum(jax.jit(jax.grad(naive))(H) * v))
    ours = float(jnp.sum(_loss_grad(H, S, W, 6.0, 0.05, "fermi", None, 0.0)[0] * v))
    np.testing.assert_allclose(ours, fd, rtol=RTOL_GRAD)
    assert not np.isfinite(naive_dir) or abs(naive_dir - fd) > 1e-2 * abs(fd), (naive_dir, fd)


@pytest.mark.parametrize("kind", KINDS)
def test_complex_kpoint_batch(kind):
    rng = np.random.default_rng(6)
    nk, n = 3, 6
    H = jnp.asarray(np.stack([_hermitian(rng, n, True) for _ in range(nk)]))
    S = jnp.asarray(np.stack([_spd(rng, n, True) for _ in range(nk)]))
    W = jnp.asarray(np.stack([_hermitian(rng, n, True) for _ in range(nk)]))
    kw = rng.uniform(0.5, 1.5, nk)
    kw = jnp.asarray(kw / kw.sum())
    D, ent = _density(H, S, 5.0, 0.08, kind, kw)
    assert D.shape == H.shape and jnp.iscomplexobj(D)
    np.testing.assert_allclose(float(jnp.real(jnp.sum(kw * jnp.trace(D @ S, axis1=1, axis2=2)))), 5.0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(D), np.conj(np.asarray(D).transpose(0, 2, 1)), atol=1e-14)
    _check_gradients(H, S, W, 5.0, 0.08, kind, kweights=kw, seed=7)


def _pad(M, n_pad, rng, diag):
    n = M.shape[-1]
    out = rng.normal(size=(n + n_pad, n + n_pad))  # garbage in padded rows: must not matter
    out = 0.5 * (out + out.T)
    out[:n, :n] = M
    out[n:, n:] += np.diag(np.full(n_pad, diag))
    return jnp.asarray(out)


def test_padding_jit_and_vmap():
    rng = np.random.default_rng(8)
    (Ha, Sa, Wa), (Hb, Sb, Wb) = _random_molecule(9, 6), _random_molecule(10, 9)
    mask_a = jnp.asarray(np.r_[np.ones(6), np.zeros(3)])
    Hpa, Spa, Wpa = _pad(Ha, 3, rng, 1e3), _pad(Sa, 3, rng, 1.0), _pad(Wa, 3, rng, 0.0)

    def loss(H, S, W, n, sigma, mask):
        D, ent = density_and_entropy(H, S, n, sigma, "fermi", ao_mask=mask)
        return jnp.sum(W * D) + 0.7 * ent, D

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (la, Da), ga = value_and_grad(Ha, Sa, Wa, 4.0, 0.05, jnp.ones(6))  # unpadded
    (lpa, Dpa), gpa = value_and_grad(Hpa, Spa, Wpa, 4.0, 0.05, mask_a)
    l_eager, D_eager = loss(Ha, Sa, Wa, 4.0, 0.05, jnp.ones(6))  # op by op, no jit
    np.testing.assert_allclose(float(l_eager), float(la), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(D_eager), np.asarray(Da), atol=1e-13)
    np.testing.assert_allclose(float(lpa), float(la), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(Dpa[:6, :6]), np.asarray(Da), atol=1e-13)
    np.testing.assert_allclose(np.asarray(gpa[:6, :6]), np.asarray(ga), atol=1e-12)
    assert not np.any(np.asarray(Dpa)[6:]) and not np.any(np.asarray(gpa)[6:]) and not np.any(np.asarray(gpa)[:, 6:])
    # a batch of two padded molecules with different sizes, electron counts and widths
    batch = [jnp.stack(p) for p in ((Hpa, Hb), (Spa, Sb), (Wpa, Wb))]
    (lv, Dv), gv = jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))(*batch, jnp.array([4.0, 7.0]), jnp.array([0.05, 0.0]),
                                                     jnp.stack([mask_a, jnp.ones(9)]))
    (lb, Db), gb = value_and_grad(Hb, Sb, Wb, 7.0, 0.0, jnp.ones(9))
    np.testing.assert_allclose(np.asarray(lv), [float(la), float(lb)], rtol=1e-13)
    np.testing.assert_allclose(np.asarray(Dv[0]), np.asarray(Dpa), atol=1e-13)
    np.testing.assert_allclose(np.asarray(Dv[1]), np.asarray(Db), atol=1e-13)
    np.testing.assert_allclose(np.asarray(gv[0]), np.asarray(gpa), atol=1e-12)
    np.testing.assert_allclose(np.asarray(gv[1]), np.asarray(gb), atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_of_the_vjp_equals_the_unbatched_vjp(kind):
    """Regression: under vmap XLA recomputed x = (eps - mu)/sigma a few ulps differently at two uses,
    and an exact x_i == x_j branch in the Fermi divided difference gave log(sinh(1)) on Phi's diagonal."""
    H, S, W = _random_molecule(15)
    grad = jax.grad(lambda H: jnp.sum(W * density_and_entropy(H, S, 6.0, 0.01, kind)[0]))  # sigma: a constant
    batched = jax.jit(jax.vmap(grad))(jnp.stack([H, H + 0.1 * W]))
    np.testing.assert_allclose(np.asarray(batched[0]), np.asarray(jax.jit(grad)(H)), atol=1e-12)


def test_precomputed_inverse_sqrt_overlap():
    H, S, W = _random_molecule(11)
    X = jax.jit(density.inverse_sqrt_overlap)(S)
    np.testing.assert_allclose(np.asarray(X @ S @ X), np.eye(8), atol=1e-13)
    loss = lambda H, S, X: jnp.sum(W * density_and_entropy(H, S, 6.0, 0.1, "gaussian", s_inv_sqrt=X)[0])  # noqa: E731
    g_ref = _loss_grad(H, S, W, 6.0, 0.1, "gaussian", None, 0.0)
    g_pre = jax.jit(jax.grad(lambda H, S: loss(H, S, density.inverse_sqrt_overlap(S)), argnums=(0, 1)))(H, S)
    for r, g in zip(g_ref, g_pre):  # S's derivative comes from the custom VJP, not through X
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-13)


def test_bad_input_is_rejected():
    H, S, _ = _random_molecule(12, 5)
    with pytest.raises(ValueError, match="S has shape"):
        density_and_entropy(H, S[:4, :4], 4.0, 0.1, "fermi")
    with pytest.raises(ValueError, match="H must be"):
        density_and_entropy(H[0], S[0], 4.0, 0.1, "fermi")
    with pytest.raises(ValueError, match="unknown smearing kind"):
        density_and_entropy(H, S, 4.0, 0.1, "fermi-dirac")
    with pytest.raises(ValueError, match="ao_mask must have shape"):
        density_and_entropy(H, S, 4.0, 0.1, "fermi", ao_mask=jnp.ones(4))
    with pytest.raises(ValueError, match="kweights must have shape"):
        density_and_entropy(H[None], S[None], 4.0, 0.1, "fermi", kweights=jnp.ones(2) / 2)
    with pytest.raises(ValueError, match=r"expected \(5, 5\)"):
        density.validate_hamiltonian(H[:4, :4], S.shape)
    bad = np.asarray(H).copy()
    bad[1, 3] += 0.25
    with pytest.raises(ValueError, match=r"not Hermitian: max \|H - H\^H\| = 2.500e-01"):
        density.validate_hamiltonian(jnp.asarray(bad), S.shape)
    bad = np.asarray(H).copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="1 non-finite entries"):
        density.validate_hamiltonian(jnp.asarray(bad), S.shape)


def test_density_matrix_of_a_pyscf_system():
    """density_matrix(System, H): PySCF's density from its Fock matrix; padded system; input errors."""
    from molecules import rks

    from ai2dft.system import System, pad_system

    mf = rks("H2O", "lda,vwn")
    system = System.from_pyscf(mf)
    F = jnp.asarray(mf.get_fock())
    D = ai2dft.density_matrix(system, F)
    np.testing.assert_allclose(np.asarray(D), mf.make_rdm1(), atol=1e-5)
    padded = pad_system(system, system.n_ao + 4, system.weights.shape[0], system.cderi.shape[0])
    F_pad = jnp.pad(F, ((0, 4), (0, 4))) + jnp.diag(jnp.r_[jnp.zeros(system.n_ao), jnp.full(4, 100.0)])
    D_pad = ai2dft.density_matrix(padded, F_pad)
    np.testing.assert_allclose(np.asarray(D_pad[:system.n_ao, :system.n_ao]), np.asarray(D), atol=1e-12)
    assert not np.any(np.asarray(D_pad)[system.n_ao:])
    with pytest.raises(ValueError, match=r"H has shape \(23, 23\), expected \(24, 24\)"):
        ai2dft.density_matrix(system, F[:23, :23])
    with pytest.raises(ValueError, match=r"not Hermitian: max \|H - H\^H\| = 1.000e-03"):
        ai2dft.density_matrix(system, F.at[0, 5].add(1e-3))
    with pytest.raises(ValueError, match="non-finite"):
        ai2dft.density_matrix(system, F.at[3, 3].set(jnp.inf))

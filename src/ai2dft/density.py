"""Density matrix D(H) and smearing entropy, with a custom VJP by divided differences.

For each k-point the generalized eigenproblem H C = S C eps is solved through Loewdin
orthogonalization: X = S^-1/2, Ho = X^H H X = U eps U^H, C = X U (C^H S C = 1). Then

    D_k = 2 C_k diag(f_k) C_k^H                  (spin-summed, same shape as H; no k-weight)
    entropy = 2 sum_k w_k sum_i s((eps_ki - mu) / sigma)   (dimensionless, spin-summed)

with mu fixed by the electron count n_electrons = sum_k w_k tr(D_k S_k), so that the Mermin free
energy is Omega = E_KS[D] - sigma * entropy.

The reverse-mode derivative is written out (Daleckii-Krein): with Gt = 2 C^H Dbar C,

    Gbar = Phi o Gt - (A/Z) w_k diag(f')                       (Phi_ij = (f_i - f_j)/(eps_i - eps_j), Phi_ii = f'_i)
         + ebar 2 w_k [diag(x f') - (B/Z) diag(f')]            (entropy)
    Hbar = C Gbar C^H,   Sbar = -C [(eps_i + eps_j)/2 Gbar_ij + (f_i + f_j)/2 Gt_ij] C^H

where f' = df/deps, A = sum_ki f'_ki Gt_k,ii, Z = sum_ki w_k f'_ki, B = sum_ki w_k x_ki f'_ki (the A and
B terms are the chemical-potential shift at fixed electron count). Phi comes from the numerically
stable formulas in ``smearing.divided_difference``, so exact and near degeneracies are handled
without a threshold. JAX's own ``eigh`` derivative is NaN or wrong at degeneracies; never use it here.
Forward-mode (jvp) through this function is not available (``jax.custom_vjp``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ai2dft import smearing
from ai2dft.hermitian import dagger, hermitian_part

_PAD_MARGIN_SIGMAS = 1100.0  # padded levels sit this many sigmas above the spectrum: f and f' are exactly 0


def inverse_sqrt_overlap(S: jax.Array) -> jax.Array:
    """Loewdin orthogonalizer X = S^-1/2 (Hermitian, same shape as S: [nao, nao] or [nk, nao, nao]).

    Precompute it once for a fixed S and pass it as ``s_inv_sqrt`` to ``density_and_entropy``:
    it saves one eigendecomposition per call. Not meant to be differentiated (D's dependence on S
    is carried by the custom VJP of ``density_and_entropy``).
    """
    s, v = jnp.linalg.eigh(hermitian_part(S))
    return hermitian_part((v * (1.0 / jnp.sqrt(s))[..., None, :]) @ dagger(v))


def mask_padding(H, S, ao_mask):
    """H with padded rows/columns zeroed and S with them replaced by the identity.

    H, S: [..., nao, nao]; ao_mask: [nao] with 1 for real and 0 for padded AOs.
    """
    keep = (ao_mask[:, None] * ao_mask[None, :]) > 0
    eye = jnp.diag(1.0 - ao_mask).astype(S.dtype)
    return jnp.where(keep, H, 0.0), jnp.where(keep, S, 0.0) + eye


def density_and_entropy(H, S, n_electrons, sigma, kind: str, kweights=None, ao_mask=None, s_inv_sqrt=None):
    """Spin-summed density matrix and smearing entropy of a closed-shell Kohn-Sham Hamiltonian.

    H, S: [nao, nao] real symmetric (molecule) or [nk, nao, nao] complex Hermitian (crystal).
    n_electrons: electrons per cell (scalar); sigma: smearing width in Hartree (>= 0; 0 gives step
    occupations); kind: "fermi" | "gaussian"; kweights: [nk] summing to 1 (default uniform);
    ao_mask: [nao] 1 for real, 0 for padded AOs (padded AOs are never occupied; their D and
    gradient entries are 0); s_inv_sqrt: ``inverse_sqrt_overlap(S)`` if precomputed (of the
    padded S when ao_mask is given, i.e. of ``mask_padding(H, S, ao_mask)[1]``).
    Returns (D same shape as H, entropy scalar). Works under jit and vmap; float64 recommended.
    """
    args, ao_mask, crystal = _prepare(H, S, n_electrons, sigma, kind, kweights, ao_mask, s_inv_sqrt)
    D, ent = _density_core(kind, *args)
    D = jnp.where((ao_mask[:, None] * ao_mask[None, :]) > 0, D, 0.0)
    return (D if crystal else D[0]), ent


def _prepare(H, S, n_electrons, sigma, kind, kweights, ao_mask, s_inv_sqrt):
    """Validated, masked, k-batched arguments of ``_density_core`` (after kind), the mask, crystal?"""
    smearing.validate_kind(kind)
    H, S, crystal = _as_kpoints(H, S)
    nk, nao = H.shape[0], H.shape[-1]
    kweights = jnp.full((nk,), 1.0 / nk) if kweights is None else jnp.asarray(kweights)
    if kweights.shape != (nk,):
        raise ValueError(f"kweights must have shape ({nk},), got {kweights.shape}")
    real_dtype = jnp.real(H).dtype
    ao_mask = jnp.ones((nao,), real_dtype) if ao_mask is None else jnp.asarray(ao_mask, real_dtype)
    if ao_mask.shape != (nao,):
        raise ValueError(f"ao_mask must have shape ({nao},), got {ao_mask.shape}")
    H, S = mask_padding(H, S, ao_mask)
    X = inverse_sqrt_overlap(S) if s_inv_sqrt is None else jnp.asarray(s_inv_sqrt).reshape(S.shape)
    args = (H, S, X, kweights.astype(real_dtype), 1.0 - ao_mask, jnp.asarray(n_electrons, real_dtype),
            jnp.asarray(sigma, real_dtype))
    return args, ao_mask, crystal


def _as_kpoints(H, S):
    H, S = jnp.asarray(H), jnp.asarray(S)
    if H.ndim not in (2, 3) or H.shape[-1] != H.shape[-2]:
        raise ValueError(f"H must be [nao, nao] or [nk, nao, nao], got shape {H.shape}")
    if S.shape != H.shape:
        raise ValueError(f"S has shape {S.shape} but H has shape {H.shape}; they must match")
    if H.ndim == 2:
        return H[None], S[None], False
    return H, S, True


def _spectrum(H, X, pad, sigma):
    """Eigenpairs of the orthogonalized H; padded AOs become levels far above the spectrum."""
    Ho = hermitian_part(dagger(X) @ H @ X)  # [nk, nao, nao]
    bound = jnp.max(jnp.sum(jnp.abs(Ho), axis=-1))  # >= spectral radius (Gershgorin)
    level = jax.lax.stop_gradient(bound + 1.0 + _PAD_MARGIN_SIGMAS * sigma)
    Ho = Ho + jnp.diag(pad * level).astype(Ho.dtype)
    eps, U = jnp.linalg.eigh(Ho)
    return eps, X @ U  # [nk, nao], [nk, nao, nao]


def _occupied(kind, eps, kweights, n_electrons, sigma):
    weights = 2.0 * jnp.broadcast_to(kweights[:, None], eps.shape)
    f, mu = smearing.occupations(eps, weights, n_electrons, sigma, kind)
    return f, mu, 2.0 * smearing.total_entropy(eps, weights / 2.0, mu, sigma, kind)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _density_core(kind, H, S, X, kweights, pad, n_electrons, sigma):
    return _density_fwd(kind, H, S, X, kweights, pad, n_electrons, sigma)[0]


def _density_fwd(kind, H, S, X, kweights, pad, n_electrons, sigma):
    eps, C = _spectrum(H, X, pad, sigma)
    f, mu, ent = _occupied(kind, eps, kweights, n_electrons, sigma)
    D = 2.0 * (C * f[:, None, :].astype(C.dtype)) @ dagger(C)
    return (D, ent), (C, eps, f, mu, kweights, sigma, X, pad, n_electrons)


def _response_kernels(kind, eps, f, mu, sigma):
    """Phi [nk, n, n] (divided differences of f in eps), f' = df/deps and x, both [nk, n]."""
    positive = sigma > 0
    sigma_safe = jnp.where(positive, sigma, 1.0)
    x = (eps - mu) / sigma_safe
    fp = jnp.where(positive, smearing.occupation_derivative(kind, x) / sigma_safe, 0.0)
    phi_smooth = smearing.divided_difference(kind, x[:, :, None], x[:, None, :]) / sigma_safe
    de = eps[:, :, None] - eps[:, None, :]
    df = f[:, :, None] - f[:, None, :]
    phi_step = jnp.where(df != 0, df / jnp.where(df != 0, de, 1.0), 0.0)
    return jnp.where(positive, phi_smooth, phi_step), fp, x


def _density_bwd(kind, residuals, cotangents):
    C, eps, f, mu, kweights, sigma, X, pad, n_electrons = residuals
    D_bar, ent_bar = cotangents
    phi, fp, x = _response_kernels(kind, eps, f, mu, sigma)
    w = kweights[:, None]
    Gt = 2.0 * dagger(C) @ hermitian_part(jnp.conj(D_bar)) @ C  # [nk, n, n], Hermitian
    gt_diag = jnp.real(jnp.diagonal(Gt, axis1=-2, axis2=-1))
    z = jnp.sum(w * fp)
    z_safe = jnp.where(z < 0, z, -1.0)
    a = jnp.where(z < 0, jnp.sum(fp * gt_diag) / z_safe, 0.0)
    b = jnp.where(z < 0, jnp.sum(w * x * fp) / z_safe, 0.0)
    g_diag = -a * w * fp + ent_bar * 2.0 * w * (x * fp - b * fp)  # [nk, n]
    G_bar = phi * Gt + _diag(g_diag).astype(Gt.dtype)
    T_bar = -(0.5 * (eps[:, :, None] + eps[:, None, :]) * G_bar + 0.5 * (f[:, :, None] + f[:, None, :]) * Gt)
    H_bar = C @ G_bar @ dagger(C)
    S_bar = C @ T_bar @ dagger(C)
    # d/dn_electrons and d/dsigma through the occupations and the entropy at fixed electron count
    n_bar = jnp.where(z < 0, (jnp.sum(fp * gt_diag) / 2.0 + ent_bar * jnp.sum(w * x * fp)) / z_safe, 0.0)
    sigma_bar = jnp.sum(gt_diag * fp * (b - x)) + ent_bar * 2.0 * jnp.sum(w * x * fp * (b - x))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, (X, kweights, pad))
    return (jnp.conj(H_bar), jnp.conj(S_bar), zeros[0], zeros[1], zeros[2],
            n_bar.astype(n_electrons.dtype), sigma_bar.astype(sigma.dtype))


def _diag(v):
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


_density_core.defvjp(_density_fwd, _density_bwd)


def validate_hamiltonian(H, shape, tol: float = 1e-8, real: bool = False) -> None:
    """Raise ValueError unless H has ``shape``, finite entries and is Hermitian to ``tol`` (relative);
    with ``real`` (a molecule) also unless H has a real dtype.

    Shape and dtype are static and always checked; value checks are skipped for traced H (inside
    jit, grad or vmap), so they cost the compiled training step nothing.
    """
    if tuple(jnp.shape(H)) != tuple(shape):
        raise ValueError(f"H has shape {tuple(jnp.shape(H))}, expected {tuple(shape)} (the overlap's shape)")
    if real and jnp.iscomplexobj(H):
        raise ValueError(f"H is complex ({jnp.result_type(H)}), but a molecular System takes a real symmetric "
                         "H [nao, nao]; complex H(k) [nk, nao, nao] belong to a CrystalSystem")
    if isinstance(H, jax.core.Tracer):
        return
    h = np.asarray(H)
    if not np.all(np.isfinite(h)):
        raise ValueError(f"H has {np.size(h) - np.count_nonzero(np.isfinite(h))} non-finite entries")
    asym = float(np.max(np.abs(h - np.conj(np.swapaxes(h, -1, -2))))) if h.size else 0.0
    scale = max(1.0, float(np.max(np.abs(h)))) if h.size else 1.0
    if asym > tol * scale:
        raise ValueError(f"H is not Hermitian: max |H - H^H| = {asym:.3e} (tolerance {tol * scale:.1e})")

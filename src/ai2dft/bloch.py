"""The Bloch phase exp(2 pi i k.R) between real-space lattice translations and k-points.

k-points are fractional (units of the reciprocal lattice vectors) and translations integer lattice
coordinates, so k.R = sum_a k_a R_a. Used by every Bloch sum of the project: H(k) = sum_R H(R) phase
(``ai2dft.crystal``, ``elct_jax.hamiltonian.blocks``, ``elct_jax.hamiltonian.sparse``) and its inverse with the
conjugate phase (``ai2dft.pyscf_bridge.labels``).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def phases(kpts_frac, translations):
    """[nk, nR] complex exp(2 pi i k.R). kpts_frac: [nk, 3] fractional k; translations: [nR, 3] integer.

    numpy in (both numpy arrays), numpy out, in numpy's precision whatever JAX's float64 setting (the
    PySCF bridge, sparse bands of large systems); otherwise a JAX array (traceable)."""
    xp = np if isinstance(kpts_frac, np.ndarray) and isinstance(translations, np.ndarray) else jnp
    k = xp.asarray(kpts_frac)
    return xp.exp(2j * xp.pi * (k @ xp.asarray(translations, k.dtype).T))

"""PySCF ``pbc.dft.KUKS`` -> the arrays of an ``ai2dft.SpinCrystalSystem`` (collinear spin-polarized crystal).

The integrals are those of the closed-shell crystal bridge (``cell._arrays_from_krks``: FFTDF, the uniform mesh
of ``with_df``, the same checks and smearing rules); what is added is the spin. PySCF's ``KUKS.nelec`` counts the
electrons of the whole Born-von Karman supercell (nk cells: ``cell.spin`` is N_alpha - N_beta of the supercell,
not of one cell); the moment here is per cell, N_alpha - N_beta = (nelec_alpha - nelec_beta) / nk.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pyscf.pbc import dft as pbc_dft

from ai2dft.precision import require_float64
from ai2dft.pyscf_bridge.cell import _arrays_from_krks
from ai2dft.pyscf_bridge.spin_molecule import _magnetisation


def spin_crystal_arrays(mf: Any, magnetisation: str | None = None,
                        chunk_size: int = 2048) -> tuple[dict[str, Any], np.ndarray | None]:
    """(keyword arguments of the crystal's ``ai2dft.CrystalSystem``, spin) of a PySCF ``KUKS`` object.

    spin: [] float N_alpha - N_beta per cell when the magnetisation is "fixed", None when "free" (default: free for
    a KUKS smeared without ``fix_spin``, PySCF's one chemical potential for both spins, else fixed). Raises
    ``TypeError`` for anything but a KUKS, ``ValueError`` for an electron count per spin outside 0..N.
    """
    require_float64()
    if not isinstance(mf, pbc_dft.kuks.KUKS):
        raise TypeError(f"SpinCrystalSystem.from_pyscf needs a PySCF pbc.dft.KUKS, got {type(mf).__name__} "
                        "(a closed-shell KRKS belongs to CrystalSystem.from_pyscf)")
    arrays = _arrays_from_krks(mf, chunk_size)
    if _magnetisation(mf, magnetisation) == "free":
        return arrays, None
    nk = len(arrays["kweights"])
    n_alpha, n_beta = (int(n) for n in mf.nelec)
    if min(n_alpha, n_beta) < 0:
        raise ValueError(f"KUKS.nelec = ({n_alpha}, {n_beta}) for {nk} k-points: a spin cannot hold fewer than 0 "
                         f"electrons ({float(arrays['n_electrons']):g} valence electrons per cell)")
    return arrays, np.float64((n_alpha - n_beta) / nk)

"""PySCF X2C1e generalised Kohn-Sham objects -> the arrays of an ``ai2dft.SpinorSystem``.

The spinless integrals are the closed-shell bridge's (``molecule.system_arrays``: the object's grid, density
fitting or PySCF's default fitting basis, smearing); added are the object's core Hamiltonian with spin-orbit
terms, [2 nao, 2 nao] complex, and its non-collinear XC scheme. The base System's own hcore is the
non-relativistic one (the spinor kind does not use it).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pyscf import dft, scf

from ai2dft.precision import require_float64
from ai2dft.pyscf_bridge.molecule import system_arrays
from ai2dft.xc import exact_exchange_fraction, is_gga


def spinor_molecule_arrays(mf: Any, smearing: tuple[str, float] | None = None, auxbasis: str | None = None
                           ) -> tuple[dict[str, Any], np.ndarray, str]:
    """(keyword arguments of the base ``ai2dft.System``, hcore_so [2 nao, 2 nao], collinear) of a GKS object."""
    require_float64()
    if not isinstance(mf, dft.gks.GKS):
        raise ValueError(f"SpinorSystem.from_pyscf needs a PySCF GKS object (dft.GKS(mol).x2c1e()), got "
                         f"{type(mf).__name__}")
    collinear = str(mf.collinear).lower()[:1]
    if collinear not in ("c", "n"):
        raise ValueError(f"collinear={mf.collinear!r} (multi-collinear XC) is not implemented; use 'col' or 'ncol'")
    arrays = system_arrays(mf.mol, mf, None, smearing, None, auxbasis)
    if exact_exchange_fraction(arrays["xc"]):
        raise ValueError(f"xc={mf.xc!r} is a hybrid: spinor exact exchange (K of the spin blocks) is not "
                         "implemented; spin-orbit systems take LDAs and GGAs")
    if collinear == "n" and is_gga(arrays["xc"]):
        raise ValueError(f"collinear='ncol' takes LDAs only (as PySCF 2.14), got the GGA {mf.xc!r}; use 'col'")
    hcore_so = np.asarray(arrays.pop("hcore"), np.complex128)
    arrays["hcore"] = scf.hf.get_hcore(mf.mol)
    return arrays, hcore_so, "ncol" if collinear == "n" else "col"

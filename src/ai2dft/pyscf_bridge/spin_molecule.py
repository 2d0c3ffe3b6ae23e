"""PySCF molecules -> the arrays of an ``ai2dft.SpinSystem`` (collinear spin-polarized, UKS).

The integrals are those of the closed-shell bridge (``molecule.system_arrays``: the same grid, density
fitting and smearing rules, taken from a ``dft.UKS`` object or given); what is added is the spin: 2S =
N_alpha - N_beta (PySCF's ``mol.spin``) and whether it is held fixed or free.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pyscf import dft

from ai2dft.precision import require_float64
from ai2dft.pyscf_bridge.molecule import split, system_arrays

MAGNETISATIONS = ("fixed", "free")


def check_spin(n_electrons: int, spin: int, charge: int) -> None:
    """Raise ValueError unless 2S = ``spin`` = N_alpha - N_beta is possible for ``n_electrons``: 0 <= 2S <= N with
    N - 2S even (the message names the electron count, charge, 2S and the multiplicity 2S + 1)."""
    parity = "odd" if n_electrons % 2 else "even"
    if not 0 <= spin <= n_electrons or (n_electrons - spin) % 2:
        raise ValueError(
            f"spin 2S = {spin} (multiplicity {spin + 1}) is impossible for {n_electrons} electrons (charge {charge}): "
            f"2S = N_alpha - N_beta must be {parity} and between 0 and {n_electrons}, e.g. {n_electrons % 2} "
            f"(multiplicity {n_electrons % 2 + 1})")


def _magnetisation(mf: Any, magnetisation: str | None) -> str:
    """The argument, else "free" for a PySCF object smeared without ``fix_spin`` (one chemical potential for both
    spins, PySCF's default when smearing a UKS), else "fixed"."""
    if magnetisation is None:
        smeared = bool(getattr(mf, "sigma", None)) and getattr(mf, "smearing_method", None)
        return "free" if smeared and not getattr(mf, "fix_spin", False) else "fixed"
    if magnetisation not in MAGNETISATIONS:
        raise ValueError(f"magnetisation must be one of {MAGNETISATIONS}, got {magnetisation!r}")
    return magnetisation


def spin_molecule_arrays(
    obj: Any,
    xc: str | None = None,
    smearing: tuple[str, float] | None = None,
    grid_level: int | None = None,
    auxbasis: str | None = None,
    magnetisation: str | None = None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """(keyword arguments of the molecule's ``ai2dft.System``, spin) for a PySCF ``Mole`` or ``dft.UKS`` object.

    spin: [] float 2S = N_alpha - N_beta = ``mol.spin`` when the magnetisation is "fixed", None when "free"
    (default: as the object's smearing, else fixed; see ``_magnetisation``). Other options as
    ``molecule.molecule_arrays``. Raises ``ValueError`` for a spin impossible for the electron count.
    """
    require_float64()
    mol, mf = split(obj, dft.uks.UKS)
    check_spin(mol.nelectron, mol.spin, mol.charge)
    arrays = system_arrays(mol, mf, xc, smearing, grid_level, auxbasis)
    return arrays, (np.float64(mol.spin) if _magnetisation(mf, magnetisation) == "fixed" else None)

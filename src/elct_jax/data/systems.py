"""Rebuild the ai2dft Kohn-Sham system of a dataset record from the level of theory stored with it.

Molecules give an ``ai2dft.System`` (collinear spinful records labelled with a spin 2S: an ``ai2dft.SpinSystem``
at that fixed 2S), crystals an ``ai2dft.crystal.CrystalSystem`` built on the SCF
k-mesh, plane-wave cutoff, pseudopotential, functional and smearing of the record's labels (the
``elct`` entry of its info.json, written by ``elct_jax.data.generate``; collinear spinful crystals, labelled by
KUKS: an ``ai2dft.SpinCrystalSystem`` on that crystal, 2S per cell fixed or a free magnetisation as labelled;
spin-orbit molecules, labelled by X2C1e GKS (``elct_jax.data.soc_record``): an ``ai2dft.SpinorSystem``).
The PySCF cell is the one the label generator builds (``ai2dft.pyscf_bridge.labels.build_cell``), so labels and
system agree.
"""
from __future__ import annotations

import jax.numpy as jnp

from ai2dft.crystal import CrystalSystem
from ai2dft.spin_crystal import SpinCrystalSystem
from ai2dft.spin_system import SpinSystem
from ai2dft.spinor_system import SpinorSystem
from ai2dft.system import System
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.spinful import spin_treatment

_CRYSTAL_SETTINGS = ("xc", "kmesh", "pseudopotential", "ke_cutoff_Ha", "smearing")


def system_from_record(record: DeepHRecord, chunk_size: int = 2048
                       ) -> System | SpinSystem | SpinorSystem | CrystalSystem | SpinCrystalSystem:
    """The Kohn-Sham system of ``record``: :func:`molecule_system_from_record` for molecules,
    :func:`spin_molecule_system_from_record` for spinful (collinear) molecules, :func:`spinor_system_from_record`
    for spin-orbit ones, :func:`crystal_system_from_record` for periodic structures,
    :func:`spin_crystal_system_from_record` for spinful (collinear) ones (``chunk_size`` applies to crystals)."""
    if record.structure.is_periodic:
        if record.spinful:
            return spin_crystal_system_from_record(record, chunk_size)
        return crystal_system_from_record(record, chunk_size)
    if not record.spinful:
        return molecule_system_from_record(record)
    if spin_treatment(True, record.matrices.get("hamiltonian", {})) == "noncollinear":
        return spinor_system_from_record(record)
    return spin_molecule_system_from_record(record)


def molecule_system_from_record(record: DeepHRecord) -> System:
    """The molecular System of ``record`` (same basis, xc, charge, grid level, smearing as its labels).
    Raises ``ValueError`` for crystals or records lacking the settings."""
    if record.structure.is_periodic:
        raise ValueError("molecule_system_from_record got a periodic record; use crystal_system_from_record")
    dft = _settings(record, ("xc",))
    smearing = tuple(dft["smearing"]) if dft.get("smearing") else None
    return System.from_symbols(
        record.structure.symbols, record.structure.positions_ang, record.basis.name, dft["xc"],
        charge=int(dft.get("charge", 0)), grid_level=dft.get("grid_level"), smearing=smearing,
    )


def spin_molecule_system_from_record(record: DeepHRecord) -> SpinSystem:
    """The SpinSystem of a collinear spinful molecule labelled by UKS at 2S = ``dft["spin"]`` (held fixed; same
    basis, xc, charge, grid level, smearing as its labels). Raises ``ValueError`` without that spin."""
    from ai2dft.pyscf_bridge.labels import DFTSettings, build_molecule

    dft = _settings(record, ("xc",))
    if dft.get("spin") is None:
        raise ValueError("a spinful molecule record has no 'spin' (2S = N_alpha - N_beta) in its info.json 'elct' "
                         "settings; cannot rebuild its spin-polarized DFT system (label it with elct data generate "
                         "--spin)")
    smearing = tuple(dft["smearing"]) if dft.get("smearing") else None
    settings = DFTSettings(basis=record.basis.name, xc=dft["xc"], charge=int(dft.get("charge", 0)), spin=int(dft["spin"]))
    return SpinSystem.from_pyscf(build_molecule(record.structure, settings), xc=dft["xc"], smearing=smearing,
                                 grid_level=dft.get("grid_level"), magnetisation="fixed")


def spinor_system_from_record(record: DeepHRecord) -> SpinorSystem:
    """The SpinorSystem of a spin-orbit molecule labelled by X2C1e GKS (``elct_jax.data.soc_record``): same basis,
    xc, non-collinear XC scheme, charge, grid and density fitting (PySCF's default fitting basis) as its labels.
    Raises ``ValueError`` naming a missing setting, or for labels with exact Coulomb (the layer fits it)."""
    from pyscf import dft as pyscf_dft

    from ai2dft.pyscf_bridge.soc import build_molecule_any_spin

    dft = _settings(record, ("xc", "noncollinear_xc", "grid_level"))
    if not dft.get("density_fit", False):
        raise ValueError("spin-orbit labels with exact Coulomb (density_fit false): the DFT layer fits the Coulomb "
                         "energy, so its system would differ from the labels; label with SOCSettings(density_fit=True)")
    mf = pyscf_dft.GKS(build_molecule_any_spin(record.structure, record.basis.name, int(dft.get("charge", 0))))
    mf = mf.x2c1e().density_fit()
    mf.xc, mf.collinear, mf.grids.level = dft["xc"], dft["noncollinear_xc"], dft["grid_level"]
    smearing = tuple(dft["smearing"]) if dft.get("smearing") else None
    return SpinorSystem.from_pyscf(mf, smearing=smearing)


def crystal_system_from_record(record: DeepHRecord, chunk_size: int = 2048) -> CrystalSystem:
    """The CrystalSystem of a periodic ``record``: its basis and GTH pseudopotential, xc, SCF k-mesh
    (Gamma-centred), FFT mesh of ``ke_cutoff_Ha`` (None: PySCF's default mesh, very fine) and smearing
    (None: integer occupations), as stored by the label generator. Raises ``ValueError`` naming any
    missing setting, or for a molecule."""
    from ai2dft.pyscf_bridge.labels import DFTSettings, build_cell

    if not record.structure.is_periodic:
        raise ValueError("crystal_system_from_record got a molecule; use molecule_system_from_record")
    dft = _settings(record, _CRYSTAL_SETTINGS)
    smearing = tuple(dft["smearing"]) if dft["smearing"] else None
    settings = DFTSettings(basis=record.basis.name, xc=dft["xc"], charge=int(dft.get("charge", 0)),
                           smearing=smearing, pseudo=dft["pseudopotential"], kmesh=tuple(dft["kmesh"]),
                           ke_cutoff_Ha=dft["ke_cutoff_Ha"])
    cell = build_cell(record.structure, settings)
    return CrystalSystem.from_pyscf(cell, xc=settings.xc, kmesh=settings.kmesh, smearing=settings.smearing,
                                    ke_cutoff=settings.ke_cutoff_Ha, chunk_size=chunk_size)


def spin_crystal_system_from_record(record: DeepHRecord, chunk_size: int = 2048) -> SpinCrystalSystem:
    """The SpinCrystalSystem of a collinear spinful crystal labelled by KUKS (``elct_jax.data.spin_crystal_record``):
    the :func:`crystal_system_from_record` of its settings with the labels' magnetisation, "fixed" (N_alpha - N_beta
    = ``dft["spin"]`` per cell) or "free" (one chemical potential for both spins). Raises ``ValueError`` naming a
    missing setting."""
    dft = _settings(record, ("spin", "magnetisation"))
    if dft["magnetisation"] not in ("fixed", "free"):
        raise ValueError(f"a spinful crystal record has magnetisation {dft['magnetisation']!r}; expected 'fixed' or "
                         "'free'")
    base = crystal_system_from_record(record, chunk_size)
    return SpinCrystalSystem(base, None if dft["magnetisation"] == "free" else jnp.asarray(float(dft["spin"])))


def _settings(record: DeepHRecord, required: tuple[str, ...]) -> dict:
    """The record's DFT settings, after checking that ``required`` keys and a PySCF basis name are there."""
    dft = record.dft
    missing = [k for k in required if k not in dft]
    if missing:
        raise ValueError(f"record has no {missing} in its info.json 'elct' settings; cannot rebuild its DFT system")
    if not record.basis.name or record.basis.name == "unknown":
        raise ValueError("record has no PySCF basis name (info.json 'elct.basis'); cannot rebuild its DFT system")
    return dft

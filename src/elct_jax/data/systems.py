"""Rebuild the ai2dft ``System`` of a dataset record from the level of theory stored with it."""
from __future__ import annotations

from ai2dft.system import System
from elct_jax.data.deeph_dock import DeepHRecord


def system_from_record(record: DeepHRecord) -> System:
    """The molecular Kohn-Sham System of ``record`` (same basis, xc, charge, grid level, smearing as its
    labels). Raises ``ValueError`` for crystals (not yet supported here) or records lacking the settings."""
    if record.structure.is_periodic:
        raise ValueError("label-free training on crystal records is not supported by the data pipeline yet")
    dft = record.dft
    missing = [k for k in ("xc",) if k not in dft]
    if missing:
        raise ValueError(f"record has no {missing} in its info.json 'elct' settings; cannot rebuild its DFT system")
    smearing = tuple(dft["smearing"]) if dft.get("smearing") else None
    return System.from_symbols(
        record.structure.symbols, record.structure.positions_ang, record.basis.name, dft["xc"],
        charge=int(dft.get("charge", 0)), grid_level=dft.get("grid_level"), smearing=smearing,
    )

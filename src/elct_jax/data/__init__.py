"""Datasets: on-disk formats (DeepH-dock, legacy DeepH) and padded batching. Label generation with
PySCF lives in ``elct_jax.data.generate`` (imported explicitly, it needs PySCF)."""
from ai2dft.units import HARTREE_TO_EV
from elct_jax.data.deeph_dock import (
    DeepHFormatError,
    DeepHRecord,
    read_deeph_dock,
    write_deeph_dock,
)
from elct_jax.data.deeph_legacy import read_deeph_legacy, write_deeph_legacy

__all__ = [
    "HARTREE_TO_EV",
    "DeepHFormatError",
    "DeepHRecord",
    "read_deeph_dock",
    "write_deeph_dock",
    "read_deeph_legacy",
    "write_deeph_legacy",
]

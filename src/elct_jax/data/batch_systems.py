"""How each kind of ai2dft system enters a padded batch: its sizes to pad to, and the padded system.

Molecules (``ai2dft.System``; spin-polarized ``ai2dft.SpinSystem`` and spin-orbit ``ai2dft.SpinorSystem`` through
their base) are padded to the batch's
AO, grid and auxiliary-basis sizes (``ai2dft.pad_system``); crystals (``ai2dft.CrystalSystem``, spin-polarized
``ai2dft.SpinCrystalSystem``) are stacked as they are, so a batch of crystals shares one shape. Both are ``functools.singledispatch`` functions of the system type: a new
kind registers its own two functions here and ``elct_jax.data.loader`` batches it unchanged.
"""
from __future__ import annotations

import functools

from ai2dft.crystal import CrystalSystem
from ai2dft.spin_crystal import SpinCrystalSystem
from ai2dft.spin_system import SpinSystem, pad_spin_system
from ai2dft.spinor_system import SpinorSystem, pad_spinor_system
from ai2dft.system import System, pad_system


@functools.singledispatch
def grid_and_aux_sizes(system) -> tuple[int, int]:
    """(grid points, auxiliary functions) that the batch pads this system's kind to; (0, 0): not padded."""
    raise TypeError(f"no batching rule for a system of type {type(system).__name__}")


@grid_and_aux_sizes.register
def _(system: System) -> tuple[int, int]:
    return system.weights.shape[0], system.cderi.shape[0]


@grid_and_aux_sizes.register(SpinSystem)
@grid_and_aux_sizes.register(SpinorSystem)
def _(system) -> tuple[int, int]:
    return grid_and_aux_sizes(system.base)


@grid_and_aux_sizes.register(CrystalSystem)
@grid_and_aux_sizes.register(SpinCrystalSystem)
def _(system) -> tuple[int, int]:
    return 0, 0


@functools.singledispatch
def padded_system(system, n_ao: int, n_grid: int, n_aux: int):
    """The system padded to n_ao AOs, n_grid grid points and n_aux auxiliary functions (where its kind pads)."""
    raise TypeError(f"no batching rule for a system of type {type(system).__name__}")


@padded_system.register
def _(system: System, n_ao: int, n_grid: int, n_aux: int) -> System:
    return pad_system(system, n_ao, n_grid, n_aux)


@padded_system.register
def _(system: SpinSystem, n_ao: int, n_grid: int, n_aux: int) -> SpinSystem:
    return pad_spin_system(system, n_ao, n_grid, n_aux)


@padded_system.register
def _(system: SpinorSystem, n_ao: int, n_grid: int, n_aux: int) -> SpinorSystem:
    return pad_spinor_system(system, n_ao, n_grid, n_aux)


@padded_system.register(CrystalSystem)
@padded_system.register(SpinCrystalSystem)
def _(system, n_ao: int, n_grid: int, n_aux: int):
    return system

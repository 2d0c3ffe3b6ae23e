"""Shell layout of named PySCF basis sets."""
from __future__ import annotations

import functools

from pyscf import gto


@functools.lru_cache(maxsize=None)
def element_shells(basis: str, symbol: str) -> tuple[int, ...]:
    """Angular momentum of each shell of ``symbol`` in PySCF's AO order for the named basis.

    Raises ``ValueError`` when the basis has no functions for the element.
    """
    try:
        atom = gto.M(atom=f"{symbol} 0 0 0", basis=basis, spin=None, verbose=0)
    except Exception as err:  # PySCF raises a mix of KeyError/RuntimeError/BasisNotFoundError
        raise ValueError(f"basis {basis!r} has no functions for element {symbol!r}: {err}") from err
    if atom.nbas == 0:
        raise ValueError(f"basis {basis!r} has no functions for element {symbol!r}")
    return tuple(atom.bas_angular(i) for i in range(atom.nbas) for _ in range(atom.bas_nctr(i)))

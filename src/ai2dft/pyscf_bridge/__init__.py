"""The only place of the project that imports PySCF: structures and bases in, frozen arrays out."""
from ai2dft.pyscf_bridge.basis import element_shells

__all__ = ["element_shells"]

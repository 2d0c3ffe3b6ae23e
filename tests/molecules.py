"""Shared PySCF reference calculations for the Kohn-Sham layer tests (built once per process).

Density-fitted RKS with def2-SVP, PySCF's default grid (level 3) and auxiliary basis,
converged to conv_tol 1e-12.
"""
import functools

from pyscf import dft, gto

GEOMETRIES = {  # Angstrom
    "H2O": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "NH3": "N 0 0 0.1162; H 0 0.9397 -0.2711; H 0.8138 -0.4699 -0.2711; H -0.8138 -0.4699 -0.2711",
    "ETHANOL": (
        "C -0.0493 -0.4120 0.0000; C 1.3584 0.1500 0.0000; O -0.9818 0.6639 0.0000; "
        "H -0.2422 -1.0384 0.8819; H -0.2422 -1.0384 -0.8819; H 1.5438 0.7687 0.8831; "
        "H 1.5438 0.7687 -0.8831; H 2.0870 -0.6631 0.0000; H -1.8590 0.2614 0.0000"
    ),
}


@functools.lru_cache(maxsize=None)
def mole(name: str, basis: str = "def2-svp") -> gto.Mole:
    return gto.M(atom=GEOMETRIES[name], basis=basis, verbose=0)


@functools.lru_cache(maxsize=None)
def rks(name: str, xc: str) -> dft.rks.RKS:
    """Converged density-fitted RKS of molecule ``name`` with functional ``xc``."""
    mf = dft.RKS(mole(name), xc=xc).density_fit()
    mf.conv_tol = 1e-12
    mf.kernel()
    assert mf.converged, f"reference SCF for {name}/{xc} did not converge"
    return mf

"""Units and physical constants: the one place they are defined, named with their units.

Internal units are atomic (Hartree, Bohr, electron mass). Values are CODATA as shipped with scipy
(CODATA 2022 for scipy >= 1.15), except ``PYSCF_BOHR_ANG``, the older value PySCF itself converts
Angstrom input with (``pyscf.lib.param.BOHR``), used where our numbers must equal PySCF's bit for bit.
deepx-dock uses 27.2113845 eV per Hartree, 6.4e-8 relative below CODATA: a round trip through its
files is exact to that factor.
"""
from scipy.constants import physical_constants as _codata

HARTREE_TO_EV = _codata["Hartree energy in eV"][0]
HARTREE_TO_MEV = 1e3 * HARTREE_TO_EV
HARTREE_TO_UHA = 1e6                      # micro-Hartree per Hartree
BOHR_ANG = 1e10 * _codata["Bohr radius"][0]  # Angstrom per Bohr
PYSCF_BOHR_ANG = 0.52917721092           # PySCF's Angstrom per Bohr (CODATA 2010)
PYSCF_ANG_TO_BOHR = 1 / PYSCF_BOHR_ANG    # Bohr per Angstrom: PySCF multiplies Angstrom input by this
AMU_ME = _codata["atomic mass constant"][0] / _codata["electron mass"][0]  # electron masses per amu
KB_HARTREE = _codata["Boltzmann constant in eV/K"][0] / HARTREE_TO_EV      # Hartree per Kelvin
HARTREE_CM = 1e-2 * _codata["hartree-inverse meter relationship"][0]      # cm^-1 per Hartree

# H diagonal of padded AO slots and level of dropped S(k) directions: far above any valence or low virtual
# level, so never occupied, yet small enough to keep float32 eigensolvers accurate. Padded slots are
# uncoupled; an overlap is padded with 1 on the diagonal instead.
PAD_LEVEL_HARTREE = 100.0

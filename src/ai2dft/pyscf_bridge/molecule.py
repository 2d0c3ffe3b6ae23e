"""PySCF molecules -> the numpy arrays of an ``ai2dft.System`` (PySCF AO order, atomic units).

Everything PySCF computes for the molecular Kohn-Sham layer happens here: overlap and core
Hamiltonian, AO values (and gradients) on PySCF's Becke grid, the density-fitting Cholesky
tensor, the nuclear repulsion and the AO layout. Structures are validated on the way in.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pyscf import df, dft, gto, lib, scf
from pyscf.dft import libxc
from pyscf.data import elements

from ai2dft.precision import require_float64
from ai2dft.pyscf_bridge.basis import element_shells
from ai2dft.xc import canonical_xc, is_gga

MIN_DISTANCE_ANGSTROM = 0.1  # closer atoms are an input error
MIN_OVERLAP_EIGENVALUE = 1e-10  # below this S counts as not positive definite
_SMEARING_KINDS = {"fermi": "fermi", "gauss": "gaussian", "gaussian": "gaussian"}


def check_geometry(symbols: Sequence[str], positions_angstrom: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first pair of atoms closer than 0.1 Angstrom."""
    r = np.asarray(positions_angstrom, dtype=np.float64)
    dist = np.linalg.norm(r[:, None, :] - r[None, :, :], axis=-1)
    i, j = np.triu_indices(len(r), k=1)
    close = np.flatnonzero(dist[i, j] < MIN_DISTANCE_ANGSTROM)
    if close.size:
        a, b = i[close[0]], j[close[0]]
        raise ValueError(
            f"atoms {a} ({symbols[a]}) and {b} ({symbols[b]}) are {dist[a, b]:.4f} Angstrom apart "
            f"(minimum {MIN_DISTANCE_ANGSTROM} Angstrom): overlapping atoms"
        )


def check_electron_count(n_electrons: int, charge: int) -> None:
    """The Kohn-Sham layer is restricted (closed shell): the electron count must be even."""
    if n_electrons % 2:
        raise ValueError(
            f"{n_electrons} electrons (charge {charge}): this restricted closed-shell code needs an "
            f"even number of electrons; use charge {charge - 1} or {charge + 1}, or a spin-polarized "
            f"ai2dft.SpinSystem (collinear UKS)"
        )


def build_mole(
    symbols: Sequence[str], positions_angstrom: np.ndarray, basis: str, charge: int = 0
) -> gto.Mole:
    """A validated closed-shell PySCF ``Mole`` from element symbols and positions [n_atoms, 3] (A)."""
    symbols = [str(s) for s in symbols]
    positions = np.asarray(positions_angstrom, dtype=np.float64)
    if positions.shape != (len(symbols), 3):
        raise ValueError(f"positions must have shape ({len(symbols)}, 3), got {positions.shape}")
    for symbol in sorted(set(symbols)):
        element_shells(basis, symbol)  # raises ValueError naming the element and the basis
    check_geometry(symbols, positions)
    check_electron_count(sum(elements.charge(s) for s in symbols) - charge, charge)
    atoms = [(s, tuple(p)) for s, p in zip(symbols, positions)]
    return gto.M(atom=atoms, basis=basis, charge=charge, unit="Angstrom", verbose=0)


def split(obj: Any, kind: type = dft.rks.RKS) -> tuple[gto.Mole, Any]:
    """(mol, mf) from a ``Mole`` or a Kohn-Sham object of class ``kind`` (dft.RKS; dft.UKS for a spin-polarized
    system), after checking the geometry and the AO basis; anything else is an error."""
    if isinstance(obj, kind):
        mol, mf = obj.mol, obj
    elif isinstance(obj, gto.Mole):
        mol, mf = obj, None
    else:
        hint = " (for a UKS object use ai2dft.SpinSystem.from_pyscf)" if isinstance(obj, dft.uks.UKS) else ""
        what = "an unrestricted Kohn-Sham object (dft.UKS)" if kind is dft.uks.UKS else \
            "a restricted Kohn-Sham object (dft.RKS)"
        raise TypeError(f"expected a PySCF Mole or {what}, got {type(obj).__name__}{hint}")
    if hasattr(mol, "lattice_vectors"):
        raise TypeError("periodic cells are not handled by the molecular bridge")
    if mol.cart:
        raise ValueError("Cartesian AO bases (mol.cart = True) are not supported; use spherical AOs")
    symbols = [mol.atom_symbol(i) for i in range(mol.natm)]
    check_geometry(symbols, mol.atom_coords(unit="Angstrom"))
    return mol, mf


def _split_restricted(obj: Any) -> tuple[gto.Mole, dft.rks.RKS | None]:
    """``split`` for a closed shell: an even electron count and mol.spin = 0."""
    mol, mf = split(obj)
    check_electron_count(mol.nelectron, mol.charge)
    if mol.spin != 0:
        raise ValueError(f"mol.spin = {mol.spin}: this restricted closed-shell code needs spin 0; "
                         "use ai2dft.SpinSystem (collinear UKS)")
    return mol, mf


def _smearing(mf: Any, smearing: tuple[str, float] | None) -> tuple[str, float]:
    """(kind, sigma in Hartree): the argument, else the PySCF object's smearing, else none."""
    if smearing is None:
        sigma = getattr(mf, "sigma", None)
        method = getattr(mf, "smearing_method", None)
        smearing = (method, sigma) if sigma and method else ("fermi", 0.0)
    kind, sigma = smearing
    if str(kind).lower() not in _SMEARING_KINDS:
        raise ValueError(f"unknown smearing {kind!r}; expected 'fermi' or 'gaussian'")
    if not sigma >= 0.0:
        raise ValueError(f"smearing width sigma must be >= 0 Hartree, got {sigma}")
    return _SMEARING_KINDS[str(kind).lower()], float(sigma)


def _grids(mol: gto.Mole, mf: Any, grid_level: int | None) -> dft.gen_grid.Grids:
    """The object's own grid when no level is asked for, else a fresh Becke grid of that level."""
    if mf is not None and grid_level is None:
        grids = mf.grids
    else:
        grids = dft.gen_grid.Grids(mol)
        if grid_level is not None:
            grids.level = grid_level
    if grids.coords is None:
        grids.build(with_non0tab=True)
    return grids


def checked_xc(name: str) -> str:
    """``canonical_xc(name)``; for a functional PySCF knows but the layer does not implement, the error
    also says what kind it is (meta-GGA, range-separated hybrid, non-local VV10)."""
    try:
        return canonical_xc(name)
    except ValueError as err:
        kinds = []
        try:
            kinds = [kind for kind, test in (("a meta-GGA", libxc.is_meta_gga), ("non-local (VV10)", libxc.is_nlc),
                                             ("range-separated", lambda n: libxc.rsh_coeff(n)[0] != 0)) if test(name)]
        except (KeyError, ValueError):  # PySCF does not know the name either
            pass
        if not kinds:
            raise
        raise ValueError(f"{name!r} is {' and '.join(kinds)}: {err}") from None


def _cderi(mol: gto.Mole, mf: Any, xc: str, auxbasis: str | None) -> np.ndarray:
    """[naux, nao, nao] Cholesky-decomposed density-fitting tensor L with (ij|kl) ~ sum_P L_Pij L_Pkl.

    ``auxbasis`` when given; else the object's own density fitting; else what PySCF's
    ``density_fit()`` would choose for this RKS object or for ``dft.RKS(mol, xc)`` (for
    (semi-)local functionals a J-fit basis, e.g. def2-universal-jfit for def2 bases; for hybrids a
    JK-fit basis, def2-universal-jkfit, which then also fits the exact exchange).
    """
    with_df = getattr(mf, "with_df", None)
    if auxbasis is not None:
        with_df = df.DF(mol, auxbasis=auxbasis)
    elif not isinstance(with_df, df.DF):
        with_df = (mf if mf is not None else dft.RKS(mol, xc=xc)).density_fit().with_df
    if with_df._cderi is None:
        with_df.build()
    return np.concatenate([lib.unpack_tril(block) for block in with_df.loop()])


def _overlap(mol: gto.Mole) -> np.ndarray:
    s = mol.intor_symmetric("int1e_ovlp")
    smallest = np.linalg.eigvalsh(s)[0]
    if smallest < MIN_OVERLAP_EIGENVALUE:
        raise ValueError(
            f"overlap matrix S is not positive definite: smallest eigenvalue {smallest:.3e} "
            f"(threshold {MIN_OVERLAP_EIGENVALUE:g}); the basis is linearly dependent"
        )
    return s


def ao_layout(mol: gto.Mole) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[nao] atom index, l and m of every AO in PySCF order (p: m = 1, -1, 0 for px, py, pz)."""
    atom, ls, ms = [], [], []
    for b in range(mol.nbas):
        l = mol.bas_angular(b)
        m = [1, -1, 0] if l == 1 else list(range(-l, l + 1))
        for _ in range(mol.bas_nctr(b)):
            atom += [mol.bas_atom(b)] * (2 * l + 1)
            ls += [l] * (2 * l + 1)
            ms += m
    return np.array(atom, np.int32), np.array(ls, np.int32), np.array(ms, np.int32)


def molecule_arrays(
    obj: Any,
    xc: str | None = None,
    smearing: tuple[str, float] | None = None,
    grid_level: int | None = None,
    auxbasis: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``ai2dft.System`` for a PySCF ``Mole`` or RKS object.

    From an RKS object, ``xc``, the grid, the density fitting and the smearing are taken from it
    unless given here. A ``Mole`` needs ``xc``; its grid is PySCF's default (level 3) unless
    ``grid_level`` is given. No small-density grid pruning is applied beyond what the object did.
    Raises ``RuntimeError`` when JAX's float64 mode is off (``ai2dft.enable_float64()``).
    """
    require_float64()
    return system_arrays(*_split_restricted(obj), xc, smearing, grid_level, auxbasis)


def system_arrays(mol: gto.Mole, mf: Any, xc: str | None, smearing: tuple[str, float] | None,
                  grid_level: int | None, auxbasis: str | None) -> dict[str, Any]:
    """``molecule_arrays`` of a checked (mol, mf) pair (``split``); mf (RKS, UKS or None) supplies what is not given."""
    if xc is None:
        if mf is None:
            raise ValueError("xc is required when building a System from a Mole")
        xc = mf.xc
    xc = checked_xc(xc)
    kind, sigma = _smearing(mf, smearing)
    grids = _grids(mol, mf, grid_level)
    nao = mol.nao
    if is_gga(xc):
        values = mol.eval_gto("GTOval_sph_deriv1", grids.coords)  # [4, ngrid, nao]
        ao, ao_grad = values[0], values[1:]
    else:
        ao, ao_grad = mol.eval_gto("GTOval_sph", grids.coords), np.zeros((3, 0, nao))
    ao_atom, ao_l, ao_m = ao_layout(mol)
    return dict(
        overlap=_overlap(mol),
        hcore=mf.get_hcore() if mf is not None else scf.hf.get_hcore(mol),
        ao=ao,
        ao_grad=ao_grad,
        weights=np.asarray(grids.weights),
        cderi=_cderi(mol, mf, xc, auxbasis),
        n_electrons=np.float64(mol.nelectron),
        e_nuc=np.float64(mol.energy_nuc()),
        sigma=np.float64(sigma),
        ao_mask=np.ones(nao),
        ao_atom=ao_atom,
        ao_l=ao_l,
        ao_m=ao_m,
        xc=xc,
        smearing_kind=kind,
    )

"""Periodic PySCF cells -> frozen numpy arrays for ``ai2dft.crystal.CrystalSystem``.

Everything PySCF knows about a crystal that the JAX free energy needs, computed once:

- ``hcore(k)``: PySCF's own core Hamiltonian ``KRKS.get_hcore``. With a GTH pseudopotential and
  the plane-wave density fitting (FFTDF) it is the analytic lattice-summed kinetic energy, plus
  the GTH local part (``vpplocG`` on the FFT mesh, its G = 0 term included; the compensating
  background cancels against the Ewald energy and the Hartree G = 0 exclusion), plus the GTH
  non-local projectors (summed over the same plane waves). Without a pseudopotential it is the
  kinetic energy plus the FFT nuclear attraction.
- ``S(k)``, k-points (Cartesian and fractional), uniform k-weights, the Ewald energy
  ``cell.energy_nuc()`` and the valence electron count per cell.
- PySCF's linear-dependency removal: the projector on the eigenvectors of S(k) above
  ``scf.hf.overlap_zero_eigenvalue_threshold`` and the orthogonalizer of that subspace.
- The uniform real-space grid of ``mesh`` points: Bloch AO values (and gradients for GGAs)
  ``phi^k_i(r) = sum_T exp(i k.T) phi_i(r - T)`` per k-point, cut into chunks of ``chunk_size``
  points (the last chunk zero-padded) so that no step ever holds more than one chunk's
  ``[nk, n_deriv, chunk, nao]`` intermediate. Every grid point weighs ``volume / n_grid``.
- The Coulomb kernel ``tools.get_coulG`` on the same mesh: ``4 pi / |G|^2`` with G = 0 set to 0.

The mesh: a ``ke_cutoff`` (Hartree) gives ``cell.cutoff_to_mesh(ke_cutoff)``, the mesh of the
plane waves with ``|G|^2 / 2 < ke_cutoff``; no cutoff keeps ``cell.mesh`` (PySCF's default mesh
from ``cell.precision``, which is very fine: graphene gth-dzvp gets ~[39, 39, 209]).
Parity with a PySCF ``KRKS`` holds when both use the same mesh, which ``from a KRKS`` guarantees.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pyscf.scf import hf as mol_hf
from pyscf.pbc import dft as pbc_dft
from pyscf.pbc import df as pbc_df
from pyscf.pbc import gto as pbc_gto
from pyscf.pbc import tools as pbc_tools
from pyscf.pbc.dft import gen_grid
from pyscf.pbc.lib.kpts import KPoints

from ai2dft.precision import require_float64
from ai2dft.pyscf_bridge.molecule import MIN_OVERLAP_EIGENVALUE, ao_layout
from ai2dft.xc import canonical_xc, is_gga

_SMEARING_KINDS = {"fermi": "fermi", "gauss": "gaussian", "gaussian": "gaussian"}


def crystal_arrays(
    source,
    *,
    xc: str | None = None,
    kmesh: tuple[int, int, int] | None = None,
    smearing: tuple[str, float] | None = None,
    ke_cutoff: float | None = None,
    basis: str | None = None,
    pseudo: str | None = None,
    chunk_size: int = 2048,
) -> dict[str, Any]:
    """Keyword arguments of ``CrystalSystem`` from a PySCF ``KRKS``, a PySCF ``Cell`` or ASE ``Atoms``.

    From a ``KRKS`` (optionally with ``.smearing(...)``) everything is taken from the object:
    xc, k-points, mesh (``with_df.mesh``), smearing; passing any other option is an error.
    From a ``Cell``: ``xc`` (default "pbe"), ``kmesh`` (default (1, 1, 1), Gamma-centred),
    ``smearing`` = ("fermi" | "gaussian", sigma_hartree) or None, ``ke_cutoff`` (Hartree).
    From ASE ``Atoms`` (all three directions periodic; slabs carry vacuum): also ``basis``
    (required) and ``pseudo`` (default gth-pade for LDA, gth-pbe for PBE).
    Raises ``RuntimeError`` when JAX's float64 mode is off (``ai2dft.enable_float64()``).
    """
    require_float64()
    if isinstance(source, pbc_dft.krks.KRKS):
        given = dict(xc=xc, kmesh=kmesh, smearing=smearing, ke_cutoff=ke_cutoff, basis=basis, pseudo=pseudo)
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise ValueError(f"options {extra} conflict with the KRKS object; set them on the object instead")
        return _arrays_from_krks(source, chunk_size)
    if isinstance(source, pbc_gto.Cell):
        if basis is not None or pseudo is not None:
            raise ValueError("basis and pseudo belong to the Cell; set them there")
        cell = source
    elif _is_ase_atoms(source):
        if basis is None:
            raise ValueError("an ASE Atoms source needs basis=, e.g. 'gth-szv'")
        default_pseudo = "gth-pbe" if is_gga(xc or "pbe") else "gth-pade"
        cell = cell_from_ase(source, basis=basis, pseudo=pseudo or default_pseudo)
    else:
        raise TypeError(f"expected a PySCF KRKS, a PySCF pbc Cell or ASE Atoms, got {type(source).__name__}")
    mf = make_krks(cell, xc=xc or "pbe", kmesh=kmesh or (1, 1, 1), smearing=smearing, ke_cutoff=ke_cutoff)
    return _arrays_from_krks(mf, chunk_size)


def make_krks(cell, *, xc="pbe", kmesh=(1, 1, 1), smearing=None, ke_cutoff=None):
    """A PySCF ``KRKS`` (FFTDF, uniform grid) on a Gamma-centred ``kmesh``; its mesh follows ``ke_cutoff``."""
    if ke_cutoff is not None:
        if not ke_cutoff > 0:
            raise ValueError(f"ke_cutoff must be positive (Hartree), got {ke_cutoff}")
        cell = cell.copy(deep=False)
        cell.build(mesh=cell.cutoff_to_mesh(ke_cutoff), ke_cutoff=ke_cutoff)
    kmesh = _check_kmesh(kmesh)
    mf = pbc_dft.KRKS(cell, cell.make_kpts(kmesh))
    mf.xc = xc
    if smearing is not None:
        kind, sigma = _check_smearing(smearing)
        mf = mf.smearing(sigma=sigma, method=kind)
    return mf


def cell_from_ase(atoms, *, basis: str, pseudo: str | None):
    """A built PySCF ``Cell`` from ASE ``Atoms`` with ``pbc`` all True (Angstrom in, Bohr inside)."""
    if not all(atoms.pbc):
        raise ValueError(f"ASE Atoms must be periodic in all three directions (pbc={list(atoms.pbc)}); "
                         "model slabs and sheets with vacuum")
    if atoms.cell.volume <= 0:
        raise ValueError("ASE Atoms has no (or a left-handed) cell")
    atom = [(symbol, tuple(pos)) for symbol, pos in zip(atoms.get_chemical_symbols(), atoms.positions)]
    cell = pbc_gto.Cell()
    cell.a = np.asarray(atoms.cell)
    cell.atom = atom
    cell.unit = "Angstrom"
    cell.basis = basis
    cell.pseudo = pseudo
    cell.verbose = 0
    return cell.build()


def _arrays_from_krks(mf, chunk_size: int) -> dict[str, Any]:
    _check_krks(mf)
    cell, xc = mf.cell, canonical_xc(mf.xc)
    kpts = np.asarray(mf.kpts, dtype=float).reshape(-1, 3)
    nk, nao = len(kpts), cell.nao
    mesh = tuple(int(m) for m in mf.with_df.mesh)
    if tuple(int(m) for m in mf.grids.mesh) != mesh:
        raise ValueError(f"XC grid mesh {list(mf.grids.mesh)} differs from the Coulomb mesh {list(mesh)}")
    lattice = np.asarray(cell.lattice_vectors(), dtype=float)
    hcore = np.asarray(mf.get_hcore(cell, kpts), dtype=np.complex128).reshape(nk, nao, nao)
    kind, sigma = _smearing_of(mf)
    ao_atom, ao_l, ao_m = ao_layout(cell)
    overlap, projector, orthogonalizer = overlap_and_orthogonalizer(cell, kpts)
    return dict(
        overlap=overlap,
        basis_projector=projector,
        s_inv_sqrt=orthogonalizer,
        hcore=hcore,
        kpts=kpts,
        kpts_frac=kpts @ lattice.T / (2 * np.pi),
        kweights=np.full(nk, 1.0 / nk),
        lattice=lattice,
        ao=bloch_ao_chunks(cell, mesh, kpts, 4 if is_gga(xc) else 1, chunk_size),
        coulG=np.asarray(pbc_tools.get_coulG(cell, mesh=mesh), dtype=float),
        grid_weight=np.float64(cell.vol / np.prod(mesh)),
        n_electrons=np.float64(cell.tot_electrons(nk) / nk),
        e_nuc=np.float64(cell.energy_nuc()),
        sigma=np.float64(sigma),
        ao_mask=np.ones(cell.nao),
        ao_atom=ao_atom,
        ao_l=ao_l,
        ao_m=ao_m,
        mesh=mesh,
        xc=xc,
        smearing_kind=kind,
    )


def bloch_ao_chunks(cell, mesh, kpts, n_deriv: int, chunk_size: int) -> np.ndarray:
    """Bloch AO values on the uniform grid, ``[n_chunks, nk, n_deriv, chunk_size, nao]`` complex128.

    Built chunk by chunk into one preallocated, 64-byte aligned array, so PySCF's temporaries
    stay chunk-sized and ``jax.device_put`` can adopt the buffer on CPU without a copy.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    coords = np.asarray(cell.get_uniform_grids(mesh))  # [n_grid, 3] Bohr, C order of the mesh
    n_grid, nk, nao = len(coords), len(kpts), cell.nao
    n_chunks = -(-n_grid // chunk_size)
    out = _aligned_zeros((n_chunks, nk, n_deriv, chunk_size, nao), np.complex128)
    deriv = 0 if n_deriv == 1 else 1
    for c in range(n_chunks):
        block = coords[c * chunk_size:(c + 1) * chunk_size]
        values = pbc_dft.numint.eval_ao_kpts(cell, block, kpts=kpts, deriv=deriv)
        out[c, :, :, :len(block)] = np.asarray(values).reshape(nk, n_deriv, len(block), nao)
    return out


def _aligned_zeros(shape, dtype, alignment: int = 64) -> np.ndarray:
    """np.zeros whose data pointer is a multiple of ``alignment`` bytes (XLA's CPU zero-copy rule)."""
    n_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(n_bytes + alignment, dtype=np.uint8)
    offset = -raw.ctypes.data % alignment
    return raw[offset:offset + n_bytes].view(dtype).reshape(shape)


def _check_krks(mf) -> None:
    if isinstance(mf.kpts, KPoints):
        raise ValueError("symmetry-reduced KPoints are not supported; build the KRKS on a plain k-point array")
    if type(mf.with_df) is not pbc_df.FFTDF:
        raise ValueError(f"only plane-wave density fitting (FFTDF) matches the FFT Hartree term, "
                         f"got {type(mf.with_df).__name__}")
    if not isinstance(mf.grids, gen_grid.UniformGrids):
        raise ValueError(f"the XC grid must be a UniformGrids, got {type(mf.grids).__name__}")
    if type(mf._numint) is not pbc_dft.numint.KNumInt:
        raise ValueError(f"only the plain KNumInt integrator is supported, got {type(mf._numint).__name__}")
    libxc = mf._numint.libxc
    if libxc.is_hybrid_xc(mf.xc) or libxc.is_nlc(mf.xc):
        raise ValueError(f"xc {mf.xc!r}: hybrid and non-local functionals are not supported for crystals "
                         f"(periodic exact exchange is not implemented)")
    if mf.cell.cart:
        raise ValueError("Cartesian AO bases (cell.cart = True) are not supported; use spherical AOs")
    if mf.cell.dimension != 3:
        raise ValueError(f"cell.dimension={mf.cell.dimension}: model low-dimensional systems as 3D cells with vacuum")


def overlap_and_orthogonalizer(cell, kpts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S(k), P(k), X(k)), each [nk, nao, nao] complex, with PySCF's linear-dependency removal.

    PySCF's k-point SCF drops the eigenvectors of S(k) with eigenvalue below
    ``scf.hf.overlap_zero_eigenvalue_threshold`` (1e-6; graphene gth-dzvp has 1.6e-7). P(k) projects
    on the kept eigenvectors; X(k) = P S^-1/2 P + (1 - P) orthogonalizes the kept space and is the
    identity on the dropped one. Raises ``ValueError`` if S(k) is singular and nothing is dropped.
    """
    s = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kpts), dtype=np.complex128)
    s = s.reshape(len(kpts), cell.nao, cell.nao)
    e, v = np.linalg.eigh(s)  # [nk, nao], [nk, nao, nao]
    threshold = mol_hf.overlap_zero_eigenvalue_threshold if mol_hf.remove_overlap_zero_eigenvalue else 0.0
    keep = e > threshold
    k = int(np.argmin(e.min(axis=1)))
    if e[k].min() < MIN_OVERLAP_EIGENVALUE and threshold < MIN_OVERLAP_EIGENVALUE:
        raise ValueError(f"S(k) is not positive definite at k-point {k}: smallest eigenvalue {e[k].min():.3e}; "
                         f"the basis is linearly dependent in this cell")
    if not keep.any(axis=1).all():
        raise ValueError("S(k) has no eigenvalue above the linear-dependency threshold at some k-point")
    project = (v * keep[:, None, :]) @ np.conj(np.swapaxes(v, 1, 2))
    scale = np.where(keep, 1.0 / np.sqrt(np.where(keep, e, 1.0)), 1.0)
    return s, project, (v * scale[:, None, :]) @ np.conj(np.swapaxes(v, 1, 2))


def _smearing_of(mf) -> tuple[str, float]:
    """(kind, sigma in Hartree) of a PySCF object; ("fermi", 0.0) without smearing. ``fix_spin`` (one chemical
    potential per spin) only with a KUKS (``ai2dft.SpinCrystalSystem``)."""
    sigma = getattr(mf, "sigma", None)
    method = getattr(mf, "smearing_method", None)
    if not sigma or not method:
        return "fermi", 0.0
    if getattr(mf, "mu0", None) is not None or (getattr(mf, "fix_spin", False) and not mf.istype("KUHF")):
        raise ValueError("smearing with a fixed chemical potential (mu0) or fix_spin is not supported")
    return _check_smearing((method, sigma))


def _check_smearing(smearing) -> tuple[str, float]:
    try:
        kind, sigma = smearing
    except (TypeError, ValueError) as err:
        raise ValueError(f"smearing must be (kind, sigma_hartree), got {smearing!r}") from err
    if str(kind).lower() not in _SMEARING_KINDS:
        raise ValueError(f"unknown smearing {kind!r}; expected 'fermi' or 'gaussian'")
    if not float(sigma) > 0:
        raise ValueError(f"smearing sigma must be positive (Hartree), got {sigma}")
    return _SMEARING_KINDS[str(kind).lower()], float(sigma)


def _check_kmesh(kmesh) -> tuple[int, int, int]:
    kmesh = tuple(int(n) for n in kmesh)
    if len(kmesh) != 3 or min(kmesh) < 1:
        raise ValueError(f"kmesh must be three positive integers, got {kmesh}")
    return kmesh


def _is_ase_atoms(obj) -> bool:
    return type(obj).__name__ == "Atoms" and hasattr(obj, "get_chemical_symbols") and hasattr(obj, "pbc")

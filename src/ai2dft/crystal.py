"""``CrystalSystem``: everything the periodic Kohn-Sham free energy needs, as a frozen JAX pytree,
and the Bloch sums between real-space blocks H(R) and k-space matrices H(k).

Arrays are in PySCF AO order and atomic units (Hartree, Bohr). Field names follow the molecular
``ai2dft.System`` where the meaning is the same (overlap, hcore, n_electrons, e_nuc, sigma, ao_mask,
xc, smearing_kind), so ``ai2dft.density`` treats both alike. The container does not import PySCF; the
constructors call ``ai2dft.pyscf_bridge.cell`` lazily.

Conventions: Bloch AOs phi^k_i(r) = sum_T exp(i k.T) phi_i(r - T) (PySCF); real-space blocks
H_ij(R) = <i, 0|H|j, R>, so H(k) = sum_R H(R) exp(2 pi i k_frac.R) with R integer lattice
coordinates and k_frac in units of the reciprocal lattice vectors. Density matrices D(k) are
spin-summed and not k-weighted; rho(r) = sum_k w_k sum_ij D_ij(k) phi^k_i(r) conj(phi^k_j(r)).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ai2dft.bloch import phases

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CrystalSystem:
    """One closed-shell crystal (nk k-points, nao AOs per cell) for the Kohn-Sham layer.

    Attributes:
        overlap:     [nk, nao, nao] complex overlap S(k).
        basis_projector: [nk, nao, nao] projector P(k) on the eigenvectors of S(k) that PySCF keeps
                     (eigenvalue > 1e-6); the identity without near linear dependencies.
        s_inv_sqrt:  [nk, nao, nao] orthogonalizer P S^-1/2 P + (1 - P) of the kept space.
        hcore:       [nk, nao, nao] complex core Hamiltonian (kinetic + GTH local + non-local), Hartree.
        kpts:        [nk, 3] Cartesian k-points, 1/Bohr.
        kpts_frac:   [nk, 3] k-points in units of the reciprocal lattice vectors.
        kweights:    [nk] k-point weights, sum 1.
        lattice:     [3, 3] lattice vectors as rows, Bohr.
        ao:          [n_chunks, nk, n_deriv, chunk, nao] complex Bloch AO values on the uniform grid
                     (n_deriv = 1: values; 4: values and x, y, z gradients for GGAs); zero on the
                     padded points of the last chunk.
        coulG:       [n_grid] Coulomb kernel 4 pi/|G|^2 (G = 0 excluded), FFT order of the mesh.
        grid_weight: [] cell volume / n_grid, Bohr^3.
        n_electrons: [] valence electrons per cell.
        e_nuc:       [] Ewald ion-ion energy per cell, Hartree.
        sigma:       [] smearing width, Hartree (0: integer occupations).
        ao_mask:     [nao] 1.0 for every AO (no padding for crystals yet).
        ao_atom, ao_l, ao_m: [nao] int32 atom index, l and m of each AO (PySCF order).
        mesh:        (n1, n2, n3) FFT mesh (static); n_grid = n1 n2 n3.
        xc:          canonical functional name (static), see ``ai2dft.xc.canonical_xc`` (LDA or GGA: no hybrids).
        smearing_kind: "fermi" or "gaussian" (static).
    """

    overlap: Array
    basis_projector: Array
    s_inv_sqrt: Array
    hcore: Array
    kpts: Array
    kpts_frac: Array
    kweights: Array
    lattice: Array
    ao: Array
    coulG: Array
    grid_weight: Array
    n_electrons: Array
    e_nuc: Array
    sigma: Array
    ao_mask: Array
    ao_atom: Array
    ao_l: Array
    ao_m: Array
    mesh: tuple[int, int, int] = dataclasses.field(metadata=dict(static=True))
    xc: str = dataclasses.field(metadata=dict(static=True))
    smearing_kind: str = dataclasses.field(metadata=dict(static=True))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f.name}={tuple(getattr(self, f.name).shape)}" for f in dataclasses.fields(self)
                           if not f.metadata.get("static"))
        return (f"CrystalSystem(xc={self.xc!r}, smearing_kind={self.smearing_kind!r}, mesh={self.mesh}, "
                f"{shapes})")

    @property
    def n_k(self) -> int:
        return self.overlap.shape[0]

    @property
    def n_ao(self) -> int:
        return self.overlap.shape[-1]

    @property
    def n_grid(self) -> int:
        return int(np.prod(self.mesh))

    @property
    def is_gga(self) -> bool:
        return self.ao.shape[2] == 4

    @classmethod
    def from_arrays(cls, **kwargs: Any) -> "CrystalSystem":
        """Build from numpy arrays (moved to the default JAX device) and the static fields.

        ``jax.device_put`` adopts 64-byte aligned numpy buffers on CPU without copying them, which
        keeps the peak memory of the large AO array at one copy (the bridge allocates it aligned).
        """
        static = {k: kwargs.pop(k) for k in ("mesh", "xc", "smearing_kind")}
        return cls(**{k: jax.device_put(np.asarray(v)) for k, v in kwargs.items()}, **static)

    @classmethod
    def from_pyscf(
        cls,
        obj: Any,
        xc: str | None = None,
        kmesh: tuple[int, int, int] | None = None,
        smearing: tuple[str, float] | None = None,
        ke_cutoff: float | None = None,
        chunk_size: int = 2048,
    ) -> "CrystalSystem":
        """From a PySCF ``KRKS`` (FFTDF; xc, k-points, mesh and smearing taken from it; no other
        option allowed) or a built ``pbc.gto.Cell`` (``xc`` default "pbe", ``kmesh`` default
        (1, 1, 1) Gamma-centred, ``smearing`` = (kind, sigma_hartree), ``ke_cutoff`` in Hartree
        sets the mesh; None keeps ``cell.mesh``). ``chunk_size`` grid points per AO chunk."""
        from ai2dft.pyscf_bridge.cell import crystal_arrays

        return cls.from_arrays(**crystal_arrays(obj, xc=xc, kmesh=kmesh, smearing=smearing,
                                                ke_cutoff=ke_cutoff, chunk_size=chunk_size))

    @classmethod
    def from_ase(
        cls,
        atoms: Any,
        basis: str,
        xc: str = "pbe",
        pseudo: str | None = None,
        kmesh: tuple[int, int, int] = (1, 1, 1),
        smearing: tuple[str, float] | None = None,
        ke_cutoff: float | None = None,
        chunk_size: int = 2048,
    ) -> "CrystalSystem":
        """From ASE ``Atoms`` with ``pbc`` all True (Angstrom). ``pseudo`` defaults to gth-pade
        for LDA and gth-pbe for PBE; other keywords as in :meth:`from_pyscf`."""
        from ai2dft.pyscf_bridge.cell import crystal_arrays

        return cls.from_arrays(**crystal_arrays(atoms, xc=xc, kmesh=kmesh, smearing=smearing, ke_cutoff=ke_cutoff,
                                                basis=basis, pseudo=pseudo, chunk_size=chunk_size))


def bloch_sum(blocks: Array, translations: Array, kpts_frac: Array) -> Array:
    """H(k) = sum_R H(R) exp(2 pi i k.R): [nk, nao, nao] complex.

    blocks: [nR, nao, nao] real-space blocks H_ij(R) = <i, 0|H|j, R>; translations: [nR, 3]
    integer lattice coordinates of R; kpts_frac: [nk, 3]. The result is Hermitian when the list
    holds -R with H(-R) = H(R)^T for every R (``ai2dft.hermitian.hermitian_part`` enforces it otherwise).
    """
    phase = phases(kpts_frac, translations)  # [nk, nR]
    return jnp.einsum("kr,rij->kij", phase, blocks.astype(phase.dtype))


def inverse_bloch_sum(H_k: Array, kweights: Array, kpts_frac: Array, translations: Array) -> Array:
    """H(R) = sum_k w_k H(k) exp(-2 pi i k.R): [nR, nao, nao] complex.

    The exact inverse of ``bloch_sum`` on a uniform k-mesh when ``translations`` is one
    representative per Born-von Karman class (``bvk_translations``); otherwise aliased (see
    DESIGN.md section 3). Real for time-reversal-symmetric H(k) (H(-k) = conj H(k)).
    """
    phase = jnp.conj(phases(kpts_frac, translations))  # [nk, nR]
    return jnp.einsum("k,kr,kij->rij", kweights.astype(phase.dtype), phase, H_k)


def bvk_translations(kmesh: tuple[int, int, int]) -> np.ndarray:
    """[n1 n2 n3, 3] int lattice translations, one per Born-von Karman class of ``kmesh``,
    each as short as possible along every axis: R_a in [-(n_a - 1) // 2, n_a // 2]."""
    axes = [range(-((n - 1) // 2), n // 2 + 1) for n in kmesh]
    return np.array(list(itertools.product(*axes)), dtype=np.int32).reshape(-1, 3)


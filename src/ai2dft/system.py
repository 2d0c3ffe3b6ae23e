"""``System``: everything the molecular Kohn-Sham energy needs, as a frozen JAX pytree; its
constructors are also the one entry point for crystals (they return a ``CrystalSystem`` for a
periodic PySCF cell or periodic ASE atoms).

Arrays are in PySCF AO order and atomic units (Hartree, Bohr). The container does not import
PySCF; the constructors call ``ai2dft.pyscf_bridge.molecule`` lazily.

Padding (``pad_system``) gives several molecules the same shapes so they can be stacked and
vmapped, or share one compiled function: a padded AO has S = 1 on its diagonal and zero elsewhere,
a core-Hamiltonian diagonal of ``PAD_LEVEL_HARTREE`` (far above any occupied level, so D(H) never
occupies it), zero AO values and zero density-fitting rows; padded grid points have weight 0 and
padded auxiliary functions are zero.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ai2dft.crystal import CrystalSystem
from ai2dft.units import PAD_LEVEL_HARTREE

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class System:
    """One closed-shell molecule for the Kohn-Sham layer.

    Attributes (shapes; nao counts padded AOs, ngrid padded grid points, naux padded aux functions):
        overlap:     [nao, nao] AO overlap S.
        hcore:       [nao, nao] core Hamiltonian (kinetic + nuclear attraction, + ECP), Hartree.
        ao:          [ngrid, nao] AO values on the integration grid (Bohr^-3/2).
        ao_grad:     [3, ngrid, nao] AO gradients (x, y, z) for GGAs; [3, 0, nao] for LDAs.
        weights:     [ngrid] quadrature weights (Bohr^3).
        cderi:       [naux, nao, nao] density-fitting Cholesky tensor:
                     J_ij = sum_P cderi_Pij sum_kl cderi_Pkl D_kl.
        n_electrons: [] electron count (float).
        e_nuc:       [] nuclear repulsion, Hartree.
        sigma:       [] smearing width, Hartree (0: integer occupations).
        ao_mask:     [nao] 1.0 for a real AO, 0.0 for padding.
        ao_atom, ao_l, ao_m: [nao] int32 atom index, l and m of each AO (PySCF order; p has
                     m = 1, -1, 0); -1, -1, 0 for padding.
        xc:          canonical functional name (static), see ``ai2dft.xc.canonical_xc``; a global hybrid's
                     exact-exchange fraction is ``ai2dft.xc.exact_exchange_fraction(xc)`` (static too).
        smearing_kind: "fermi" or "gaussian" (static).

    The number of real AOs is not static metadata (so padded systems of different molecules
    share one tree structure): it is ``n_ao_real`` = sum(ao_mask).
    """

    overlap: Array
    hcore: Array
    ao: Array
    ao_grad: Array
    weights: Array
    cderi: Array
    n_electrons: Array
    e_nuc: Array
    sigma: Array
    ao_mask: Array
    ao_atom: Array
    ao_l: Array
    ao_m: Array
    xc: str = dataclasses.field(metadata=dict(static=True))
    smearing_kind: str = dataclasses.field(metadata=dict(static=True))

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{f.name}={tuple(getattr(self, f.name).shape)}" for f in dataclasses.fields(self)
            if not f.metadata.get("static")
        )
        return f"System(xc={self.xc!r}, smearing_kind={self.smearing_kind!r}, {shapes})"

    @property
    def n_ao(self) -> int:
        return self.overlap.shape[-1]

    @property
    def n_ao_real(self) -> int:
        """Number of real (unpadded) AOs; needs concrete arrays."""
        return int(np.sum(np.asarray(self.ao_mask)))

    @classmethod
    def from_arrays(cls, **kwargs: Any) -> "System":
        """Build from numpy arrays (moved to the default JAX device) and the static fields."""
        static = {k: kwargs.pop(k) for k in ("xc", "smearing_kind")}
        return cls(**{k: jnp.asarray(v) for k, v in kwargs.items()}, **static)

    @classmethod
    def from_pyscf(
        cls,
        obj: Any,
        xc: str | None = None,
        smearing: tuple[str, float] | None = None,
        grid_level: int | None = None,
        auxbasis: str | None = None,
        *,
        kmesh: tuple[int, int, int] | None = None,
        ke_cutoff: float | None = None,
        chunk_size: int | None = None,
    ) -> "System | CrystalSystem":
        """The Kohn-Sham system of a PySCF molecule or crystal; ``smearing`` is ``(kind, sigma_hartree)``.

        Molecules (a ``System``): from an RKS object (its xc, grid, density fitting and smearing are
        used unless given here) or a ``Mole`` (then ``xc`` is required; default grid level 3, PySCF's
        default auxiliary basis, no smearing).
        Crystals (a ``CrystalSystem``, see :meth:`CrystalSystem.from_pyscf`): from a ``KRKS`` (all
        settings taken from it) or a built ``pbc.gto.Cell`` with ``xc`` (default "pbe"), ``kmesh``
        (default (1, 1, 1)), ``ke_cutoff`` (Hartree; sets the FFT mesh, None keeps ``cell.mesh``) and
        ``chunk_size`` (grid points per AO chunk). Options of the other kind raise ``ValueError``.
        """
        if _is_periodic(obj):
            _reject(dict(grid_level=grid_level, auxbasis=auxbasis), "a periodic cell")
            chunk = {} if chunk_size is None else dict(chunk_size=chunk_size)
            return CrystalSystem.from_pyscf(obj, xc=xc, kmesh=kmesh, smearing=smearing, ke_cutoff=ke_cutoff, **chunk)
        _reject(dict(kmesh=kmesh, ke_cutoff=ke_cutoff, chunk_size=chunk_size), f"a molecule ({type(obj).__name__})")
        from ai2dft.pyscf_bridge.molecule import molecule_arrays

        return cls.from_arrays(**molecule_arrays(obj, xc, smearing, grid_level, auxbasis))

    @classmethod
    def from_symbols(
        cls,
        symbols: Sequence[str],
        positions_angstrom: np.ndarray,
        basis: str,
        xc: str,
        charge: int = 0,
        **kwargs: Any,
    ) -> "System":
        """From element symbols, positions [n_atoms, 3] in Angstrom, a PySCF basis name and xc.

        Further keywords (smearing, grid_level, auxbasis) as in :meth:`from_pyscf`.
        """
        from ai2dft.pyscf_bridge.molecule import build_mole

        return cls.from_pyscf(build_mole(symbols, positions_angstrom, basis, charge), xc=xc, **kwargs)

    @classmethod
    def from_ase(cls, atoms: Any, basis: str, xc: str, charge: int = 0, **kwargs: Any) -> "System | CrystalSystem":
        """From an ASE ``Atoms`` (positions in Angstrom): a molecule (``pbc`` all False; keywords as in
        :meth:`from_symbols`) or, if any direction is periodic, a crystal via
        :meth:`CrystalSystem.from_ase` (``pbc`` must then be all True; neutral cells only; keywords
        pseudo, kmesh, smearing, ke_cutoff, chunk_size)."""
        if any(atoms.pbc):
            _reject(dict(grid_level=kwargs.pop("grid_level", None), auxbasis=kwargs.pop("auxbasis", None)),
                    "a periodic cell")
            if charge != 0:
                raise ValueError(f"charge={charge}: periodic cells must be neutral")
            return CrystalSystem.from_ase(atoms, basis, xc, **kwargs)
        return cls.from_symbols(
            atoms.get_chemical_symbols(), atoms.get_positions(), basis, xc, charge, **kwargs
        )


def _is_periodic(obj: Any) -> bool:
    """A PySCF pbc ``Cell``, or a mean-field object built on one (both carry lattice vectors)."""
    return hasattr(obj, "lattice_vectors") or hasattr(getattr(obj, "cell", None), "lattice_vectors")


def _reject(options: dict[str, Any], source: str) -> None:
    """Raise ValueError naming the options that were given (not None) but do not apply to ``source``."""
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise ValueError(f"option(s) {', '.join(given)} do not apply to {source}")


def _pad_axes(x: Array, widths: dict[int, int], value: float = 0.0) -> Array:
    pad = [(0, widths.get(axis, 0)) for axis in range(x.ndim)]
    return jnp.pad(x, pad, constant_values=value)


def pad_system(system: System, nao_pad: int, ngrid_pad: int, naux_pad: int) -> System:
    """Pad ``system`` to nao_pad AOs, ngrid_pad grid points and naux_pad auxiliary functions.

    The energy of a padded system at a density matrix padded with zeros equals the original.
    LDA systems keep ``ao_grad`` at [3, 0, nao_pad].
    """
    nao, ngrid, naux = system.n_ao, system.weights.shape[0], system.cderi.shape[0]
    for name, new, old in (("nao", nao_pad, nao), ("ngrid", ngrid_pad, ngrid), ("naux", naux_pad, naux)):
        if new < old:
            raise ValueError(f"cannot pad {name} from {old} down to {new}")
    da, dg = nao_pad - nao, ngrid_pad - ngrid
    pad_diag = jnp.concatenate([jnp.zeros(nao), jnp.ones(da)])
    gga = system.ao_grad.shape[1] > 0
    return dataclasses.replace(
        system,
        overlap=_pad_axes(system.overlap, {0: da, 1: da}) + jnp.diag(pad_diag),
        hcore=_pad_axes(system.hcore, {0: da, 1: da}) + PAD_LEVEL_HARTREE * jnp.diag(pad_diag),
        ao=_pad_axes(system.ao, {0: dg, 1: da}),
        ao_grad=_pad_axes(system.ao_grad, {1: dg if gga else 0, 2: da}),
        weights=_pad_axes(system.weights, {0: dg}),
        cderi=_pad_axes(system.cderi, {0: naux_pad - naux, 1: da, 2: da}),
        ao_mask=_pad_axes(system.ao_mask, {0: da}),
        ao_atom=_pad_axes(system.ao_atom, {0: da}, -1),
        ao_l=_pad_axes(system.ao_l, {0: da}, -1),
        ao_m=_pad_axes(system.ao_m, {0: da}),
    )

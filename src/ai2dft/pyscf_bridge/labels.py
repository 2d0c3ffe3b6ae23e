"""Training labels from PySCF: converged Kohn-Sham matrices of molecules and crystals, Hessians.

Everything is returned in PySCF's AO order and atomic units (Hartree, Bohr); conversion to the
internal order and to the on-disk format happens in ``elct_jax.data``. Structures are duck-typed:
any object with ``symbols``, ``positions_ang`` [n_atoms, 3], ``lattice_ang`` ([3, 3] rows = lattice
vectors, or None) and ``pbc`` works (e.g. ``elct_jax.geometry.structure.Structure``).

Crystals: the SCF runs on ``kmesh`` (GTH pseudopotentials, multigrid numerics). The real-space blocks
H_ij(R) = <i, 0|F|j, R> are then obtained from the Fock matrix of the converged density evaluated
non-self-consistently on a second, denser k-mesh whose Born-von Karman supercell covers the whole
interaction range (chosen from direct real-space overlaps), so that the inverse Bloch transform is not
aliased. The transformed S(R) is checked against ``gto.intor_cross`` overlaps with translated copies
of the cell (``ai2dft.pyscf_bridge.realspace``). Convention: H(k) = sum_R exp(i k.R) H(R) (PySCF's and
DeepH's). H, S and D share one set of blocks (the DeepH formats need that): those with non-negligible overlap.
Spin-polarized (KUKS) crystal labels: ``spin_labels.spin_crystal_labels``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from pyscf import dft, gto
from pyscf.pbc import dft as pbc_dft
from pyscf.pbc import gto as pbc_gto
from pyscf.pbc.scf.smearing import smearing_ as pbc_smearing_
from pyscf.scf.smearing import smearing_

import ai2dft.smearing
from ai2dft.pyscf_bridge.realspace import Block, RealSpaceMesh, blocks_from_kmesh, real_space_mesh
from ai2dft.pyscf_bridge.spin_molecule import check_spin
from ai2dft.xc import canonical_xc, exact_exchange_fraction

_DEFAULT_PSEUDO = {"lda": "gth-pade", "lda,vwn": "gth-pade", "pbe": "gth-pbe", "pbe,pbe": "gth-pbe"}
_SMEARING_METHODS = {"fermi": "fermi", "gaussian": "gaussian", "gauss": "gaussian"}  # alias -> canonical


@dataclass(frozen=True)
class DFTSettings:
    """Level of theory of the labels.

    basis, xc        PySCF basis name and functional (LDA/GGA; global hybrids pbe0, b3lyp for molecules only)
    grid_level       molecular integration grid (>= 5 for sub-0.1 meV labels, see DESIGN.md)
    conv_tol         SCF energy convergence, Hartree
    density_fit      density-fitted Coulomb for molecules
    spin             None: restricted closed shell (RKS); 2S = N_alpha - N_beta (multiplicity 2S + 1, held fixed, also
                     with smearing) for collinear UKS labels of a molecule (``spin_labels.spin_molecule_labels``);
                     crystals: 2S per cell, KUKS labels (``spin_labels.spin_crystal_labels``), fixed or free moment
    smearing         None or (method, width in Hartree), method "fermi" | "gaussian"
    pseudo           GTH pseudopotential for crystals; None picks gth-pade (LDA) / gth-pbe (PBE)
    kmesh            SCF k-mesh of crystals (1 along non-periodic directions)
    ke_cutoff_Ha     plane-wave cutoff of the crystal FFT/multigrid mesh; None = PySCF's default
    realspace_kmesh  k-mesh on which H(k), S(k) are transformed to H(R), S(R); None = the smallest
                     mesh covering every block with max |S_ij(R)| > overlap_tol
    overlap_tol      a crystal block (R, i, j) is kept when max |S_ij(R)| exceeds this
    alias_tol        allowed max |S(R) from the k-mesh - direct real-space S(R)|
    on_alias         "error" or "warn" when alias_tol is exceeded
    """

    basis: str = "def2-svp"
    xc: str = "pbe"
    grid_level: int = 5
    conv_tol: float = 1e-10
    max_cycle: int = 100
    density_fit: bool = True
    charge: int = 0
    spin: int | None = None
    smearing: tuple[str, float] | None = None
    pseudo: str | None = None
    kmesh: tuple[int, int, int] = (4, 4, 1)
    ke_cutoff_Ha: float | None = None
    realspace_kmesh: tuple[int, int, int] | None = None
    overlap_tol: float = 1e-10
    alias_tol: float = 1e-6
    on_alias: str = "error"

    def __post_init__(self):
        if self.smearing is not None:
            method, width = self.smearing
            if method not in _SMEARING_METHODS or not width > 0:
                raise ValueError(f"smearing must be None or (one of {sorted(_SMEARING_METHODS)}, width > 0), "
                                 f"got {self.smearing!r}")
            object.__setattr__(self, "smearing", (_SMEARING_METHODS[method], float(width)))
        for name in ("kmesh", "realspace_kmesh"):
            mesh = getattr(self, name)
            if mesh is not None:
                mesh = tuple(int(n) for n in mesh)
                if len(mesh) != 3 or min(mesh) < 1:
                    raise ValueError(f"{name} must be three positive integers, got {mesh!r}")
                object.__setattr__(self, name, mesh)
        if self.spin is not None and (isinstance(self.spin, bool) or int(self.spin) != self.spin or self.spin < 0):
            raise ValueError(f"spin must be None (closed shell) or 2S = N_alpha - N_beta >= 0, got {self.spin!r}")
        if self.on_alias not in ("error", "warn"):
            raise ValueError(f"on_alias must be 'error' or 'warn', got {self.on_alias!r}")
        try:
            canonical_xc(self.xc)
        except ValueError as err:
            raise ValueError(f"xc={self.xc!r}: labels must use a functional the DFT layer (ai2dft) evaluates, or "
                             f"label-free training and energy errors would compare another theory; {err}") from None
        if self.grid_level < 0 or self.max_cycle < 1 or not self.conv_tol > 0:
            raise ValueError("grid_level must be >= 0, max_cycle >= 1 and conv_tol > 0")

    @property
    def pseudopotential(self) -> str:
        if self.pseudo is not None:
            return self.pseudo
        if self.xc.lower() not in _DEFAULT_PSEUDO:
            raise ValueError(f"no default GTH pseudopotential for xc={self.xc!r}; set DFTSettings.pseudo")
        return _DEFAULT_PSEUDO[self.xc.lower()]


@dataclass(frozen=True)
class MoleculeLabels:
    """Converged RKS matrices of a molecule, PySCF AO order, Hartree.

    H [n_ao, n_ao] Fock matrix rebuilt from the final density; S overlap; D spin-summed density
    matrix (the one H was built from); fermi_energy midway between HOMO and LUMO of (H, S);
    H0 the zeroth-step Fock matrix F[D0] of PySCF's MINAO initial density (:func:`zeroth_step_fock`).
    """

    H: np.ndarray
    H0: np.ndarray
    S: np.ndarray
    D: np.ndarray
    e_tot: float
    converged: bool
    n_electrons: int
    fermi_energy: float


@dataclass(frozen=True)
class CrystalLabels:
    """Converged KRKS real-space blocks of a crystal, PySCF AO order within each atom, Hartree.

    H, S, D        blocks on the keys with max |S_ij(R)| > overlap_tol. H is the Fock matrix of the
                   converged SCF density; H0 the zeroth-step F[D0] of PySCF's MINAO initial density
                   (:func:`crystal_zeroth_step`); D is the spin-summed density matrix that this H gives on
                   ``realspace_kmesh`` (occupations as in :func:`occupations`). D equals the SCF
                   density matrix only as far as the two k-meshes give the same density (insulators);
                   blocks with negligible overlap carry no density and are not stored.
    n_electrons    valence electrons per cell
    fermi_energy   chemical potential of D on ``realspace_kmesh``, Hartree
    max_overlap_deviation  max |S(R) transformed - S(R) direct| over the kept blocks
    """

    H: Block
    H0: Block
    S: Block
    D: Block
    e_tot: float
    converged: bool
    n_electrons: int
    fermi_energy: float
    kmesh: tuple[int, int, int]
    realspace_kmesh: tuple[int, int, int]
    max_overlap_deviation: float


def _atoms(structure) -> list:
    return [[s, tuple(p)] for s, p in zip(structure.symbols, np.asarray(structure.positions_ang))]


def build_molecule(structure, settings: DFTSettings) -> gto.Mole:
    """A PySCF molecule (Angstrom input): closed shell (``settings.spin`` None; odd electron counts are refused)
    or with 2S = ``settings.spin`` (a spin impossible for the electron count is refused)."""
    if structure.lattice_ang is not None and any(structure.pbc):
        raise ValueError("build_molecule got a periodic structure; use crystal_labels")
    mol = gto.M(atom=_atoms(structure), basis=settings.basis, charge=settings.charge, spin=None,
                unit="Angstrom", verbose=0)
    if settings.spin is not None:
        check_spin(mol.nelectron, settings.spin, settings.charge)
        mol.spin = settings.spin  # PySCF derives (N_alpha, N_beta) from it on use
    elif mol.nelectron % 2:
        raise ValueError(f"{mol.nelectron} electrons (charge {settings.charge}): RKS labels need an even count; an "
                         "odd count needs a spin setting, DFTSettings.spin = 2S = N_alpha - N_beta (UKS labels)")
    return mol


def _run_rks(structure, settings: DFTSettings):
    if settings.spin is not None:
        raise ValueError(f"DFTSettings.spin = {settings.spin}: UKS labels come from spin_labels.spin_molecule_labels")
    mf = kohn_sham(structure, settings)
    mf.kernel()
    return mf


def kohn_sham(structure, settings: DFTSettings):
    """The PySCF Kohn-Sham object of the label settings, not run: RKS, or UKS when ``settings.spin`` is set
    (smearing then at fixed N_alpha, N_beta)."""
    method = dft.RKS if settings.spin is None else dft.UKS
    mf = method(build_molecule(structure, settings), xc=settings.xc)
    if settings.density_fit:
        mf = mf.density_fit()
    if settings.smearing is not None:
        mf = smearing_(mf, sigma=settings.smearing[1], method=settings.smearing[0], fix_spin=settings.spin is not None)
    mf.grids.level = settings.grid_level
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycle
    return mf


def zeroth_step_fock(structure, settings: DFTSettings, mf=None) -> np.ndarray:
    """[n_ao, n_ao] H0 = F[D0], PySCF AO order, Hartree: the Kohn-Sham matrix of the MINAO guess density
    D0 (a superposition of spherical atomic densities, PySCF's default SCF start) at the label settings:
    the NextHAM "zeroth-step" Hamiltonian. Costs one Fock build, no SCF. ``mf``: a Kohn-Sham object of these
    settings to reuse (its grids and DF tensor). With ``settings.spin``: [2, n_ao, n_ao] (alpha, beta)."""
    mf = kohn_sham(structure, settings) if mf is None else mf
    return np.asarray(mf.get_fock(dm=mf.get_init_guess(key="minao")))


def molecule_labels(structure, settings: DFTSettings) -> MoleculeLabels:
    """Run RKS and return F(D_final), S, D_final, H0. A non-converged SCF is returned with converged=False."""
    mf = _run_rks(structure, settings)
    dm = mf.make_rdm1()
    fock = mf.get_fock(dm=dm)
    S = mf.get_ovlp()
    eps = scipy.linalg.eigh(fock, S, eigvals_only=True)
    n_el = mf.mol.nelectron
    return MoleculeLabels(np.asarray(fock), zeroth_step_fock(structure, settings, mf), np.asarray(S), np.asarray(dm),
                          float(mf.e_tot),
                          bool(mf.converged), n_el, occupations(eps, n_el, settings.smearing)[1])


def molecule_hessian(structure, settings: DFTSettings) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian Hessian [3 n_atoms, 3 n_atoms] (Hartree/Bohr^2, atom-major) and masses [n_atoms] (amu)."""
    mf = _run_rks(structure, settings)
    if not mf.converged:
        raise RuntimeError("the SCF for the Hessian did not converge; raise max_cycle or check the geometry")
    h = mf.Hessian().kernel()  # [n_atoms, n_atoms, 3, 3]
    n = h.shape[0]
    return h.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n), mf.mol.atom_mass_list(isotope_avg=True)


def occupations(eps: np.ndarray, n_electrons: int, smearing) -> tuple[np.ndarray, float]:
    """Spin-summed occupations [n_k, n_mo] (0..2) of levels eps [n_k, n_mo] (Hartree, equal k weights,
    n_electrons per cell) and the chemical potential, by ``ai2dft.smearing.occupations``. Without smearing
    the lowest levels are filled and levels degenerate (1e-9 Ha) at the Fermi level share its electrons
    equally; mu is then that level if partly filled, else mid-gap. With smearing mu solves the electron count."""
    eps = np.atleast_2d(eps)
    n_pairs, odd = divmod(n_electrons * len(eps), 2)  # doubly occupied levels over the whole mesh
    if smearing is None and (odd or n_pairs > eps.size):
        raise ValueError(f"cannot place {n_electrons} electrons x {len(eps)} k-points in {eps.size} levels")
    kind, width = ("fermi", 0.0) if smearing is None else smearing
    with jax.enable_x64(True):  # numpy in, numpy out: float64 whatever the process-wide JAX setting
        f, mu = ai2dft.smearing.occupations(jnp.asarray(eps), jnp.full(eps.shape, 2.0 / len(eps)), n_electrons,
                                            width, kind)
        return 2.0 * np.asarray(f), float(mu)


def build_cell(structure, settings: DFTSettings) -> pbc_gto.Cell:
    """A PySCF cell with GTH pseudopotentials; non-periodic directions are treated as vacuum."""
    if structure.lattice_ang is None:
        raise ValueError("crystal labels need a lattice; got a molecule (lattice_ang is None)")
    for d, periodic in enumerate(structure.pbc):
        if not periodic and settings.kmesh[d] != 1:
            raise ValueError(f"direction {d} is not periodic but kmesh={settings.kmesh} samples it")
    cell = pbc_gto.Cell()
    cell.build(a=np.asarray(structure.lattice_ang), atom=_atoms(structure), unit="Angstrom",
               basis=settings.basis, pseudo=settings.pseudopotential, charge=settings.charge, spin=settings.spin,
               ke_cutoff=settings.ke_cutoff_Ha, verbose=0, dimension=3)
    nk = int(np.prod(settings.kmesh))  # PySCF's KUKS fills the Born-von Karman supercell: whole N_s * nk
    if settings.spin is not None and (not 0 <= settings.spin <= cell.nelectron or (cell.nelectron + settings.spin) * nk % 2):
        raise ValueError(f"spin 2S = {settings.spin} per cell is impossible for {cell.nelectron} valence electrons per "
                         f"cell (charge {settings.charge}) on the {settings.kmesh} k-mesh: 0 <= 2S <= N, and N_alpha = "
                         f"(N + 2S) / 2 per cell times the {nk} k-points must be a whole number")
    if settings.spin is None and cell.nelectron % 2:
        raise ValueError(f"{cell.nelectron} valence electrons per cell (charge {settings.charge}): RKS crystal labels "
                         "need an even count; an odd count needs a spin setting, DFTSettings.spin = 2S = N_alpha - "
                         "N_beta per cell (KUKS labels: spin_labels.spin_crystal_labels)")
    return cell


def _krks(cell, settings: DFTSettings):
    """The KRKS object (multigrid, smearing) of the label settings on ``settings.kmesh``; no SCF run."""
    kpts = cell.make_kpts(settings.kmesh)
    mf = pbc_dft.KRKS(cell, kpts, xc=settings.xc).multigrid_numint()
    if settings.smearing is not None:
        mf = pbc_smearing_(mf, sigma=settings.smearing[1], method=settings.smearing[0])
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycle
    return mf


def _zeroth_step_blocks(mf, rs: RealSpaceMesh, hcore_rs: np.ndarray, settings: DFTSettings) -> Block:
    """H0(R) = F[D0] blocks on ``rs``'s keys: hcore plus the potential of the MINAO density D0 (on the SCF
    k-mesh), evaluated on the real-space mesh's k-points as the labels' H."""
    dm0 = mf.get_init_guess(mf.cell, key="minao")
    fock0 = hcore_rs + mf.get_veff(mf.cell, dm0, kpts=mf.kpts, kpts_band=rs.kpts)
    return blocks_from_kmesh(mf.cell, np.asarray(fock0), rs.mesh, rs.keys, settings.alias_tol)


def crystal_zeroth_step(structure, settings: DFTSettings) -> Block:
    """Real-space blocks (PySCF AO order, Hartree) of the zeroth-step Hamiltonian H0 = F[D0] of a crystal: the
    KRKS Fock matrix of PySCF's MINAO initial density at the label settings, on the same kept blocks and
    real-space k-mesh as :func:`crystal_labels`' H. One Fock build, no SCF; the crystal analogue of
    :func:`zeroth_step_fock`."""
    cell = build_cell(structure, settings)
    rs = real_space_mesh(cell, structure.pbc, settings)
    mf = _krks(cell, settings)
    return _zeroth_step_blocks(mf, rs, np.asarray(mf.get_hcore(cell, rs.kpts)), settings)


def crystal_labels(structure, settings: DFTSettings) -> CrystalLabels:
    """Run KRKS on ``settings.kmesh``; return unaliased real-space H(R), S(R) and D(R) (see CrystalLabels)."""
    if exact_exchange_fraction(settings.xc):
        raise ValueError(f"xc={settings.xc!r} is a hybrid functional: periodic exact exchange is not implemented "
                         f"in the DFT layer (ai2dft), so crystal labels need an LDA or GGA")
    if settings.spin is not None:
        raise ValueError(f"DFTSettings.spin = {settings.spin}: KUKS labels come from spin_labels.spin_crystal_labels")
    cell = build_cell(structure, settings)
    rs = real_space_mesh(cell, structure.pbc, settings)  # before the SCF: fail fast on aliasing
    mf = _krks(cell, settings)
    mf.kernel()
    hcore_rs = np.asarray(mf.get_hcore(cell, rs.kpts))
    fock_rs = hcore_rs + np.asarray(mf.get_veff(cell, mf.make_rdm1(), kpts=mf.kpts, kpts_band=rs.kpts))
    H = blocks_from_kmesh(cell, fock_rs, rs.mesh, rs.keys, settings.alias_tol)
    D_rs, mu = _density_on_mesh(fock_rs, rs.S_k, cell.nelectron, settings.smearing)
    D = blocks_from_kmesh(cell, D_rs, rs.mesh, rs.keys, settings.alias_tol)
    return CrystalLabels(H, _zeroth_step_blocks(mf, rs, hcore_rs, settings), rs.S, D, float(mf.e_tot),
                         bool(mf.converged), int(cell.nelectron), mu, settings.kmesh, rs.mesh, rs.max_overlap_deviation)


def _density_on_mesh(fock_k: np.ndarray, S_k: np.ndarray, n_electrons: int, smearing):
    """Spin-summed D(k) = C f C^H [n_k, n_ao, n_ao] of the generalized eigenproblems (F(k), S(k)) with
    the occupations of :func:`occupations`, and the chemical potential."""
    eps, coeffs = zip(*(scipy.linalg.eigh(f, s) for f, s in zip(fock_k, S_k)))
    occ, mu = occupations(np.array(eps), n_electrons, smearing)
    return np.einsum("kim,km,kjm->kij", np.array(coeffs), occ, np.array(coeffs).conj()), mu

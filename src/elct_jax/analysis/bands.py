"""Band structures, Fermi level and DOS from real-space H(R), S(R) of any size.

Two solvers for the generalized problem H(k) c = e S(k) c:
  * dense: ``scipy.linalg.eigh`` of the assembled H(k), S(k) (all bands; small cells);
  * shift-invert: one sparse LU of H(k) - sigma S(k) (SuperLU, symmetric ordering, diagonal pivots)
    serves ``eigsh(H, M=S, sigma=sigma, mode="normal")`` for the ``nbands`` eigenvalues nearest sigma
    AND, by Sylvester's law of inertia (H - sigma S = P^T L D L^H P, D = diag U), the number of
    eigenvalues below sigma. That count gives every computed eigenvalue its absolute band index, so
    bands are connected by index in plots (no sawtooth where bands enter or leave the window) and the
    Fermi level of a huge cell follows from the electron count without a full diagonalization.
Eigenvalues are sorted at every k. Energies in Hartree; plots and files also give eV.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from ai2dft.units import HARTREE_TO_EV
from elct_jax.hamiltonian.sparse import BlochMatrix, SparseBlocks

DENSE_MAX_AO = 3000  # "auto" solves denser problems than this with shift-invert


@dataclass(frozen=True)
class BandPath:
    """k-points along a path. kpts_frac [n_k, 3] (reciprocal-lattice units), x [n_k] path length
    (1/Angstrom, ASE's axis), ticks [n_special] positions of the labels ``labels``."""

    kpts_frac: np.ndarray
    x: np.ndarray
    ticks: np.ndarray
    labels: tuple[str, ...]


# hexagonal 2D cell with a1, a2 at 60 degrees (ASE's points for such a cell)
HEXAGONAL_POINTS = {"G": (0.0, 0.0, 0.0), "M": (0.0, -0.5, 0.0), "K": (1 / 3, -1 / 3, 0.0)}


def band_path(lattice_ang: np.ndarray, pbc=(True, True, True), path: str | None = None, npoints: int = 100,
              special_points: dict | None = None) -> BandPath:
    """The standard path of the lattice (ASE's ``cell.bandpath``; 2D for pbc with one False) or a
    user path of special-point letters, e.g. "GMKG". ``special_points`` {letter: fractional k} names
    the points yourself, e.g. HEXAGONAL_POINTS for a strained hexagonal cell that ASE classifies
    as oblique."""
    from ase.cell import Cell

    if lattice_ang is None:
        raise ValueError("a band structure needs a lattice; got a molecule")
    cell = Cell(np.asarray(lattice_ang))
    if path is not None and special_points is None:
        known = cell.bandpath(npoints=0, pbc=pbc).special_points
        unknown = sorted({c for c in path if c.isalpha()} - set(known))
        if unknown:
            raise ValueError(f"special point(s) {unknown} are not defined for this lattice "
                             f"({cell.get_bravais_lattice(pbc=pbc).name}); known: {sorted(known)}; "
                             f"or give special_points")
    bp = cell.bandpath(path, npoints=npoints, pbc=pbc, special_points=special_points)
    kpts = np.asarray(bp.kpts)
    step = np.linalg.norm(np.diff(kpts, axis=0) @ (2 * np.pi * np.linalg.inv(cell.complete()).T), axis=1)
    x = np.concatenate([[0.0], np.cumsum(step)])  # path length, 1/Angstrom (ASE's axis collapses for few points)
    ticks, labels, start = [], [], 0
    for name in (c for c in bp.path if c.isalpha() or c.isdigit()):
        if name.isdigit():  # ASE names like "H1"
            labels[-1] += name
            continue
        hit = np.flatnonzero(np.all(np.isclose(kpts[start:], bp.special_points[name]), axis=1))
        if len(hit):
            start += int(hit[0])
            ticks.append(x[start])
            labels.append(name)
    return BandPath(kpts, x, np.asarray(ticks), tuple(labels))


@dataclass(frozen=True)
class Bands:
    """energies [n_k, n_bands] Hartree, sorted per k; band_index [n_k, n_bands] absolute band number
    (0 = lowest band) of each energy, -1 where unknown; fermi Hartree or None."""

    kpts_frac: np.ndarray
    energies: np.ndarray
    band_index: np.ndarray
    fermi: float | None = None


def dense_eigenvalues(hk: scipy.sparse.spmatrix, sk: scipy.sparse.spmatrix) -> np.ndarray:
    """All eigenvalues [n_ao] of the generalized problem (dense LAPACK), ascending."""
    return scipy.linalg.eigh(hk.toarray(), sk.toarray(), eigvals_only=True)


@dataclass
class ShiftInvert:
    """One factorization of H - sigma S: eigenvalues nearest sigma and the count below sigma."""

    hk: scipy.sparse.spmatrix
    sk: scipy.sparse.spmatrix
    sigma: float

    def __post_init__(self):
        for attempt in range(3):  # an exactly zero pivot forces a row swap: nudge sigma and refactor
            a = (self.hk - self.sigma * self.sk).tocsc()
            self.lu = scipy.sparse.linalg.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                               options=dict(SymmetricMode=True))
            if np.array_equal(self.lu.perm_r, self.lu.perm_c):
                self.n_below = int(np.sum(self.lu.U.diagonal().real < 0))
                return
            self.sigma += 1e-7 * max(abs(self.sigma), 1.0) * 10**attempt
        self.n_below = None

    def nearest(self, nbands: int, tol: float = 1e-12) -> np.ndarray:
        """The ``nbands`` eigenvalues nearest sigma, ascending. ``tol``: ARPACK's relative accuracy
        of 1 / (e - sigma), so |error of e| <~ tol * (e - sigma)**2 * max|1 / (e' - sigma)|."""
        n = self.hk.shape[0]
        if nbands >= n - 1:
            raise ValueError(f"nbands={nbands} needs fewer bands than the {n} AOs less one; use the dense solver")
        op = scipy.sparse.linalg.LinearOperator(self.hk.shape, matvec=self.lu.solve, dtype=self.lu.U.dtype)
        vals = scipy.sparse.linalg.eigsh(self.hk, k=nbands, M=self.sk, sigma=self.sigma, mode="normal",
                                         OPinv=op, return_eigenvectors=False, tol=tol)
        return np.sort(np.real(vals))

    def indexed(self, nbands: int) -> tuple[np.ndarray, np.ndarray]:
        """(eigenvalues, absolute band indices) of the ``nbands`` nearest sigma; indices -1 when the
        factorization pivoted off the diagonal (no inertia count)."""
        e = self.nearest(nbands)
        if self.n_below is None:
            return e, np.full(nbands, -1)
        below = int(np.sum(e < self.sigma))
        return e, self.n_below - below + np.arange(nbands)


class BandSolver:
    """H(k), S(k) of one structure and the eigen-solvers on them."""

    def __init__(self, h: SparseBlocks, s: SparseBlocks):
        if not np.array_equal(h.n_orb, s.n_orb):
            raise ValueError("H and S have different orbital counts per atom")
        self.h, self.s = BlochMatrix(h), BlochMatrix(s)
        self.n_ao = h.n_ao

    def matrices(self, k_frac) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix]:
        """H(k), S(k) as CSR; real at k = 0, complex Hermitian elsewhere."""
        hk, sk = self.h.bloch(k_frac), self.s.bloch(k_frac)
        if not np.any(np.asarray(k_frac)) and not np.iscomplexobj(self.h.m.onsite):  # spin-orbit H: complex at Gamma
            hk, sk = hk.real.tocsr(), sk.real.tocsr()
        return hk, sk

    def choose(self, solver: str) -> str:
        if solver not in ("auto", "dense", "sparse"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'sparse', got {solver!r}")
        return solver if solver != "auto" else ("dense" if self.n_ao <= DENSE_MAX_AO else "sparse")

    def bands(self, kpts_frac, nbands: int | None, sigma: float | None, solver: str = "auto") -> Bands:
        """Eigenvalues at each k. Dense: all bands (nbands None) or the ``nbands`` nearest sigma;
        sparse: the ``nbands`` nearest sigma (required) with their absolute band indices."""
        solver = self.choose(solver)
        if solver == "sparse" and (nbands is None or sigma is None):
            raise ValueError("the shift-invert solver needs nbands and sigma (an energy, e.g. the Fermi level)")
        energies, index = [], []
        for k in np.atleast_2d(kpts_frac):
            hk, sk = self.matrices(k)
            if solver == "dense":
                e = dense_eigenvalues(hk, sk)
                idx = np.arange(len(e)) if nbands is None else _nearest_window(e, nbands, sigma)
                energies.append(e[idx])
                index.append(idx)
            else:
                e, idx = ShiftInvert(hk, sk, sigma).indexed(nbands)
                energies.append(e)
                index.append(idx)
        return Bands(np.atleast_2d(kpts_frac), np.array(energies), np.array(index), sigma)


def _nearest_window(e: np.ndarray, nbands: int, sigma: float | None) -> np.ndarray:
    """Indices of the ``nbands`` eigenvalues of sorted e nearest sigma (contiguous, ascending)."""
    if nbands > len(e):
        raise ValueError(f"nbands={nbands} exceeds the {len(e)} bands")
    if sigma is None:
        raise ValueError("nbands without sigma: give the energy the bands should be nearest to")
    idx = np.sort(np.argsort(np.abs(e - sigma), kind="stable")[:nbands])
    return idx


def fermi_level(solver: BandSolver | Sequence[BandSolver], n_electrons: int, kpts_frac=((0.0, 0.0, 0.0),),
                method: str = "auto", guess: float | None = None, nbands: int = 24, max_iter: int = 8,
                electrons_per_level: int = 2) -> float:
    """Zero-temperature Fermi level (Hartree) of ``n_electrons`` per cell (equal k weights): midway between the
    highest occupied and lowest empty level over ``kpts_frac`` (the level itself when they are degenerate), as
    ``ai2dft.pyscf_bridge.labels.occupations``. Levels hold ``electrons_per_level``: 2 for spinless H (spin-degenerate),
    1 for spinor (spin-orbit) H and for the solvers of the two spins of a collinear magnet (a sequence: one Fermi
    level shared by all their levels).

    dense: all eigenvalues. sparse: shift-invert windows of ``nbands`` levels with inertia counts,
    moved until they hold the occupation edge (1 to 3 factorizations per k typically); ``guess``
    is the first shift (default: from the on-site energies).
    """
    solvers = [solver] if isinstance(solver, BandSolver) else list(solver)
    kpts = np.atleast_2d(np.asarray(kpts_frac, dtype=np.float64))
    if n_electrons % electrons_per_level:
        raise ValueError(f"{n_electrons} electrons: spin-degenerate levels need an even count")
    per_k = n_electrons // electrons_per_level  # occupied levels per k, over all solvers
    target = per_k * len(kpts)
    if target < 1 or per_k >= sum(s.n_ao for s in solvers):
        raise ValueError(f"cannot place {n_electrons} electrons in {sum(s.n_ao for s in solvers)} levels per k "
                         f"holding {electrons_per_level} each")
    if solvers[0].choose(method) == "dense":
        levels = np.sort(np.concatenate([dense_eigenvalues(*s.matrices(k)) for s in solvers for k in kpts]))
        return float(0.5 * (levels[target - 1] + levels[target]))
    sigma = _onsite_guess(solvers[0], max(per_k // len(solvers), 1)) if guess is None else float(guess)
    bracket = [-np.inf, np.inf]  # shifts known to lie below / above the occupation edge
    for _ in range(max_iter):
        windows = [ShiftInvert(*s.matrices(k), sigma) for s in solvers for k in kpts]
        if any(w.n_below is None for w in windows):
            raise RuntimeError("the LDL^T factorization pivoted off the diagonal: no inertia count; "
                               "give the Fermi level or use the dense solver")
        levels = [w.nearest(nbands) for w in windows]
        found = _edge_in_windows(windows, levels, target)
        if found is not None:
            return found
        sigma = _next_shift(windows, levels, target, bracket)
    raise RuntimeError(f"the Fermi level was not found after {max_iter} shift-invert windows; "
                       f"give a better guess or more nbands")


def _onsite_guess(solver: BandSolver, n_occ: int) -> float:
    """Between the n_occ-th and next lowest diagonal H_aa / S_aa: a crude, cheap first shift."""
    hk, sk = solver.matrices(np.zeros(3))
    ratio = np.sort(hk.diagonal().real / sk.diagonal().real)
    n = min(n_occ, len(ratio) - 1)
    return float(0.5 * (ratio[n - 1] + ratio[n]))


def _edge_in_windows(windows, levels, target: int) -> float | None:
    """The Fermi level if the windows (consecutive levels nearest each shift, with inertia counts)
    pin the ``target``-th level and the next one over all k, else None."""
    below = [e[e < w.sigma] for w, e in zip(windows, levels)]
    above = [e[e >= w.sigma] for w, e in zip(windows, levels)]
    missing = target - sum(w.n_below for w in windows)
    if missing == 0 and all(len(b) for b in below) and all(len(a) for a in above):
        homo, lumo = max(b[-1] for b in below), min(a[0] for a in above)
        # exact when no unseen level of another k lies between: each k's unseen levels are farther out
        if homo >= max(b[0] for b in below) and lumo <= min(a[-1] for a in above):
            return float(0.5 * (homo + lumo))
    lo, hi = max(e[0] for e in levels), min(e[-1] for e in levels)
    if lo > hi:
        return None
    # inside [lo, hi] every k's count is exact: N_k(x) = n_below_k + #{sigma_k <= e < x} - #{x <= e < sigma_k}
    n_lo = sum(w.n_below + int(np.sum((e >= w.sigma) & (e < lo))) - int(np.sum((e >= lo) & (e < w.sigma)))
               for w, e in zip(windows, levels))
    merged = np.sort(np.concatenate([e[(e >= lo) & (e <= hi)] for e in levels]))
    n = target - n_lo  # the highest occupied level is merged[n - 1]
    return float(0.5 * (merged[n - 1] + merged[n])) if 1 <= n < len(merged) else None


def _next_shift(windows, levels, target: int, bracket: list) -> float:
    """Move the shift across the missing levels (local level spacing of the windows), inside the
    bracket of shifts known to lie below and above the edge (bisection when the step leaves it)."""
    sigma = windows[0].sigma
    missing = target - sum(w.n_below for w in windows)
    if missing == 0:  # sigma is in the gap at the edge, but a window saw one side only: recentre
        below = [e[e < w.sigma] for w, e in zip(windows, levels)]
        above = [e[e >= w.sigma] for w, e in zip(windows, levels)]
        if not all(len(a) for a in above):
            return sigma + max(sigma - min(e[0] for e in levels), 1e-6)
        if not all(len(b) for b in below):
            return sigma - max(max(e[-1] for e in levels) - sigma, 1e-6)
        return 0.5 * (max(b[-1] for b in below) + min(a[0] for a in above))
    if missing > 0:
        bracket[0] = max(bracket[0], sigma)
    else:
        bracket[1] = min(bracket[1], sigma)
    width = max(max(e[-1] - e[0] for e in levels), 1e-6)
    spacing = width / max(min(len(e) for e in levels) - 1, 1)  # per k
    step = float(np.clip(abs(missing) * spacing / len(levels), 0.5 * width, 4.0 * width))
    nxt = sigma + (step if missing > 0 else -step)
    if np.isfinite(bracket[0]) and np.isfinite(bracket[1]) and not bracket[0] < nxt < bracket[1]:
        nxt = 0.5 * (bracket[0] + bracket[1])
    return nxt


def dos(energies: np.ndarray, grid: np.ndarray, width: float, weights: np.ndarray | None = None,
        degeneracy: int = 2) -> np.ndarray:
    """Gaussian-broadened density of states [n_grid] (states per Hartree per cell) of energies [n_k, n_bands]
    (Hartree) with k weights [n_k] (default equal, summing to 1); each level counts ``degeneracy`` states: 2 for
    spinless H (spin included), 1 for one spin of a collinear magnet (spin-resolved DOS) or spinor bands."""
    energies = np.atleast_2d(energies)
    weights = np.full(len(energies), 1.0 / len(energies)) if weights is None else np.asarray(weights)
    x = (np.asarray(grid)[:, None, None] - energies[None]) / width
    g = np.exp(-0.5 * x * x) / (width * np.sqrt(2 * np.pi))
    return float(degeneracy) * np.einsum("gkn,k->g", g, weights)


def plot_bands(path: BandPath, bands: Bands, out_png, title: str = "", window_ev: float | None = None,
               reference: Bands | None = None, names: tuple[str, str] | None = None) -> None:
    """Bands (eV relative to the Fermi level) along ``path``; lines join equal absolute band indices
    (sorted columns where indices are unknown). ``reference`` (e.g. the spin-down bands) is drawn dashed on top;
    ``names`` label the two in a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 4.5), dpi=150)
    shift = 0.0 if bands.fermi is None else bands.fermi
    for b, style in ((bands, dict(color="C0", lw=1.2)), (reference, dict(color="C3", lw=0.9, ls="--"))):
        if b is None:
            continue
        marker = dict(marker="o", ms=2.5) if len(path.x) < 20 else {}  # few k-points: show them
        for n, line in enumerate(_band_lines(b)):
            label = names[0 if b is bands else 1] if names is not None and n == 0 else None
            ax.plot(path.x, (line - shift) * HARTREE_TO_EV, **style, **marker, label=label)
    for t in path.ticks:
        ax.axvline(t, color="0.7", lw=0.6)
    ax.axhline(0.0, color="0.4", lw=0.6, ls=":")
    ax.set_xticks(path.ticks, [("Γ" if lab == "G" else lab) for lab in path.labels])
    ax.set_xlim(path.x[0], path.x[-1])
    ax.set_ylabel("E - E_F (eV)" if bands.fermi is not None else "E (eV)")
    if window_ev is not None:
        ax.set_ylim(-window_ev, window_ev)
    ax.set_title(title, fontsize=9)
    if names is not None:
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def _band_lines(bands: Bands) -> list[np.ndarray]:
    """One [n_k] array per band (NaN where it is not in the window)."""
    idx = bands.band_index
    if np.any(idx < 0):
        return list(bands.energies.T)
    lines = []
    for n in np.unique(idx):
        line = np.full(len(idx), np.nan)
        k, col = np.nonzero(idx == n)
        line[k] = bands.energies[k, col]
        lines.append(line)
    return lines


def save_bands(out_npz, path: BandPath, bands: Bands) -> None:
    """npz (no pickle): kpts_frac, x, ticks, labels, energies_hartree, energies_ev, band_index, fermi_hartree."""
    np.savez(out_npz, kpts_frac=path.kpts_frac, x=path.x, ticks=path.ticks, labels=np.array(path.labels),
             energies_hartree=bands.energies, energies_ev=bands.energies * HARTREE_TO_EV,
             band_index=bands.band_index, fermi_hartree=np.nan if bands.fermi is None else bands.fermi)

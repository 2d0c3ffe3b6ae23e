"""Accuracy of predicted Hamiltonians against DFT references: block MAE and energy errors.

H is fixed by the Kohn-Sham equations only up to a constant shift c*S when it is learned from the
free energy alone (D(H + cS) = D(H)); ``aligned`` errors remove the least-squares shift first.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass

import numpy as np

from ai2dft import density_matrix, energy
from ai2dft.units import HARTREE_TO_MEV, HARTREE_TO_UHA
from elct_jax.data.deeph_dock import DeepHRecord
from elct_jax.data.spinful import initial_moments
from elct_jax.data.systems import system_from_record
from elct_jax.hamiltonian.blocks import dict_to_dense
from elct_jax.inference.predict import apply_model, model_dense, predict_blocks


@dataclass(frozen=True)
class Errors:
    """Per-structure errors, Hartree."""

    mae: float           # mean |H - H_ref| over all AO pairs
    mae_aligned: float   # same after removing the best constant shift c*S
    energy: float        # E_KS[D(H)] - E_KS[D(H_ref)] (positive: the variational principle)


def shift_aligned(H: np.ndarray, H_ref: np.ndarray, S: np.ndarray) -> np.ndarray:
    """H - c S with c minimising ||H - c S - H_ref||_F (H [..., n, n], e.g. [2, n, n] up and down: one c for all)."""
    S = np.broadcast_to(S, H.shape)
    c = np.sum((H - H_ref) * S) / np.sum(S * S)
    return H - c * S


def structure_errors(model, record: DeepHRecord, H: np.ndarray | None = None) -> Errors:
    """Errors of a trained model (``elct_jax.train.saved_model.TrainedModel``) on one molecular record; ``H``: its
    prediction [n_ao, n_ao] (PySCF order, Hartree; a collinear model's [2, n_ao, n_ao], up and down, at the record's
    initial moments, with one shift c S for both spins and the energy of its ``ai2dft.SpinSystem``) when already made."""
    symbols = record.structure.symbols
    if H is None:
        H = predict_blocks(model, record.structure, dense=True, magmom=_moments(model, record))
    H = np.asarray(H)
    H_ref = model_dense(record.matrices["hamiltonian"], model, record.structure)
    S = dict_to_dense(record.matrices["overlap"], model.basis, symbols)
    system = system_from_record(record)
    return Errors(
        mae=float(np.mean(np.abs(H - H_ref))),
        mae_aligned=float(np.mean(np.abs(shift_aligned(H, H_ref, S) - H_ref))),
        energy=float(_energy_of_h(system, H) - _energy_of_h(system, H_ref)),
    )


@dataclass(frozen=True)
class RecordErrors:
    """Errors of a model on one labelled record of any kind, Hartree; None where the record cannot give them.

    mae       mean |H - H_ref| over every entry of the record's H(R) blocks (a block the model does not
              predict, e.g. beyond its cutoff, counts as predicted zero; spinful records: every entry of the
              [2 n_i, 2 n_j] blocks, the zero up-down quadrants of collinear ones included)
    n_entries entries averaged
    energy    E_KS[D(H)] - E_KS[D(H_ref)]: molecules whose level of theory the record stores
    band_mae  ``band_errors(...).mae`` within 2 eV of E_F: crystals whose electron count the record stores (None
              when no reference band lies that close)
    """

    mae: float
    n_entries: int
    energy: float | None
    band_mae: float | None


def record_errors(model, record: DeepHRecord, predicted: dict | None = None) -> RecordErrors:
    """:class:`RecordErrors` of a trained model on ``record`` (needs its "hamiltonian" matrix; the energy also
    its "overlap" and DFT settings); ``predicted``: its blocks {(R1, R2, R3, i, j): block} (``predict_blocks``,
    a collinear model's at the record's initial moments) when already made."""
    s = record.structure
    if predicted is None:
        predicted = predict_blocks(model, s, magmom=_moments(model, record))
    errors = [np.abs(predicted[k] - b) if k in predicted else np.abs(b) for k, b in record.matrices["hamiltonian"].items()]
    n = sum(e.size for e in errors)
    energy = band_mae = None
    if (not s.is_periodic and "xc" in record.dft and record.basis.name not in ("", "unknown")
            and model.config.spin != "soc"):  # no spin-orbit energy functional
        energy = structure_errors(model, record, model_dense(predicted, model, s)).energy
    if s.is_periodic and "n_electrons" in record.dft and "overlap" in record.matrices:
        bands = band_errors(predicted, record)
        band_mae = bands.mae if bands.n_energies else None
    return RecordErrors(sum(float(e.sum()) for e in errors) / max(n, 1), n, energy, band_mae)


def _moments(model, record: DeepHRecord) -> np.ndarray | None:
    """The record's initial moments for a collinear model's input, else None."""
    return initial_moments(record) if model.config.spin == "collinear" else None


def errors_table(names, errors) -> str:
    """Per-structure rows and the mean of :class:`RecordErrors` (meV; "-" where not available)."""
    def cell(value):
        return f"{value * HARTREE_TO_MEV:>12.4f}" if value is not None else f"{'-':>12}"

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    head = f"{'structure':<28}{'H MAE meV':>12}{'H MAE uHa':>12}{'dE meV':>12}{'band meV':>12}"
    rows = [f"{name:<28}{cell(e.mae)}{e.mae * HARTREE_TO_UHA:>12.2f}{cell(e.energy)}{cell(e.band_mae)}"
            for name, e in zip(names, errors)]
    mae = mean([e.mae for e in errors])
    total = (f"{f'mean of {len(errors)}':<28}{cell(mae)}{mae * HARTREE_TO_UHA:>12.2f}"
             f"{cell(mean([e.energy for e in errors]))}{cell(mean([e.band_mae for e in errors]))}")
    return "\n".join([head, "-" * len(head), *rows, "-" * len(head), total])


def write_errors_csv(path, names, errors) -> None:
    """One row per structure: name, H MAE (meV, uHa), entries, energy error and band MAE (meV, empty if none)."""
    def mev(value):
        return "" if value is None else f"{value * HARTREE_TO_MEV:.6f}"

    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["structure", "h_mae_meV", "h_mae_uHa", "n_entries", "energy_error_meV", "band_mae_meV"])
        for name, e in zip(names, errors):
            out.writerow([name, mev(e.mae), f"{e.mae * HARTREE_TO_UHA:.4f}", e.n_entries, mev(e.energy),
                          mev(e.band_mae)])


def _energy_of_h(system, H):
    """E_KS[D(H)] (Hartree). Not jitted: grid sizes differ between structures, and one evaluation
    costs less than a compilation."""
    return energy(system, density_matrix(system, H))


class BlockErrors:
    """|H_pred - H_ref| summed with entry counts per block type: ("onsite", "A") per element and
    ("offsite", "A-B") per sorted element pair (both directions pooled), over padded batches. Hartree."""

    def __init__(self, elements: tuple[str, ...]):
        self.elements = tuple(elements)
        self.sums: dict[tuple[str, str], float] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, onsite, edges, batch) -> None:
        """Add one batch: predictions onsite [n_node, n_max, n_max], edges [n_edge, n_max, n_max] (spinful: the spin
        axes after the first, ``hamiltonian.spinor``) against its "hamiltonian" target, over the labelled entries
        only; complex entries count their real and imaginary parts."""
        (t_on, t_ed), (m_on, m_ed) = batch.targets["hamiltonian"], batch.target_masks["hamiltonian"]
        species = np.asarray(batch.graph.nodes["species"])
        senders, receivers = np.asarray(batch.graph.senders), np.asarray(batch.graph.receivers)
        self._accumulate("onsite", species, species, onsite, t_on, m_on)
        self._accumulate("offsite", species[senders], species[receivers], edges, t_ed, m_ed)

    def _accumulate(self, kind, s1, s2, pred, target, mask) -> None:
        cplx = np.iscomplexobj(pred) or np.iscomplexobj(target)  # spin-orbit: real and imaginary parts, as in training
        diff = np.asarray(pred, np.complex128 if cplx else np.float64) - np.asarray(target)
        mask = np.asarray(mask)
        err = (np.abs(diff.real) + np.abs(diff.imag) if cplx else np.abs(diff)) * mask
        axes = tuple(range(1, err.ndim))  # orbital (and spin) axes of each block
        per_block, n_block = err.sum(axis=axes), (2 if cplx else 1) * mask.sum(axis=axes)
        lo, hi = np.minimum(s1, s2), np.maximum(s1, s2)
        for a, b in set(zip(lo[n_block > 0].tolist(), hi[n_block > 0].tolist())):
            sel = (lo == a) & (hi == b)
            pair = self.elements[a] if kind == "onsite" else f"{self.elements[a]}-{self.elements[b]}"
            key = (kind, pair)
            self.sums[key] = self.sums.get(key, 0.0) + float(per_block[sel].sum())
            self.counts[key] = self.counts.get(key, 0) + int(n_block[sel].sum())

    def mae(self, kind: str | None = None, pair: str | None = None) -> float:
        """MAE (Hartree) over the entries of one block kind and/or element pair (all when None)."""
        keys = [k for k in self.sums if kind in (None, k[0]) and pair in (None, k[1])]
        return sum(self.sums[k] for k in keys) / max(sum(self.counts[k] for k in keys), 1)

    def table(self) -> str:
        """Pooled, per kind and per (kind, pair) MAE in meV and micro-Hartree, with entry counts."""
        rows = [("all", self.mae(), sum(self.counts.values()))]
        rows += [(kind, self.mae(kind), sum(c for k, c in self.counts.items() if k[0] == kind))
                 for kind in ("onsite", "offsite")]
        rows += [(f"{kind} {pair}", self.mae(kind, pair), self.counts[(kind, pair)])
                 for kind, pair in sorted(self.sums)]
        head = f"{'blocks':<18}{'MAE meV':>10}{'MAE uHa':>10}{'entries':>12}"
        return "\n".join([head, "-" * len(head)] + [
            f"{name:<18}{m * HARTREE_TO_MEV:>10.4f}{m * HARTREE_TO_UHA:>10.2f}{n:>12d}" for name, m, n in rows])


def block_errors(apply_fn, params, batches, elements: tuple[str, ...]) -> BlockErrors:
    """:class:`BlockErrors` of the network ``apply_fn(params, graph)`` over labelled padded batches."""
    errors = BlockErrors(elements)
    for batch in batches:
        onsite, edges = apply_model(apply_fn, params, batch.graph)
        errors.add(onsite, edges, batch)
    return errors


@dataclass(frozen=True)
class BandErrors:
    """Band energies from a predicted H(R) against the DFT H(R) (same S(R)), on a k-mesh, Hartree.

    mae    mean |e_pred - e_ref| over the band energies within ``window`` of the reference Fermi level
    worst  max |e_pred - e_ref| over the same energies
    fermi  E_F(pred) - E_F(ref), each from its own bands at the record's electron count
    mae_aligned, worst_aligned  the same of (e_pred - E_F(pred)) - (e_ref - E_F(ref)): blind to a constant shift of
           all levels (c S added to H), which a periodic calculation's potential zero leaves open
    """

    mae: float
    worst: float
    fermi: float
    n_energies: int
    mae_aligned: float = float("nan")
    worst_aligned: float = float("nan")


def band_errors(predicted: dict, record: DeepHRecord, window: float = 2000 / HARTREE_TO_MEV,
                mesh: int = 6) -> BandErrors:
    """:class:`BandErrors` of predicted blocks ``{(R1, R2, R3, i, j): block}`` (internal order, Hartree) of a
    periodic ``record``, on a Gamma-centred ``mesh`` x ``mesh`` grid of the periodic in-plane directions (x
    ``mesh`` along a3 when that is periodic too), dense diagonalisation; ``window`` in Hartree (2 eV). Spinful
    records: the bands of every spin channel (``elct_jax.analysis.spin_bands``: up and down, or spinor), one Fermi
    level for all of them; the prediction must hold the record's spin treatment."""
    from elct_jax.analysis.bands import fermi_level
    from elct_jax.analysis.spin_bands import band_channels

    axes = [np.arange(mesh) / mesh if p else np.zeros(1) for p in record.structure.pbc]
    kpts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    n_el = int(record.dft["n_electrons"])
    reference = band_channels(record)
    prediction = dataclasses.replace(record, matrices={**record.matrices, "hamiltonian": predicted})
    energies, fermi = {}, {}
    for name, channels in (("ref", reference), ("pred", band_channels(prediction, "the prediction", reference.treatment))):
        fermi[name] = fermi_level(channels.solvers, n_el, kpts, method="dense",
                                  electrons_per_level=channels.electrons_per_level)
        energies[name] = np.concatenate([b.bands(kpts, None, None, solver="dense").energies for b in channels.solvers],
                                        axis=1)
    near = np.abs(energies["ref"] - fermi["ref"]) < window
    shift = float(fermi["pred"] - fermi["ref"])
    if not near.any():  # a gap wider than twice the window
        return BandErrors(float("nan"), float("nan"), shift, 0)
    err = np.abs(energies["pred"] - energies["ref"])[near]
    aligned = np.abs(energies["pred"] - energies["ref"] - shift)[near]
    return BandErrors(float(err.mean()), float(err.max()), shift, int(near.sum()), float(aligned.mean()),
                      float(aligned.max()))

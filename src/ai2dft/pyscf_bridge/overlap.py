"""Overlap matrices for prediction from PySCF one-electron integrals (no DFT run).

Molecules: ``molecule_overlap`` is ``mol.intor("int1e_ovlp")``. Structures of any size (molecules or
crystals): ``pair_overlaps`` evaluates S_ij(R) = <i, 0 | j, R> for a given list of atom pairs, the
way ``realspace.direct_overlaps`` does (molecular integrals between atoms and translated atoms), but in
chunks of sender atoms: each chunk is one ``intor_cross``-style call between the chunk's atoms and
the (translated) atoms its pairs reach, so memory stays bounded by the chunk, whatever the size of
the structure. The libcint environments are assembled directly from a per-element template (no
Mole build per chunk). Blocks are in PySCF's AO order within each atom, dimensionless.
"""
from __future__ import annotations

import numpy as np
from pyscf import gto
from pyscf.gto import moleintor

from ai2dft.pyscf_bridge.labels import _DEFAULT_PSEUDO
from ai2dft.units import PYSCF_ANG_TO_BOHR


def molecule_overlap(symbols, positions_ang, basis: str) -> np.ndarray:
    """[n_ao, n_ao] overlap of a molecule, PySCF AO order."""
    mol = gto.M(atom=[[s, tuple(p)] for s, p in zip(symbols, np.asarray(positions_ang))], basis=basis,
                unit="Angstrom", spin=None, verbose=0)
    return mol.intor("int1e_ovlp")


def valence_electrons(symbols, basis: str, xc: str = "lda", pseudo: str | None = None) -> int:
    """Electrons per cell with the GTH pseudopotential of ``xc`` (or ``pseudo``); all electrons when
    neither gives one (pseudo="none")."""
    from pyscf.pbc import gto as pbc_gto

    pseudo = _DEFAULT_PSEUDO.get(xc.lower()) if pseudo is None else pseudo
    elements = sorted(set(symbols))
    cell = pbc_gto.Cell()
    cell.build(a=np.eye(3) * 30.0 * len(elements), atom=[[el, (0, 0, 3.0 * n)] for n, el in enumerate(elements)],
               basis=basis, pseudo=None if pseudo in (None, "none") else pseudo, unit="Angstrom", verbose=0,
               spin=None)
    per_element = {el: int(cell.atom_charge(n)) for n, el in enumerate(elements)}
    return sum(per_element[s] for s in symbols)


class _Template:
    """libcint data of one atom of each element; environments for any list of atoms are built from it."""

    def __init__(self, elements, basis: str, intor: str = "int1e_ovlp"):
        self.elements = tuple(sorted(set(elements)))
        mol = gto.M(atom=[[el, (0, 0, 0)] for el in self.elements], basis=basis, unit="Bohr", spin=None,
                    verbose=0)
        if mol.cart:
            raise ValueError(f"basis {basis!r} is Cartesian; spherical AOs are expected")
        self.intor = intor + "_sph"
        self.env = np.asarray(mol._env)
        self.atm = np.asarray(mol._atm)
        self.bas = [np.asarray(mol._bas[mol._bas[:, gto.ATOM_OF] == a]) for a in range(len(self.elements))]
        self.index = {el: a for a, el in enumerate(self.elements)}
        self.nao = np.array([mol.aoslice_by_atom()[a, 3] - mol.aoslice_by_atom()[a, 2] for a in range(len(self.elements))])

    def arrays(self, element_ids: np.ndarray, coords_bohr: np.ndarray):
        """(atm, bas, env) of atoms with these template element indices and coordinates [n, 3] Bohr."""
        env = np.concatenate([self.env, np.asarray(coords_bohr, np.float64).reshape(-1)])
        atm = self.atm[element_ids].copy()
        atm[:, gto.PTR_COORD] = len(self.env) + 3 * np.arange(len(element_ids))
        bas = np.concatenate([self.bas[e] for e in element_ids]).copy()
        bas[:, gto.ATOM_OF] = np.repeat(np.arange(len(element_ids)), [len(self.bas[e]) for e in element_ids])
        return atm.astype(np.int32), bas.astype(np.int32), env


def pair_overlaps(symbols, positions_ang, lattice_ang, basis: str, senders, receivers, cell_shift,
                  chunk_atoms: int = 32, intor: str = "int1e_ovlp") -> tuple[np.ndarray, np.ndarray]:
    """On-site and pair overlap blocks of a structure, PySCF AO order within each atom (another
    two-centre one-electron integral with ``intor``, e.g. "int1e_kin").

    symbols [n_atom], positions_ang [n_atom, 3], lattice_ang [3, 3] rows (None for a molecule);
    pairs (senders[e], receivers[e], cell_shift[e]) = (i, j, R): S_ij(R) = <i in cell 0 | j in cell R>.
    Returns onsite [n_atom, n_max, n_max] and blocks [n_pair, n_max, n_max] (leading n_i x n_j used,
    zeros elsewhere), n_max the largest AO count of one atom.
    """
    tpl = _Template(symbols, basis, intor)
    elem = np.array([tpl.index[s] for s in symbols])
    nao = tpl.nao[elem]
    n_max = int(nao.max())
    pos = np.asarray(positions_ang, np.float64) * PYSCF_ANG_TO_BOHR
    lattice = np.zeros((3, 3)) if lattice_ang is None else np.asarray(lattice_ang, np.float64) * PYSCF_ANG_TO_BOHR
    senders, receivers = np.asarray(senders, np.int64), np.asarray(receivers, np.int64)
    cell_shift = np.asarray(cell_shift, np.int64).reshape(-1, 3)
    order = np.argsort(senders, kind="stable")
    bounds = np.searchsorted(senders[order], np.arange(0, len(symbols) + chunk_atoms, chunk_atoms))
    onsite = np.zeros((len(symbols), n_max, n_max))
    blocks = np.zeros((len(senders), n_max, n_max))
    for n, lo in enumerate(range(0, len(symbols), chunk_atoms)):
        rows = np.arange(lo, min(lo + chunk_atoms, len(symbols)))
        pairs = order[bounds[n]:bounds[n + 1]]
        images = np.concatenate([np.column_stack([rows, np.zeros((len(rows), 3), np.int64)]),
                                 np.column_stack([receivers[pairs], cell_shift[pairs]])])
        images, col_of = np.unique(images, axis=0, return_inverse=True)
        col_of = col_of.reshape(-1)
        s = _cross(tpl, elem[rows], pos[rows], elem[images[:, 0]], pos[images[:, 0]] + images[:, 1:] @ lattice)
        row_off = np.concatenate([[0], np.cumsum(nao[rows])])
        col_off = np.concatenate([[0], np.cumsum(nao[images[:, 0]])])
        onsite[rows] = _blocks_of(s, row_off, col_off, np.arange(len(rows)), col_of[: len(rows)],
                                  nao[rows], nao[rows], n_max)
        blocks[pairs] = _blocks_of(s, row_off, col_off, senders[pairs] - lo, col_of[len(rows):],
                                   nao[senders[pairs]], nao[receivers[pairs]], n_max)
    return onsite, blocks


def _blocks_of(s, row_off, col_off, r, c, n_i, n_j, n_max) -> np.ndarray:
    """[n, n_max, n_max] blocks (row atom r, column atom c) of s, zero beyond n_i x n_j."""
    a = np.arange(n_max)
    valid = (a[None, :, None] < n_i[:, None, None]) & (a[None, None, :] < n_j[:, None, None])
    ri = np.minimum(row_off[r][:, None, None] + a[None, :, None], s.shape[0] - 1)
    ci = np.minimum(col_off[c][:, None, None] + a[None, None, :], s.shape[1] - 1)
    return np.where(valid, s[ri, ci], 0.0)


def _cross(tpl: _Template, elem_a, coords_a, elem_b, coords_b) -> np.ndarray:
    """[n_ao(A), n_ao(B)] overlap between two atom lists (coordinates in Bohr)."""
    atm_a, bas_a, env_a = tpl.arrays(elem_a, coords_a)
    atm_b, bas_b, env_b = tpl.arrays(elem_b, coords_b)
    atm, bas, env = gto.conc_env(atm_a, bas_a, env_a, atm_b, bas_b, env_b)
    n_a = len(bas_a)
    return moleintor.getints(tpl.intor, atm, bas, env, shls_slice=(0, n_a, n_a, n_a + len(bas_b)), comp=1)

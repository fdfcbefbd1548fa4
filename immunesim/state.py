"""Struct-of-arrays state of a simulation: cells, lattice and molecular layers.

Cells live in slots ``0 .. n-1`` of fixed-size arrays whose capacity is the number of sites
(volume exclusion: never more cells than sites, so the buffers can never overflow). Slots are
compacted once per step, keeping order; a cell's identity is its persistent ``uid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class State:
    """All arrays of one simulation.

    Cell arrays (length ``capacity = L*L``; slots ``>= n`` are unused):
        uid: int64, persistent identity (random numbers are keyed by it).
        kind: int8, :class:`immunesim.model.cells.Kind`.
        state: int8, state bits (``STATE_CAR_T_MEMORY``).
        spec: int8, specificity class (0 self, 1..V vaccines, V+1 other).
        x, y: int32, lattice coordinates.
        age: int32, steps since birth.
        counter: int16, divisions left (activated B) or stimulated steps left (CAR-T).
        car_mask: uint8, target marker mask of a CAR-T cell (0 otherwise).
        alive: uint8, 0 once a cell has died in this step (removed at compaction).
        want: int32 scratch (proposed site or victim slot, -1 for none; the production
            phase uses it per site for what a free site makes).
        key: int64 scratch (conflict priority: lowest wins).

    Site arrays (length ``L*L``, site index ``y*L + x``):
        occ: int32, slot of the cell on the site or -1.
        zone: uint8, 0 marrow, 1 lymphoid, 2 tissue.
        niche: uint8, 1 for a long-lived plasma cell niche.
        claim: int64 scratch for conflict resolution (``CLAIM_FREE`` when unclaimed).
        toward: int8[3, L*L], Moore direction (0..7) toward the nearest site of each zone,
            -1 inside the zone.

    Molecules:
        mol, mol_next: int64[n_layers, L*L], internal units (see ``immunesim.model.params``).

    Bookkeeping:
        n: number of used slots. next_uid: next uid to hand out.
        ledger: int64[N_KINDS, 4] cumulative born, died, converted in, converted out.
        aux: the backend's own buffers and cached values (the CUDA backend's spare cell
            arrays for compaction, for instance).

    On the CPU the arrays are numpy arrays; a GPU backend's ``prepare`` gives a copy whose
    arrays live on the device (CuPy).
    """

    L: int
    uid: np.ndarray
    kind: np.ndarray
    state: np.ndarray
    spec: np.ndarray
    x: np.ndarray
    y: np.ndarray
    age: np.ndarray
    counter: np.ndarray
    car_mask: np.ndarray
    alive: np.ndarray
    want: np.ndarray
    key: np.ndarray
    occ: np.ndarray
    zone: np.ndarray
    niche: np.ndarray
    claim: np.ndarray
    toward: np.ndarray
    mol: np.ndarray
    mol_next: np.ndarray
    ledger: np.ndarray
    n: int = 0
    next_uid: int = 0
    aux: dict = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return self.uid.shape[0]

    def nbytes(self) -> int:
        """Bytes held by the state's arrays, the backend's buffers included."""
        arrays = [getattr(self, f.name) for f in fields(self)]
        arrays += [a for v in self.aux.values() if isinstance(v, dict) for a in v.values()]
        return sum(int(a.nbytes) for a in arrays if hasattr(a, "nbytes") and hasattr(a, "shape"))


CLAIM_FREE = np.iinfo(np.int64).max

#: Moore neighbourhood offsets, direction index 0..7.
DX = np.array([-1, 0, 1, -1, 1, -1, 0, 1], dtype=np.int32)
DY = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=np.int32)


def allocate(L: int, n_layers: int, zone: np.ndarray, niche: np.ndarray) -> State:
    """Allocate an empty state for an ``L x L`` lattice with the given zone map."""
    from immunesim.model.cells import N_KINDS

    cap = L * L
    st = State(
        L=L,
        uid=np.zeros(cap, np.int64),
        kind=np.zeros(cap, np.int8),
        state=np.zeros(cap, np.int8),
        spec=np.zeros(cap, np.int8),
        x=np.zeros(cap, np.int32),
        y=np.zeros(cap, np.int32),
        age=np.zeros(cap, np.int32),
        counter=np.zeros(cap, np.int16),
        car_mask=np.zeros(cap, np.uint8),
        alive=np.zeros(cap, np.uint8),
        want=np.full(cap, -1, np.int32),
        key=np.zeros(cap, np.int64),
        occ=np.full(cap, -1, np.int32),
        zone=np.ascontiguousarray(zone.reshape(-1), dtype=np.uint8),
        niche=np.ascontiguousarray(niche.reshape(-1), dtype=np.uint8),
        claim=np.full(cap, CLAIM_FREE, np.int64),
        toward=homing_directions(zone.reshape(L, L)),
        mol=np.zeros((n_layers, cap), np.int64),
        mol_next=np.zeros((n_layers, cap), np.int64),
        ledger=np.zeros((N_KINDS, 4), np.int64),
    )
    return st


def homing_directions(zone: np.ndarray) -> np.ndarray:
    """For each zone, the Moore step toward the nearest site of that zone (BFS distance).

    Args:
        zone: uint8[L, L] zone map.

    Returns:
        int8[3, L*L]: direction index 0..7, or -1 on sites of that zone (or where the zone
        does not exist).
    """
    L = zone.shape[0]
    out = np.full((3, L * L), -1, np.int8)
    for z in range(3):
        dist = _bfs_distance(zone == z)
        if not np.isfinite(dist).any():
            continue
        best = np.full((L, L), np.inf)
        bestd = np.full((L, L), -1, np.int8)
        padded = np.pad(dist, 1, constant_values=np.inf)
        for d in range(8):
            nb = padded[1 + DY[d] : 1 + DY[d] + L, 1 + DX[d] : 1 + DX[d] + L]
            better = nb < best
            best = np.where(better, nb, best)
            bestd = np.where(better, d, bestd).astype(np.int8)
        bestd[zone == z] = -1
        out[z] = bestd.reshape(-1)
    return out


def _bfs_distance(mask: np.ndarray) -> np.ndarray:
    """Chebyshev (Moore) distance to the nearest ``True`` site (linear-time transform)."""
    from scipy.ndimage import distance_transform_cdt

    if not mask.any():
        return np.full(mask.shape, np.inf)
    return distance_transform_cdt(~mask, metric="chessboard").astype(np.float64)

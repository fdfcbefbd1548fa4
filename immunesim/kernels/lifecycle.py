"""Birth (production), death (lifespans), therapy depletion and secretion rules."""

from __future__ import annotations

import numba as nb

from immunesim.kernels.common import CAR_T, LLPC, PLASMABLAST, bears
from immunesim.model.cells import N_KINDS, STATE_CAR_T_MEMORY
from immunesim.model.params import IP_SECRETE_LLPC, IP_SECRETE_PB
from immunesim.rng import S_DEATH, S_DEPLETE, S_PRODUCE, S_PRODUCE_SPEC, S_T_HELPER, rand53

_CAR_MEM_CLASS = N_KINDS

# Site production codes.
PRODUCE_NONE = 0
PRODUCE_NAIVE_B = 1
PRODUCE_T_HELPER = 2


@nb.njit(cache=True)
def death_class(kind, state):
    """Index into the death thresholds: the kind, or the memory CAR-T class."""
    if kind == CAR_T and (state & STATE_CAR_T_MEMORY) != 0:
        return _CAR_MEM_CLASS
    return kind


@nb.njit(cache=True)
def dies(i, seed, step, uid, kind, state, alive, thr_death):
    """Whether cell ``i`` dies of old age this step."""
    if alive[i] == 0:
        return False
    return rand53(seed, step, uid[i], S_DEATH) < thr_death[death_class(kind[i], state[i])]


@nb.njit(cache=True)
def depleted(i, seed, step, uid, kind, zone_of_cell, alive, markers, target_mask, thr_zone):
    """Whether a therapy that hits ``target_mask`` kills cell ``i`` (depth per zone)."""
    if alive[i] == 0 or not bears(markers, kind[i], target_mask):
        return False
    return rand53(seed, step, uid[i], S_DEPLETE) < thr_zone[zone_of_cell]


@nb.njit(inline="always", cache=True)
def production(z, thr_produce, thr_t_helper):
    """``(PRODUCE_* code, per-step threshold)`` of a free site in zone ``z``: naive B cells
    in marrow, T helpers in lymphoid tissue, nothing in tissue."""
    if z == 0:
        return PRODUCE_NAIVE_B, nb.uint64(thr_produce)
    if z == 1:
        return PRODUCE_T_HELPER, nb.uint64(thr_t_helper)
    return PRODUCE_NONE, nb.uint64(0)


@nb.njit(cache=True)
def production_at(site, seed, step, occ, zone, thr_produce, thr_t_helper):
    """What a free site makes this step (``PRODUCE_*``): naive B in marrow, T helpers in
    lymphoid tissue."""
    if occ[site] >= 0:
        return PRODUCE_NONE
    code, thr = production(zone[site], thr_produce, thr_t_helper)
    if code == PRODUCE_NONE:
        return PRODUCE_NONE
    stream = S_PRODUCE if code == PRODUCE_NAIVE_B else S_T_HELPER
    if rand53(seed, step, site, stream) < thr:
        return code
    return PRODUCE_NONE


@nb.njit(cache=True)
def specificity(draw, spec_cum):
    """Specificity class of a new naive B cell for a uniform 53-bit ``draw`` (``spec_cum``:
    cumulative thresholds of the marrow output)."""
    n = spec_cum.shape[0]
    for s in range(n):
        if draw < spec_cum[s]:
            return s
    return n


@nb.njit(cache=True)
def new_specificity(seed, step, site, spec_cum):
    """Specificity class of a naive B cell made at ``site`` (cumulative thresholds)."""
    return specificity(rand53(seed, step, site, S_PRODUCE_SPEC), spec_cum)


@nb.njit(cache=True)
def secretion(kind_i, ip):
    """Antibody units a cell of ``kind_i`` secretes per step."""
    if kind_i == PLASMABLAST:
        return ip[IP_SECRETE_PB]
    if kind_i == LLPC:
        return ip[IP_SECRETE_LLPC]
    return 0

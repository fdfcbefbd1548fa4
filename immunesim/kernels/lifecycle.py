"""Birth (production), death (lifespans), therapy depletion and secretion rules."""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from immunesim.kernels.common import CAR_T, add_mol, bears
from immunesim.model.cells import CAR_T_MEMORY_CLASS, N_KINDS, STATE_CAR_T_MEMORY
from immunesim.model.fields import CLAIM_FREE
from immunesim.model.params import IP_N_SPEC, IP_THR_PRODUCE
from immunesim.rng import S_DEATH, S_DEPLETE, S_PRODUCE, S_PRODUCE_SPEC, S_T_HELPER, rand53

# Site production codes.
PRODUCE_NONE = 0
PRODUCE_NAIVE_B = 1
PRODUCE_T_HELPER = 2

#: A therapy's depletion: cells bearing any marker of ``mask`` die with their kind's threshold
#: in their zone, ``thr_zone[kind, zone]`` (uint64[kinds, 3]; zones marrow, lymphoid, tissue);
#: with ``car`` non-zero, only the CAR-T cells whose receptor recognises one of the markers of
#: ``car``.
Depletion = namedtuple("Depletion", "seed step L mask thr_zone car")


def kind_zone_thresholds(thr: np.ndarray) -> np.ndarray:
    """A depletion's thresholds as uint64[kinds, 3]: one per zone (uint64[3]) is the same for
    every kind."""
    thr = np.asarray(thr, np.uint64)
    return np.ascontiguousarray(np.broadcast_to(thr, (N_KINDS, 3)))


#: New cells in slots ``n, n+1, ...`` with uids ``next_uid, ...``; ``thr_t_helper`` is the
#: T-helper production threshold of a free lymphoid site this step.
Births = namedtuple("Births", "seed step L n next_uid thr_t_helper")


@nb.njit(inline="always", cache=True)
def cell_class(kind, state):
    """Class of a cell for lifespans and counts: its kind, or the memory CAR-T class
    (:data:`~immunesim.model.cells.CLASS_NAMES`)."""
    if kind == CAR_T and (state & STATE_CAR_T_MEMORY) != 0:
        return CAR_T_MEMORY_CLASS
    return kind


@nb.njit(inline="always", cache=True)
def countdown(kind, counter):
    """A cell's counter one step later: a CAR-T cell's stimulation wears off by one step
    (an activated B cell's divisions left change only when it divides)."""
    if kind == CAR_T and counter > 0:
        return counter - 1
    return counter


@nb.njit(cache=True)
def dies(i, seed, step, uid, kind, state, alive, thr_death):
    """Whether cell ``i`` dies of old age this step."""
    if alive[i] == 0:
        return False
    return rand53(seed, step, uid[i], S_DEATH) < thr_death[cell_class(kind[i], state[i])]


@nb.njit(cache=True)
def depleted(
    i, seed, step, uid, kind, zone_of_cell, alive, markers, target_mask, thr_zone, car_mask, car
):
    """Whether a therapy that hits ``target_mask`` kills cell ``i`` (depth per kind and zone); with
    ``car`` non-zero, only a cell whose CAR (``car_mask``) recognises a marker of ``car``."""
    if alive[i] == 0 or not bears(markers, kind[i], target_mask):
        return False
    if car != 0 and (car_mask[i] & car) == 0:
        return False
    return rand53(seed, step, uid[i], S_DEPLETE) < thr_zone[kind[i], zone_of_cell]


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
def secretion(kind_i, spec_i, secrete, secrete_row, secrete_spec):
    """``(row, amount)``: the layer row a cell of ``kind_i`` and specificity ``spec_i``
    secretes into and the internal units per step (amount 0: it secretes nothing). The
    tables are :data:`~immunesim.model.params.KernelParams`' ``secrete*``."""
    row = secrete_row[kind_i]
    if secrete_spec[kind_i] != 0:
        row += spec_i
    return row, secrete[kind_i]


# --------------------------------------------------------------------------- phase bodies


@nb.njit(inline="always", cache=True)
def deplete(i, t, c, s, p):
    """A therapy kills cell ``i`` if it bears a target marker, with its zone's probability
    (``t``: :data:`Depletion`). Tallies one death."""
    z = s.zone[c.y[i] * t.L + c.x[i]]
    hit = depleted(
        i,
        t.seed,
        t.step,
        c.uid,
        c.kind,
        z,
        c.alive,
        p.markers,
        t.mask,
        t.thr_zone,
        c.car_mask,
        t.car,
    )
    if hit:
        c.alive[i] = 0
        return 0, 1
    return 0, 0


@nb.njit(inline="always", cache=True)
def mark_production(layer, site, x, y, t, c, s, p):
    """A site body: what the free ``site`` makes this step (``t``: :data:`Births`), written
    to ``sites.claim[site]`` when it makes a cell (no cell claims a site during production,
    so every claim is :data:`~immunesim.model.fields.CLAIM_FREE` before it and after
    :func:`~immunesim.kernels.slots.place_newborn`). Tallies the sites that make a cell,
    the room the phase needs."""
    code = production_at(
        site, t.seed, t.step, s.occ, s.zone, nb.uint64(p.ip[IP_THR_PRODUCE]), t.thr_t_helper
    )
    if code == PRODUCE_NONE:
        return 0, 0
    s.claim[site] = code
    return 0, 1


@nb.njit(inline="always", cache=True)
def makes_cell(site, t, c, s, p):
    """Whether ``site`` makes a cell this step (after :func:`mark_production`)."""
    return s.claim[site] != CLAIM_FREE


@nb.njit(inline="always", cache=True)
def age(i, t, c, s, p):
    """Cell ``i`` dies at its lifespan's rate, or grows one step older and its stimulation
    wears off (:func:`countdown`); a cell that died this step, of age or earlier, leaves its
    site, and its death is tallied by kind. A cell dead since an earlier step (its slot
    awaits compaction) has left its site already: it no longer holds it."""
    site = c.y[i] * t.L + c.x[i]
    if c.alive[i] == 0:
        if s.occ[site] != i:
            return 0, 0
    elif dies(i, t.seed, t.step, c.uid, c.kind, c.state, c.alive, p.thr_death):
        c.alive[i] = 0
    else:
        c.age[i] += 1
        c.counter[i] = countdown(c.kind[i], c.counter[i])
        return 0, 0
    s.occ[site] = -1
    return nb.int64(c.kind[i]), 1


@nb.njit(inline="always", cache=True)
def secrete(i, t, c, s, p):
    """A live cell adds what its kind secretes (plasmablasts and plasma cells: antibody of
    their class) to its site."""
    if c.alive[i] != 0:
        row, amount = secretion(c.kind[i], c.spec[i], p.secrete, p.secrete_row, p.secrete_spec)
        if amount > 0:
            add_mol(s, row, c.y[i] * t.L + c.x[i], amount)
    return 0, 0


@nb.njit(inline="always", cache=True)
def census(i, t, c, s, p):
    """Counts live cells by class, specificity and zone: bin
    ``(class * n_spec + spec) * 3 + zone``."""
    if c.alive[i] == 0:
        return 0, 0
    k = cell_class(c.kind[i], c.state[i])
    return (k * p.ip[IP_N_SPEC] + c.spec[i]) * 3 + s.zone[c.y[i] * t.L + c.x[i]], 1


__all__ = [
    "Births",
    "Depletion",
    "PRODUCE_NAIVE_B",
    "PRODUCE_NONE",
    "PRODUCE_T_HELPER",
    "age",
    "cell_class",
    "census",
    "countdown",
    "deplete",
    "depleted",
    "dies",
    "makes_cell",
    "mark_production",
    "new_specificity",
    "production",
    "production_at",
    "secrete",
    "secretion",
    "specificity",
]

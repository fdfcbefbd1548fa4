"""Cells into slots: the one place that writes every field of a cell.

Births, daughters and compaction put cells into slots; the backends decide which slot (a
serial pass on the CPU, a prefix sum on the GPU) and these functions write the fields, so
that a new field of :class:`immunesim.state.State` is added here once.
"""

from __future__ import annotations

import numba as nb

from immunesim.kernels.common import CAR_T, NAIVE_B, T_HELPER
from immunesim.kernels.contact import daughter_states
from immunesim.kernels.lifecycle import PRODUCE_NAIVE_B, new_specificity
from immunesim.rng import S_CAR_MEMORY, rand53


@nb.njit(inline="always", cache=True)
def newborn(code, seed, step, site, spec_cum, n_other_spec):
    """``(kind, specificity)`` of the cell that production code ``code`` (naive B or T
    helper, see :func:`immunesim.kernels.lifecycle.production_at`) makes at ``site``."""
    if code == PRODUCE_NAIVE_B:
        return NAIVE_B, new_specificity(seed, step, site, spec_cum)
    return T_HELPER, n_other_spec


@nb.njit(inline="always", cache=True)
def write_cell(m, u, k, st, sp, site, L, c, mask, uid, kind, state, spec, x, y, age, counter,
               car_mask, alive, occ):
    """Put a new live cell (uid ``u``, kind ``k``, state ``st``, specificity ``sp``, counter
    ``c``, CAR target mask ``mask``, age 0) in slot ``m`` on ``site``."""
    uid[m] = u
    kind[m] = k
    state[m] = st
    spec[m] = sp
    x[m] = site % L
    y[m] = site // L
    age[m] = 0
    counter[m] = c
    car_mask[m] = mask
    alive[m] = 1
    occ[site] = m


@nb.njit(inline="always", cache=True)
def copy_cell(i, w, uid, kind, state, spec, x, y, age, counter, car_mask, uid2, kind2, state2,
              spec2, x2, y2, age2, counter2, car_mask2, alive2):
    """Copy the live cell in slot ``i`` to slot ``w`` of the second set of arrays (the same
    arrays for an in-place compaction, with ``w <= i``)."""
    uid2[w] = uid[i]
    kind2[w] = kind[i]
    state2[w] = state[i]
    spec2[w] = spec[i]
    x2[w] = x[i]
    y2[w] = y[i]
    age2[w] = age[i]
    counter2[w] = counter[i]
    car_mask2[w] = car_mask[i]
    alive2[w] = 1


@nb.njit(inline="always", cache=True)
def place_daughter(i, m, u, site, L, seed, step, thr_car_memory, uid, kind, state, spec, x, y,
                   age, counter, car_mask, alive, occ):
    """Divide cell ``i`` into slot ``m`` (uid ``u``) on ``site``: the parent's state and
    counter change as :func:`immunesim.kernels.contact.daughter_states` says (a CAR-T
    daughter joins the memory pool with probability ``thr_car_memory / 2**53``). Returns the
    kind, for the ledger."""
    k = kind[i]
    joins = k == CAR_T and rand53(seed, step, uid[i], S_CAR_MEMORY) < thr_car_memory
    parent, daughter, c = daughter_states(k, state[i], counter[i], joins)
    state[i] = parent
    counter[i] = c
    write_cell(m, u, k, daughter, spec[i], site, L, c, car_mask[i], uid, kind, state, spec, x,
               y, age, counter, car_mask, alive, occ)
    return k

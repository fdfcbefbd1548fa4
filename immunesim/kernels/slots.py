"""Cells into slots: the one place that writes every field of a cell.

Births, daughters and compaction put cells into slots; the backends decide which slot (a
serial pass on the CPU, a prefix sum on the GPU) and these functions write the fields, so
that a new field of :class:`immunesim.state.State` is added here once.
"""

from __future__ import annotations

import numba as nb

from immunesim.kernels.common import NAIVE_B, T_HELPER
from immunesim.kernels.lifecycle import PRODUCE_NAIVE_B, new_specificity


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

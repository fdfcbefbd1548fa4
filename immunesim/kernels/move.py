"""Movement: a random walk on the Moore neighbourhood with homing to a zone.

A cell attempts a move with its kind's move probability. Outside its home zone it heads
toward the home zone with probability ``homing`` (along ``toward``); otherwise it picks one of
the 8 directions at random. A move that would leave the home zone is refused with
probability ``stay``. Only sites empty at the start of the phase can be entered; when two
cells want one site the lowest :func:`priority_key` wins (resolved by the backend).
"""

from __future__ import annotations

import numba as nb

from immunesim.kernels.common import S11, direction, neighbour_site, priority_key
from immunesim.rng import S_DIR, S_MOVE, S_STAY, hash64, rand53


@nb.njit(inline="always", cache=True)
def heading(k, site, here, d_random, homing_draw, toward, thr_homing, home):
    """Moore direction (0..7) of a move attempt by a cell of kind ``k`` at ``site`` in zone
    ``here``: outside its home zone it heads home along ``toward`` when ``homing_draw`` (a
    uniform 53-bit integer) falls below its homing threshold; otherwise ``d_random``."""
    hz = home[k]
    if hz >= 0 and here != hz and homing_draw < thr_homing[k]:
        td = toward[hz, site]
        if td >= 0:
            return td
    return d_random


@nb.njit(inline="always", cache=True)
def leaves_home(k, here, there, home):
    """Whether a step from zone ``here`` to zone ``there`` takes a cell of kind ``k`` out of
    its home zone (such a move is refused with the kind's ``stay`` probability)."""
    hz = home[k]
    return hz >= 0 and here == hz and there != hz


@nb.njit(cache=True)
def move_proposal(i, seed, step, L, uid, kind, x, y, alive, occ, zone, toward,
                  thr_move, thr_homing, thr_stay, home):
    """Site cell ``i`` proposes to move to, and its priority key; ``(-1, 0)`` for none."""
    if alive[i] == 0:
        return -1, 0
    k = kind[i]
    u = uid[i]
    if rand53(seed, step, u, S_MOVE) >= thr_move[k]:
        return -1, 0
    h = hash64(seed, step, u, S_DIR)
    xi = x[i]
    yi = y[i]
    site = yi * L + xi
    here = zone[site]
    d = heading(k, site, here, direction(h), h >> S11, toward, thr_homing, home)
    target = neighbour_site(xi, yi, d, L)
    if target < 0 or occ[target] >= 0:
        return -1, 0
    if leaves_home(k, here, zone[target], home):
        if rand53(seed, step, u, S_STAY) < thr_stay[k]:
            return -1, 0
    return target, priority_key(h, u)

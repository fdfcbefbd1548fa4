"""Movement: a random walk on the Moore neighbourhood with homing to a zone.

A cell attempts a move with its kind's move probability. Outside its home zone it heads
toward the home zone with probability ``homing``, along one of the steps that bring it
closest to that zone (``toward``), picked at random among them; otherwise it picks one of
the 8 directions at random. A move that would leave the home zone is refused with
probability ``stay``. Only sites empty at the start of the phase can be entered; when two
cells want one site the lowest :func:`priority_key` wins (the backend's scatter-min).
"""

from __future__ import annotations

import numba as nb

from immunesim.kernels.common import direction, neighbour_site, priority_key
from immunesim.model.fields import CLAIM_FREE
from immunesim.rng import S_DIR, S_HOMING, S_HOMING_PICK, S_MOVE, S_STAY, hash64, rand53


@nb.njit(inline="always", cache=True)
def away_from_home(k, here, home):
    """The home zone of a cell of kind ``k`` standing in zone ``here``, or -1 when it is in
    its home zone or has none (then it does not home)."""
    hz = home[k]
    if hz >= 0 and here != hz:
        return hz
    return -1


@nb.njit(inline="always", cache=True)
def homeward(mask, pick_draw):
    """One of the Moore directions set in ``mask`` (bit ``d`` for direction ``d``: the steps
    that bring a cell closest to its home zone), chosen uniformly by ``pick_draw`` (a uniform
    53-bit integer); -1 for an empty mask.

    A vertical band of a zone is as near after a step west as after one north-west or
    south-west: always taking the first of them drifted every homing cell north, and piled
    cells against the lattice's top edge."""
    n = 0
    for d in range(8):
        n += (mask >> d) & 1
    j = (nb.uint64(pick_draw) * nb.uint64(n)) >> nb.uint64(53)
    for d in range(8):
        if (mask >> d) & 1:
            if j == 0:
                return d
            j -= 1
    return -1


@nb.njit(inline="always", cache=True)
def leaves_home(k, here, there, home):
    """Whether a step from zone ``here`` to zone ``there`` takes a cell of kind ``k`` out of
    its home zone (such a move is refused with the kind's ``stay`` probability)."""
    hz = home[k]
    return hz >= 0 and here == hz and there != hz


@nb.njit(inline="always", cache=True)
def move_proposal(i, t, c, s, p):
    """Site cell ``i`` proposes to move to, and its priority key; ``(-1, 0)`` for none."""
    if c.alive[i] == 0:
        return -1, 0
    k = c.kind[i]
    u = c.uid[i]
    if rand53(t.seed, t.step, u, S_MOVE) >= p.thr_move[k]:
        return -1, 0
    h = hash64(t.seed, t.step, u, S_DIR)
    xi = c.x[i]
    yi = c.y[i]
    site = yi * t.L + xi
    here = s.zone[site]
    d = direction(h)
    hz = away_from_home(k, here, p.home)
    if hz >= 0 and rand53(t.seed, t.step, u, S_HOMING) < p.thr_homing[k]:
        mask = s.toward[hz, site]
        if mask != 0:
            d = homeward(mask, rand53(t.seed, t.step, u, S_HOMING_PICK))
    target = neighbour_site(xi, yi, d, t.L)
    if target < 0 or s.occ[target] >= 0:
        return -1, 0
    if leaves_home(k, here, s.zone[target], p.home):
        if rand53(t.seed, t.step, u, S_STAY) < p.thr_stay[k]:
            return -1, 0
    return target, priority_key(h, u)


# --------------------------------------------------------------------------- phase bodies


@nb.njit(inline="always", cache=True)
def record_proposal(c, i, proposal):
    """Cell ``i`` writes its ``(site or victim, priority key)`` proposal to its scratch
    (``want``, ``key``) for the backend's scatter-min."""
    target, key = proposal
    c.want[i] = target
    c.key[i] = key
    return 0, 0


@nb.njit(inline="always", cache=True)
def propose_move(i, t, c, s, p):
    """Cell ``i`` proposes the site it would enter."""
    return record_proposal(c, i, move_proposal(i, t, c, s, p))


@nb.njit(inline="always", cache=True)
def won(i, c, s):
    """Whether cell ``i``'s proposal (site or victim ``want[i]``) won its conflict."""
    w = c.want[i]
    return w >= 0 and s.claim[w] == c.key[i]


@nb.njit(inline="always", cache=True)
def apply_move(i, t, c, s, p):
    """Cell ``i`` enters the site it won."""
    if won(i, c, s):
        target = c.want[i]
        s.occ[c.y[i] * t.L + c.x[i]] = -1
        s.occ[target] = i
        c.x[i] = target % t.L
        c.y[i] = target // t.L
    return 0, 0


@nb.njit(inline="always", cache=True)
def release_claim(i, t, c, s, p):
    """Clear the claim cell ``i`` made (every claim is cleared after its phase)."""
    w = c.want[i]
    if w >= 0:
        s.claim[w] = CLAIM_FREE
    return 0, 0

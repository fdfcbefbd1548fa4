"""Constants and helpers shared by the rules (neighbourhoods, priority keys), and the
calling convention of the phase bodies.

The rules come in two tiers. *Scalar rules* decide from a few numbers (a kind, a state, a
53-bit draw) and are shared with the Mesa reference. *Phase bodies* apply them to one item
of the state and write the consequences; a backend maps a body over items (see
:mod:`immunesim.engine.contract`). Every body has the signature

``body(i, t, cells, sites, p) -> (bin, value)``

- ``i``: the item, a cell slot (``0 <= i < n``) or, for site bodies, ``(layer, site, x, y)``
  in place of ``i``;
- ``t``: a named tuple of what the launch needs besides the state (:class:`Tick`, or the
  phase's own tuple), scalars and small arrays;
- ``cells``: :class:`~immunesim.model.fields.Cells`; ``sites``:
  :class:`~immunesim.model.fields.Sites`; ``p``: :data:`~immunesim.model.params.KernelParams`;
- the result adds ``value`` to bin ``bin`` of the launch's tally (int64, exact in any
  order): kills, conversions by kind, births, what a layer gives to the circulation.
  ``(0, 0)`` adds nothing.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from immunesim.model.cells import GENERATION_MAX, GENERATION_SHIFT, Kind
from immunesim.model.params import MOL_MAX

#: What most launches need: the seed, the step (both key the random numbers) and the
#: lattice side ``L`` (sites per row).
Tick = namedtuple("Tick", "seed step L")

# Moore neighbourhood, direction index 0..7 (same order as ``immunesim.state.DX/DY``).
DX = (-1, 0, 1, -1, 1, -1, 0, 1)
DY = (-1, -1, -1, 0, 0, 1, 1, 1)

NAIVE_B = int(Kind.NAIVE_B)
ACTIVATED_B = int(Kind.ACTIVATED_B)
MEMORY_B = int(Kind.MEMORY_B)
PLASMABLAST = int(Kind.PLASMABLAST)
LLPC = int(Kind.LLPC)
T_HELPER = int(Kind.T_HELPER)
CAR_T = int(Kind.CAR_T)

#: Nothing to tally.
NOTHING = (0, 0)

_MOL_MAX = np.int64(MOL_MAX)


@nb.njit(inline="always", cache=True)
def capped(q, sat, row):
    """``q`` as a layer's int32 can hold it: above :data:`MOL_MAX`, ``MOL_MAX``, and the
    layer ``row`` is flagged in ``sat`` (``sites.saturated``; every writer writes 1, so
    threads need no atomics)."""
    if q > _MOL_MAX:
        sat[row] = 1
        return _MOL_MAX
    return q


@nb.njit(inline="always", cache=True)
def add_mol(s, row, site, amount):
    """Add ``amount`` to layer ``row`` at ``site`` (capped, :func:`capped`)."""
    s.mol[row, site] = capped(nb.int64(s.mol[row, site]) + amount, s.saturated, row)


_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S33 = np.uint64(33)
_S3 = np.uint64(3)
_SEVEN = np.uint64(7)
#: Shift that keeps the top 53 bits of a hash (compare with thresholds).
S11 = np.uint64(11)


@nb.njit(inline="always", cache=True)
def priority_key(h, uid):
    """Conflict priority: 31 random high bits, then the uid's low 32 bits (lowest wins).

    The result is a non-negative int64, unique among cells whose uids differ in their low
    32 bits, and independent of the cell's array slot.
    """
    return nb.int64(((h >> _S33) << _S32) | (nb.uint64(uid) & _LOW32))


@nb.njit(inline="always", cache=True)
def direction(h):
    """A Moore direction 0..7 from low bits of a hash (independent of its top 53 bits)."""
    return nb.int64((h >> _S3) & _SEVEN)


@nb.njit(inline="always", cache=True)
def neighbour_site(x, y, d, L):
    """Site index of the neighbour of ``(x, y)`` in direction ``d``, or -1 off the lattice."""
    nx = x + DX[d]
    ny = y + DY[d]
    if nx < 0 or ny < 0 or nx >= L or ny >= L:
        return -1
    return ny * L + nx


@nb.njit(inline="always", cache=True)
def bears(markers, kind, mask):
    """Whether a cell of ``kind`` carries any marker of ``mask`` (``markers``: the marker
    table, :data:`immunesim.model.cells.MARKERS`). Therapies and CARs hit cells by marker."""
    return (markers[kind] & mask) != 0


@nb.njit(inline="always", cache=True)
def car_t_generation(state):
    """Generation (divisions since infusion) held in bits 1..6 of a CAR-T cell's state."""
    return (state >> GENERATION_SHIFT) & GENERATION_MAX


@nb.njit(inline="always", cache=True)
def next_generation(state):
    """State with the generation incremented (saturating at ``GENERATION_MAX``)."""
    g = car_t_generation(state)
    if g < GENERATION_MAX:
        g += 1
    return (state & ~(GENERATION_MAX << GENERATION_SHIFT)) | (g << GENERATION_SHIFT)

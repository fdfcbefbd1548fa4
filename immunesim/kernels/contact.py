"""Contact rules on the Moore neighbourhood: CAR-T killing, B-cell activation with T help,
differentiation, and division into free neighbour sites."""

from __future__ import annotations

import numba as nb
import numpy as np

from immunesim.kernels.common import (
    ACTIVATED_B,
    CAR_T,
    LLPC,
    MEMORY_B,
    NAIVE_B,
    PLASMABLAST,
    S11,
    T_HELPER,
    bears,
    car_t_generation,
    neighbour_site,
    next_generation,
    priority_key,
)
from immunesim.model.cells import STATE_CAR_T_MEMORY
from immunesim.model.params import (
    IP_CAR_MAX_GENERATIONS,
    IP_GC_DIVISIONS,
    IP_LAYER_AUTOAG,
    IP_LAYER_VACC0,
    IP_N_SPEC,
    IP_OTHER_AG,
    IP_THR_CAR_DIVIDE,
    IP_THR_CAR_KILL,
    IP_THR_CAR_KILL_MEMORY,
    IP_THR_DIFFERENTIATE,
    IP_THR_GC_DIVIDE,
    IP_THR_LLPC,
    IP_THR_MEMORY_FATE,
    LUT_BITS,
    LUT_SIZE,
    MOL_SHIFT,
)
from immunesim.rng import (
    S_ACTIVATE,
    S_DIFFERENTIATE,
    S_DIVIDE,
    S_DIVIDE_PICK,
    S_FATE,
    S_HOMEO_DIVIDE,
    S_KILL,
    S_KILL_PICK,
    S_LLPC,
    hash64,
    rand53,
)

_LUT_SHIFT = np.int64(MOL_SHIFT - LUT_BITS)
_LUT_MAX = LUT_SIZE - 1

# Conversion codes returned by :func:`activation_rule` (0: none).
CONV_NAIVE_TO_ACTIVATED = 1
CONV_MEMORY_TO_ACTIVATED = 2
CONV_ACTIVATED_TO_MEMORY = 3
CONV_ACTIVATED_TO_PLASMABLAST = 4
CONV_PLASMABLAST_TO_LLPC = 5


# --------------------------------------------------------------------------- scalar rules
# What a cell does, given its attributes and uniform 53-bit draws; the array rules below
# (and the Mesa reference, :mod:`immunesim.reference`) decide with these.


@nb.njit(inline="always", cache=True)
def kill_threshold(state, ip):
    """Per-step kill threshold of a CAR-T cell in ``state``: memory cells kill less."""
    if (state & STATE_CAR_T_MEMORY) != 0:
        return nb.uint64(ip[IP_THR_CAR_KILL_MEMORY])
    return nb.uint64(ip[IP_THR_CAR_KILL])


@nb.njit(inline="always", cache=True)
def activation_threshold(k, a, lut_naive, lut_memory):
    """Per-step activation threshold of a naive or memory B cell (kind ``k``) that sees
    antigen index ``a`` (:func:`antigen_at`) and has T help."""
    return lut_naive[a] if k == NAIVE_B else lut_memory[a]


@nb.njit(inline="always", cache=True)
def activated(k, ip):
    """``(kind, counter, code)`` of a naive or memory B cell (kind ``k``) that activates:
    an activated B cell with the germinal-centre divisions to go."""
    code = CONV_NAIVE_TO_ACTIVATED if k == NAIVE_B else CONV_MEMORY_TO_ACTIVATED
    return ACTIVATED_B, nb.int16(ip[IP_GC_DIVISIONS]), code


@nb.njit(inline="always", cache=True)
def differentiated(fate_draw, ip):
    """``(kind, counter, code)`` of an activated B cell that differentiates: memory B when
    ``fate_draw`` falls below the memory-fate threshold, else a plasmablast."""
    if fate_draw < nb.uint64(ip[IP_THR_MEMORY_FATE]):
        return MEMORY_B, nb.int16(0), CONV_ACTIVATED_TO_MEMORY
    return PLASMABLAST, nb.int16(0), CONV_ACTIVATED_TO_PLASMABLAST


@nb.njit(inline="always", cache=True)
def division_threshold(k, state, counter, thr_divide, ip):
    """Per-step division threshold of a cell of kind ``k`` (0: it cannot divide now).

    Activated B cells divide while they have divisions left, CAR-T cells while stimulated
    (``counter > 0``) and below their generation limit; other kinds at their homeostatic
    rate (``thr_divide``).
    """
    if k == ACTIVATED_B:
        if counter <= 0:
            return nb.uint64(0)
        return nb.uint64(ip[IP_THR_GC_DIVIDE])
    if k == CAR_T:
        if car_t_generation(state) >= ip[IP_CAR_MAX_GENERATIONS] or counter <= 0:
            return nb.uint64(0)
        return nb.uint64(ip[IP_THR_CAR_DIVIDE])
    return nb.uint64(thr_divide[k])


@nb.njit(inline="always", cache=True)
def daughter_states(k, state, counter, joins_memory):
    """``(parent state, daughter state, counter of both)`` after a cell of kind ``k``
    divides: an activated B cell spends one division (its daughter has as many left); a
    CAR-T cell goes up a generation and its daughter joins the memory pool when
    ``joins_memory``, or leaves it otherwise."""
    if k == ACTIVATED_B:
        counter = counter - 1
    daughter = state
    if k == CAR_T:
        state = next_generation(state)
        if joins_memory:
            daughter = state | STATE_CAR_T_MEMORY
        else:
            daughter = state & ~STATE_CAR_T_MEMORY
    return state, daughter, counter


# --------------------------------------------------------------------------- array rules


@nb.njit(cache=True)
def kill_proposal(i, seed, step, L, uid, kind, state, x, y, alive, car_mask, occ, markers, ip):
    """Victim slot a CAR-T cell ``i`` attacks this step, and its key; ``(-1, 0)`` for none.

    The cell counts the live neighbours bearing any of its target markers; with the kill
    probability it attacks one of them chosen at random.
    """
    if alive[i] == 0 or kind[i] != CAR_T:
        return -1, 0
    u = uid[i]
    if rand53(seed, step, u, S_KILL) >= kill_threshold(state[i], ip):
        return -1, 0
    mask = car_mask[i]
    xi = x[i]
    yi = y[i]
    count = 0
    for d in range(8):
        s = neighbour_site(xi, yi, d, L)
        if s >= 0:
            j = occ[s]
            if j >= 0 and alive[j] != 0 and bears(markers, kind[j], mask):
                count += 1
    if count == 0:
        return -1, 0
    h = hash64(seed, step, u, S_KILL_PICK)
    pick = nb.int64((h & nb.uint64(0xFFFFFFFF)) % nb.uint64(count))
    for d in range(8):
        s = neighbour_site(xi, yi, d, L)
        if s >= 0:
            j = occ[s]
            if j >= 0 and alive[j] != 0 and bears(markers, kind[j], mask):
                if pick == 0:
                    return j, priority_key(h, u)
                pick -= 1
    return -1, 0  # unreachable


@nb.njit(cache=True)
def has_t_help(xi, yi, L, occ, kind, alive):
    """Whether a live T helper sits on a Moore neighbour of ``(xi, yi)``."""
    for d in range(8):
        s = neighbour_site(xi, yi, d, L)
        if s >= 0:
            j = occ[s]
            if j >= 0 and kind[j] == T_HELPER and alive[j] != 0:
                return True
    return False


@nb.njit(cache=True)
def antigen_at(spec, site, mol, ip):
    """Antigen seen by a B cell of ``spec``, as a look-up-table index (1/8 user units)."""
    n_spec = ip[IP_N_SPEC]
    if spec == 0:
        a = mol[ip[IP_LAYER_AUTOAG], site] >> _LUT_SHIFT
    elif spec == n_spec - 1:
        a = ip[IP_OTHER_AG]
    else:
        a = mol[ip[IP_LAYER_VACC0] + spec - 1, site] >> _LUT_SHIFT
    if a > _LUT_MAX:
        a = _LUT_MAX
    return a


@nb.njit(cache=True)
def activation_rule(i, seed, step, L, uid, kind, spec, x, y, alive, counter, occ, niche, mol,
                    ip, lut_naive, lut_memory):
    """New ``(kind, counter, conversion code)`` of cell ``i`` after activation and
    differentiation; the conversion code is 0 when nothing changes.

    - naive/memory B with antigen at its site and a T-helper neighbour becomes activated
      (probability from the antigen look-up table) with ``divisions`` divisions to go;
    - an activated B cell with no divisions left differentiates into memory B or
      plasmablast;
    - a plasmablast on a marrow niche becomes a long-lived plasma cell.
    """
    k = kind[i]
    c = counter[i]
    if alive[i] == 0:
        return k, c, 0
    u = uid[i]
    if k == NAIVE_B or k == MEMORY_B:
        site = y[i] * L + x[i]
        a = antigen_at(spec[i], site, mol, ip)
        thr = activation_threshold(k, a, lut_naive, lut_memory)
        if rand53(seed, step, u, S_ACTIVATE) < thr:
            if has_t_help(x[i], y[i], L, occ, kind, alive):
                return activated(k, ip)
    elif k == ACTIVATED_B:
        if c == 0 and rand53(seed, step, u, S_DIFFERENTIATE) < nb.uint64(ip[IP_THR_DIFFERENTIATE]):
            return differentiated(rand53(seed, step, u, S_FATE), ip)
    elif k == PLASMABLAST:
        site = y[i] * L + x[i]
        if niche[site] != 0 and rand53(seed, step, u, S_LLPC) < nb.uint64(ip[IP_THR_LLPC]):
            return LLPC, nb.int16(0), CONV_PLASMABLAST_TO_LLPC
    return k, c, 0


@nb.njit(cache=True)
def division_proposal(i, seed, step, L, uid, kind, state, x, y, alive, counter, occ, thr_divide,
                      ip):
    """Free neighbour site cell ``i`` divides into this step, and its key; ``(-1, 0)``.

    Activated B cells with divisions left and stimulated CAR-T cells below their generation
    limit divide at their own rates; other kinds divide at their homeostatic rate
    (``thr_divide``).
    """
    if alive[i] == 0:
        return -1, 0
    k = kind[i]
    u = uid[i]
    thr = division_threshold(k, state[i], counter[i], thr_divide, ip)
    stream = S_DIVIDE if k == ACTIVATED_B or k == CAR_T else S_HOMEO_DIVIDE
    if thr == 0 or rand53(seed, step, u, stream) >= thr:
        return -1, 0
    xi = x[i]
    yi = y[i]
    free = 0
    for d in range(8):
        s = neighbour_site(xi, yi, d, L)
        if s >= 0 and occ[s] < 0:
            free += 1
    if free == 0:
        return -1, 0
    h = hash64(seed, step, u, S_DIVIDE_PICK)
    pick = nb.int64((h & nb.uint64(0xFFFFFFFF)) % nb.uint64(free))
    for d in range(8):
        s = neighbour_site(xi, yi, d, L)
        if s >= 0 and occ[s] < 0:
            if pick == 0:
                return s, priority_key(h, u)
            pick -= 1
    return -1, 0  # unreachable


__all__ = [
    "kill_threshold",
    "activation_threshold",
    "activated",
    "differentiated",
    "division_threshold",
    "daughter_states",
    "kill_proposal",
    "activation_rule",
    "division_proposal",
    "has_t_help",
    "antigen_at",
    "S11",
]

"""Contact rules on the Moore neighbourhood: CAR-T killing, B-cell activation with T help,
differentiation, competition for marrow niches, and division into free neighbour sites."""

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
    T_HELPER,
    add_mol,
    bears,
    car_t_generation,
    neighbour_site,
    next_generation,
    priority_key,
)
from immunesim.kernels.move import record_proposal, won
from immunesim.model.cells import N_KINDS, STATE_CAR_T_MEMORY
from immunesim.model.params import (
    FRAC_BITS,
    IP_AUTOAB_SHARE,
    IP_CAR_MAX_GENERATIONS,
    IP_CAR_STIM_STEPS,
    IP_CYTO_PER_KILL,
    IP_GC_DIVISIONS,
    IP_LAYER_AUTOAG,
    IP_LAYER_CYTO,
    IP_LAYER_VACC0,
    IP_N_SELF,
    IP_N_SPEC,
    IP_OTHER_AG,
    IP_THR_CAR_DIVIDE,
    IP_THR_CAR_KILL,
    IP_THR_CAR_KILL_MEMORY,
    IP_THR_DIFFERENTIATE,
    IP_THR_DISPLACE,
    IP_THR_DISPLACE_SELF,
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
    S_DISPLACE,
    S_DISPLACE_PICK,
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
_FRAC_BITS = np.int64(FRAC_BITS)
_LUT_MAX = LUT_SIZE - 1


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
def stimulated(ip):
    """``(counter, cytokine)`` that a kill leaves: the attacking CAR-T cell is stimulated for
    the stimulation period, and the victim's site gets the cytokine of one kill."""
    return nb.int16(ip[IP_CAR_STIM_STEPS]), ip[IP_CYTO_PER_KILL]


@nb.njit(inline="always", cache=True)
def activation_threshold(k, a, lut_naive, lut_memory):
    """Per-step activation threshold of a naive or memory B cell (kind ``k``) that sees
    antigen index ``a`` (:func:`antigen_at`) and has T help."""
    return lut_naive[a] if k == NAIVE_B else lut_memory[a]


@nb.njit(inline="always", cache=True)
def activated(k, ip):
    """``(kind, counter)`` of a naive or memory B cell (kind ``k``) that activates: an
    activated B cell with the germinal-centre divisions to go."""
    return ACTIVATED_B, nb.int16(ip[IP_GC_DIVISIONS])


@nb.njit(inline="always", cache=True)
def differentiated(fate_draw, ip):
    """``(kind, counter)`` of an activated B cell that differentiates: memory B when
    ``fate_draw`` falls below the memory-fate threshold, else a plasmablast."""
    if fate_draw < nb.uint64(ip[IP_THR_MEMORY_FATE]):
        return MEMORY_B, nb.int16(0)
    return PLASMABLAST, nb.int16(0)


@nb.njit(inline="always", cache=True)
def displacement_threshold(spec, ip):
    """Per-step threshold at which a plasmablast of class ``spec`` displaces a long-lived
    plasma cell from a neighbouring niche: the autoreactive classes (below ``IP_N_SELF``)
    at their own, lower rate."""
    if spec < ip[IP_N_SELF]:
        return nb.uint64(ip[IP_THR_DISPLACE_SELF])
    return nb.uint64(ip[IP_THR_DISPLACE])


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

#: What :func:`random_neighbour` looks for: a live cell bearing a marker of a mask (a CAR-T
#: cell's victims), or a long-lived plasma cell on a niche (a plasmablast's rival).
MARKED = 0
RESIDENT = 1


@nb.njit(inline="always", cache=True)
def is_target(j, site, what, mask, c, s, p):
    """Whether slot ``j`` (the cell on ``site``, or -1) is what :func:`random_neighbour`
    looks for."""
    if j < 0 or c.alive[j] == 0:
        return False
    if what == MARKED:
        return bears(p.markers, c.kind[j], mask)
    return c.kind[j] == LLPC and s.niche[site] != 0


@nb.njit(inline="always", cache=True)
def random_neighbour(xi, yi, h, what, mask, t, c, s, p):
    """Slot of one of the Moore neighbours of ``(xi, yi)`` that are targets
    (:func:`is_target`), chosen with the low 32 bits of the draw ``h``; -1 for none."""
    count = 0
    for d in range(8):
        site = neighbour_site(xi, yi, d, t.L)
        if site >= 0 and is_target(s.occ[site], site, what, mask, c, s, p):
            count += 1
    if count == 0:
        return -1
    pick = nb.int64((h & nb.uint64(0xFFFFFFFF)) % nb.uint64(count))
    for d in range(8):
        site = neighbour_site(xi, yi, d, t.L)
        if site >= 0 and is_target(s.occ[site], site, what, mask, c, s, p):
            if pick == 0:
                return s.occ[site]
            pick -= 1
    return -1  # unreachable


@nb.njit(inline="always", cache=True)
def kill_proposal(i, t, c, s, p):
    """Victim slot a CAR-T cell ``i`` attacks this step, and its key; ``(-1, 0)`` for none.

    The cell counts the live neighbours bearing any of its target markers; with the kill
    probability it attacks one of them chosen at random.
    """
    if c.alive[i] == 0 or c.kind[i] != CAR_T:
        return -1, 0
    u = c.uid[i]
    if rand53(t.seed, t.step, u, S_KILL) >= kill_threshold(c.state[i], p.ip):
        return -1, 0
    h = hash64(t.seed, t.step, u, S_KILL_PICK)
    j = random_neighbour(c.x[i], c.y[i], h, MARKED, c.car_mask[i], t, c, s, p)
    return (j, priority_key(h, u)) if j >= 0 else (-1, 0)


@nb.njit(inline="always", cache=True)
def displace_proposal(i, t, c, s, p):
    """Resident plasma cell a plasmablast ``i`` displaces this step, and its key; ``(-1, 0)``
    for none.

    With its class's displacement probability the plasmablast picks at random one of the
    long-lived plasma cells on niches among its Moore neighbours.
    """
    if c.alive[i] == 0 or c.kind[i] != PLASMABLAST:
        return -1, 0
    thr = displacement_threshold(c.spec[i], p.ip)
    u = c.uid[i]
    if thr == 0 or rand53(t.seed, t.step, u, S_DISPLACE) >= thr:
        return -1, 0
    h = hash64(t.seed, t.step, u, S_DISPLACE_PICK)
    j = random_neighbour(c.x[i], c.y[i], h, RESIDENT, 0, t, c, s, p)
    return (j, priority_key(h, u)) if j >= 0 else (-1, 0)


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
    """Antigen seen by a B cell of ``spec``, as a look-up-table index (1/8 user units): the
    autoantigen for ``self``, its share of it (``IP_AUTOAB_SHARE``) for a further
    autoantibody, the vaccine's antigen for a vaccine class, a constant for ``other``."""
    n_spec = ip[IP_N_SPEC]
    n_self = ip[IP_N_SELF]
    if spec == 0:
        a = mol[ip[IP_LAYER_AUTOAG], site] >> _LUT_SHIFT
    elif spec < n_self:
        a = ((mol[ip[IP_LAYER_AUTOAG], site] * ip[IP_AUTOAB_SHARE]) >> _FRAC_BITS) >> _LUT_SHIFT
    elif spec == n_spec - 1:
        a = ip[IP_OTHER_AG]
    else:
        a = mol[ip[IP_LAYER_VACC0] + spec - n_self, site] >> _LUT_SHIFT
    if a > _LUT_MAX:
        a = _LUT_MAX
    return a


@nb.njit(inline="always", cache=True)
def activation_rule(i, t, c, s, p):
    """New ``(kind, counter)`` of cell ``i`` after activation and differentiation.

    - naive/memory B with antigen at its site and a T-helper neighbour becomes activated
      (probability from the antigen look-up table) with ``divisions`` divisions to go;
    - an activated B cell with no divisions left differentiates into memory B or
      plasmablast;
    - a plasmablast on a marrow niche becomes a long-lived plasma cell.
    """
    k = c.kind[i]
    n = c.counter[i]
    if c.alive[i] == 0:
        return k, n
    u = c.uid[i]
    ip = p.ip
    if k == NAIVE_B or k == MEMORY_B:
        site = c.y[i] * t.L + c.x[i]
        a = antigen_at(c.spec[i], site, s.mol, ip)
        thr = activation_threshold(k, a, p.lut_naive, p.lut_memory)
        if rand53(t.seed, t.step, u, S_ACTIVATE) < thr:
            if has_t_help(c.x[i], c.y[i], t.L, s.occ, c.kind, c.alive):
                return activated(k, ip)
    elif k == ACTIVATED_B:
        if n == 0 and rand53(t.seed, t.step, u, S_DIFFERENTIATE) < nb.uint64(
            ip[IP_THR_DIFFERENTIATE]
        ):
            return differentiated(rand53(t.seed, t.step, u, S_FATE), ip)
    elif k == PLASMABLAST:
        site = c.y[i] * t.L + c.x[i]
        if s.niche[site] != 0 and rand53(t.seed, t.step, u, S_LLPC) < nb.uint64(ip[IP_THR_LLPC]):
            return LLPC, nb.int16(0)
    return k, n


@nb.njit(inline="always", cache=True)
def division_proposal(i, t, c, s, p):
    """Free neighbour site cell ``i`` divides into this step, and its key; ``(-1, 0)``.

    Activated B cells with divisions left and stimulated CAR-T cells below their generation
    limit divide at their own rates; other kinds divide at their homeostatic rate
    (``thr_divide``).
    """
    if c.alive[i] == 0:
        return -1, 0
    k = c.kind[i]
    u = c.uid[i]
    thr = division_threshold(k, c.state[i], c.counter[i], p.thr_divide, p.ip)
    stream = S_DIVIDE if k == ACTIVATED_B or k == CAR_T else S_HOMEO_DIVIDE
    if thr == 0 or rand53(t.seed, t.step, u, stream) >= thr:
        return -1, 0
    xi = c.x[i]
    yi = c.y[i]
    free = 0
    for d in range(8):
        site = neighbour_site(xi, yi, d, t.L)
        if site >= 0 and s.occ[site] < 0:
            free += 1
    if free == 0:
        return -1, 0
    h = hash64(t.seed, t.step, u, S_DIVIDE_PICK)
    pick = nb.int64((h & nb.uint64(0xFFFFFFFF)) % nb.uint64(free))
    for d in range(8):
        site = neighbour_site(xi, yi, d, t.L)
        if site >= 0 and s.occ[site] < 0:
            if pick == 0:
                return site, priority_key(h, u)
            pick -= 1
    return -1, 0  # unreachable


# --------------------------------------------------------------------------- phase bodies


@nb.njit(inline="always", cache=True)
def propose_kill(i, t, c, s, p):
    """CAR-T cell ``i`` proposes the victim it attacks."""
    return record_proposal(c, i, kill_proposal(i, t, c, s, p))


@nb.njit(inline="always", cache=True)
def apply_kill(i, t, c, s, p):
    """The attacker that won its victim kills it: the victim dies, the attacker is
    stimulated and the victim's site gets the kill's cytokine (:func:`stimulated`). Tallies
    one kill."""
    if not won(i, c, s):
        return 0, 0
    v = c.want[i]
    counter, cytokine = stimulated(p.ip)
    c.alive[v] = 0
    c.counter[i] = counter
    add_mol(s, p.ip[IP_LAYER_CYTO], c.y[v] * t.L + c.x[v], cytokine)
    return 0, 1


@nb.njit(inline="always", cache=True)
def propose_displace(i, t, c, s, p):
    """Plasmablast ``i`` proposes the resident plasma cell it displaces."""
    return record_proposal(c, i, displace_proposal(i, t, c, s, p))


@nb.njit(inline="always", cache=True)
def apply_displace(i, t, c, s, p):
    """The plasmablast that won its resident takes its niche: the two cells exchange sites,
    the plasmablast becomes a long-lived plasma cell there and the displaced cell dies (it
    leaves the plasmablast's old site at compaction). Tallies one displacement."""
    if not won(i, c, s):
        return 0, 0
    v = c.want[i]
    here = c.y[i] * t.L + c.x[i]
    there = c.y[v] * t.L + c.x[v]
    c.x[v] = c.x[i]
    c.y[v] = c.y[i]
    c.alive[v] = 0
    s.occ[here] = v
    c.x[i] = there % t.L
    c.y[i] = there // t.L
    c.kind[i] = LLPC
    c.counter[i] = 0
    s.occ[there] = i
    return 0, 1


@nb.njit(inline="always", cache=True)
def activate(i, t, c, s, p):
    """Cell ``i`` activates or differentiates (:func:`activation_rule`); a change of kind is
    tallied in bin ``old * N_KINDS + new`` (the ledger's conversions)."""
    k, n = activation_rule(i, t, c, s, p)
    old = c.kind[i]
    if k == old:
        return 0, 0
    c.kind[i] = k
    c.counter[i] = n
    return nb.int64(old) * N_KINDS + k, 1


@nb.njit(inline="always", cache=True)
def propose_division(i, t, c, s, p):
    """Cell ``i`` proposes the free site its daughter would take; tallies the proposals (at
    most that many daughters, the room the phase needs)."""
    proposal = division_proposal(i, t, c, s, p)
    record_proposal(c, i, proposal)
    return 0, nb.int64(proposal[0] >= 0)


__all__ = [
    "activate",
    "activated",
    "activation_rule",
    "activation_threshold",
    "antigen_at",
    "apply_displace",
    "apply_kill",
    "daughter_states",
    "differentiated",
    "displace_proposal",
    "displacement_threshold",
    "division_proposal",
    "division_threshold",
    "has_t_help",
    "is_target",
    "kill_proposal",
    "kill_threshold",
    "propose_displace",
    "propose_division",
    "propose_kill",
    "random_neighbour",
    "stimulated",
]

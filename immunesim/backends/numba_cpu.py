"""The numba CPU backend: maps the scalar rules over cells and sites.

Per-cell and per-site rules run in ``prange`` loops wherever they are race-free (each cell
writes only its own slot and its own site). Conflicts (two cells proposing one site or one
victim) are resolved by a serial scatter-min of priority keys, which gives the same winner
whatever the order or the number of threads. Births take slots in index order (a serial
pass, i.e. a prefix sum), so uids do not depend on threads either.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from immunesim.kernels.common import (
    ACTIVATED_B,
    CAR_T,
    MEMORY_B,
    NAIVE_B,
    PLASMABLAST,
)
from immunesim.kernels.contact import (
    CONV_ACTIVATED_TO_MEMORY,
    CONV_ACTIVATED_TO_PLASMABLAST,
    CONV_MEMORY_TO_ACTIVATED,
    CONV_NAIVE_TO_ACTIVATED,
    CONV_PLASMABLAST_TO_LLPC,
    activation_rule,
    division_proposal,
    kill_proposal,
)
from immunesim.kernels.lifecycle import (
    PRODUCE_NAIVE_B,
    PRODUCE_T_HELPER,
    depleted,
    dies,
    production_at,
    secretion,
)
from immunesim.kernels.molecules import circulate_site, diffuse_decay, portion, react_site
from immunesim.kernels.move import move_proposal
from immunesim.kernels.slots import copy_cell, newborn, place_daughter, write_cell
from immunesim.model.cells import STATE_CAR_T_MEMORY, Kind
from immunesim.model.params import (
    FX_DIFFUSION,
    IP_CAR_STIM_STEPS,
    IP_CYTO_PER_KILL,
    IP_LAYER_CYTO,
    IP_THR_CAR_MEMORY,
)

CLAIM_FREE = np.iinfo(np.int64).max
_LLPC = int(Kind.LLPC)
_T_HELPER = int(Kind.T_HELPER)

# Ledger columns.
BORN, DIED, CONV_IN, CONV_OUT = 0, 1, 2, 3

_opts = dict(cache=True, parallel=True)


# --------------------------------------------------------------------------- conflicts


@nb.njit(cache=True)
def _scatter_min(n, want, key, claim):
    """``claim[want[i]] = min(claim[want[i]], key[i])`` over ``i < n`` (order-free)."""
    for i in range(n):
        t = want[i]
        if t >= 0 and key[i] < claim[t]:
            claim[t] = key[i]


@nb.njit(**_opts)
def _release_claims(n, want, claim):
    for i in nb.prange(n):
        t = want[i]
        if t >= 0:
            claim[t] = CLAIM_FREE


# --------------------------------------------------------------------------- therapy


@nb.njit(**_opts)
def _deplete(n, seed, step, L, uid, kind, x, y, alive, zone, markers, target_mask, thr_zone):
    """Kill every live cell bearing ``target_mask`` with its zone's probability; returns the
    number killed."""
    killed = 0
    for i in nb.prange(n):
        z = zone[y[i] * L + x[i]]
        if depleted(i, seed, step, uid, kind, z, alive, markers, target_mask, thr_zone):
            alive[i] = 0
            killed += 1
    return killed


def deplete(st, p, seed, step, target_mask, thr_zone):
    """Therapy depletion of cells bearing ``target_mask``; ``thr_zone``: uint64[3]
    per-zone kill thresholds. Returns the number killed."""
    return _deplete(st.n, seed, step, st.L, st.uid, st.kind, st.x, st.y, st.alive, st.zone,
                    p.markers, np.uint8(target_mask), thr_zone)


# --------------------------------------------------------------------------- production


@nb.njit(**_opts)
def _production_flags(n_sites, seed, step, occ, zone, thr_produce, thr_t_helper, flag):
    for s in nb.prange(n_sites):
        flag[s] = production_at(s, seed, step, occ, zone, thr_produce, thr_t_helper)


@nb.njit(cache=True)
def _append_births(n, next_uid, L, n_sites, seed, step, flag, spec_cum, uid, kind, state,
                   spec, x, y, age, counter, car_mask, alive, occ, ledger, n_other_spec):
    for s in range(n_sites):
        code = flag[s]
        if code == PRODUCE_NAIVE_B or code == PRODUCE_T_HELPER:
            k, sp = newborn(code, seed, step, s, spec_cum, n_other_spec)
            write_cell(n, next_uid, k, 0, sp, s, L, 0, 0, uid, kind, state, spec, x, y, age,
                       counter, car_mask, alive, occ)
            ledger[k, 0] += 1
            n += 1
            next_uid += 1
    return n, next_uid


def produce(st, p, seed, step, thr_t_helper):
    """Naive B cells at free marrow sites, T helpers at free lymphoid sites."""
    n_sites = st.L * st.L
    _production_flags(n_sites, seed, step, st.occ, st.zone, np.uint64(p.thr_produce),
                      np.uint64(thr_t_helper), st.want)
    st.n, st.next_uid = _append_births(
        st.n, st.next_uid, st.L, n_sites, seed, step, st.want, p.spec_cum, st.uid, st.kind,
        st.state, st.spec, st.x, st.y, st.age, st.counter, st.car_mask, st.alive, st.occ,
        st.ledger, p.layers.n_spec - 1)


# --------------------------------------------------------------------------- movement


@nb.njit(**_opts)
def _move_proposals(n, seed, step, L, uid, kind, x, y, alive, occ, zone, toward, thr_move,
                    thr_homing, thr_stay, home, want, key):
    for i in nb.prange(n):
        t, kk = move_proposal(i, seed, step, L, uid, kind, x, y, alive, occ, zone, toward,
                              thr_move, thr_homing, thr_stay, home)
        want[i] = t
        key[i] = kk


@nb.njit(**_opts)
def _apply_moves(n, L, x, y, occ, want, key, claim):
    for i in nb.prange(n):
        t = want[i]
        if t >= 0 and claim[t] == key[i]:
            occ[y[i] * L + x[i]] = -1
            occ[t] = i
            x[i] = t % L
            y[i] = t // L


def move(st, p, seed, step):
    """Random walk with homing; one cell per site."""
    n = st.n
    _move_proposals(n, seed, step, st.L, st.uid, st.kind, st.x, st.y, st.alive, st.occ,
                    st.zone, st.toward, p.thr_move, p.thr_homing, p.thr_stay, p.home,
                    st.want, st.key)
    _scatter_min(n, st.want, st.key, st.claim)
    _apply_moves(n, st.L, st.x, st.y, st.occ, st.want, st.key, st.claim)
    _release_claims(n, st.want, st.claim)


# --------------------------------------------------------------------------- contact


@nb.njit(**_opts)
def _kill_proposals(n, seed, step, L, uid, kind, state, x, y, alive, car_mask, occ, markers, ip,
                    want, key):
    for i in nb.prange(n):
        v, kk = kill_proposal(i, seed, step, L, uid, kind, state, x, y, alive, car_mask, occ,
                              markers, ip)
        want[i] = v
        key[i] = kk


@nb.njit(**_opts)
def _apply_kills(n, L, x, y, alive, counter, want, key, claim, mol, ip):
    kills = 0
    stim = nb.int16(ip[IP_CAR_STIM_STEPS])
    cyto_l = ip[IP_LAYER_CYTO]
    per_kill = ip[IP_CYTO_PER_KILL]
    for i in nb.prange(n):
        v = want[i]
        if v >= 0 and claim[v] == key[i]:
            alive[v] = 0
            counter[i] = stim
            mol[cyto_l, y[v] * L + x[v]] += per_kill
            kills += 1
    return kills


def kill(st, p, seed, step):
    """CAR-T cells kill marker-bearing neighbours; each victim dies once, and the attacker
    with the lowest key is credited (stimulated). Returns the number of kills."""
    n = st.n
    _kill_proposals(n, seed, step, st.L, st.uid, st.kind, st.state, st.x, st.y, st.alive,
                    st.car_mask, st.occ, p.markers, p.ip, st.want, st.key)
    _scatter_min(n, st.want, st.key, st.claim)
    kills = _apply_kills(n, st.L, st.x, st.y, st.alive, st.counter, st.want, st.key,
                         st.claim, st.mol, p.ip)
    _release_claims(n, st.want, st.claim)
    return kills


@nb.njit(**_opts)
def _activate(n, seed, step, L, uid, kind, spec, x, y, alive, counter, occ, niche, mol, ip,
              lut_naive, lut_memory):
    c1 = 0
    c2 = 0
    c3 = 0
    c4 = 0
    c5 = 0
    for i in nb.prange(n):
        k, c, code = activation_rule(i, seed, step, L, uid, kind, spec, x, y, alive, counter,
                                     occ, niche, mol, ip, lut_naive, lut_memory)
        if code != 0:
            kind[i] = k
            counter[i] = c
            if code == CONV_NAIVE_TO_ACTIVATED:
                c1 += 1
            elif code == CONV_MEMORY_TO_ACTIVATED:
                c2 += 1
            elif code == CONV_ACTIVATED_TO_MEMORY:
                c3 += 1
            elif code == CONV_ACTIVATED_TO_PLASMABLAST:
                c4 += 1
            elif code == CONV_PLASMABLAST_TO_LLPC:
                c5 += 1
    return c1, c2, c3, c4, c5


def _tally(ledger, src, dst, count):
    ledger[src, CONV_OUT] += count
    ledger[dst, CONV_IN] += count


def activate(st, p, seed, step, lut_naive, lut_memory):
    """Activation with T help, differentiation, plasmablast to LLPC."""
    c = _activate(st.n, seed, step, st.L, st.uid, st.kind, st.spec, st.x, st.y, st.alive,
                  st.counter, st.occ, st.niche, st.mol, p.ip, lut_naive, lut_memory)
    _tally(st.ledger, NAIVE_B, ACTIVATED_B, c[0])
    _tally(st.ledger, MEMORY_B, ACTIVATED_B, c[1])
    _tally(st.ledger, ACTIVATED_B, MEMORY_B, c[2])
    _tally(st.ledger, ACTIVATED_B, PLASMABLAST, c[3])
    _tally(st.ledger, PLASMABLAST, _LLPC, c[4])


@nb.njit(**_opts)
def _division_proposals(n, seed, step, L, uid, kind, state, x, y, alive, counter, occ, thr_divide,
                        ip, want, key):
    for i in nb.prange(n):
        t, kk = division_proposal(i, seed, step, L, uid, kind, state, x, y, alive, counter, occ,
                                  thr_divide, ip)
        want[i] = t
        key[i] = kk


@nb.njit(cache=True)
def _append_daughters(n, next_uid, seed, step, L, want, key, claim, uid, kind, state, spec,
                      x, y, age, counter, car_mask, alive, occ, ledger, thr_car_memory):
    m = n
    for i in range(n):
        t = want[i]
        if t >= 0 and claim[t] == key[i]:
            k = place_daughter(i, m, next_uid, t, L, seed, step, thr_car_memory, uid, kind, state,
                               spec, x, y, age, counter, car_mask, alive, occ)
            ledger[k, 0] += 1
            m += 1
            next_uid += 1
    return m, next_uid


def divide(st, p, seed, step):
    """Activated B cells, stimulated CAR-T and homeostatic divisions into free sites."""
    n = st.n
    _division_proposals(n, seed, step, st.L, st.uid, st.kind, st.state, st.x, st.y, st.alive,
                        st.counter, st.occ, p.thr_divide, p.ip, st.want, st.key)
    _scatter_min(n, st.want, st.key, st.claim)
    st.n, st.next_uid = _append_daughters(
        n, st.next_uid, seed, step, st.L, st.want, st.key, st.claim, st.uid, st.kind,
        st.state, st.spec, st.x, st.y, st.age, st.counter, st.car_mask, st.alive, st.occ,
        st.ledger, np.uint64(p.ip[IP_THR_CAR_MEMORY]))
    _release_claims(n, st.want, st.claim)


# --------------------------------------------------------------------------- molecules


@nb.njit(**_opts)
def _secrete(n, L, kind, spec, x, y, alive, mol, ip):
    for i in nb.prange(n):
        if alive[i] != 0:
            amount = secretion(kind[i], ip)
            if amount > 0:
                mol[spec[i], y[i] * L + x[i]] += amount


@nb.njit(**_opts)
def _diffuse_decay(L, n_layers, src, dst, diffuses, decay, d, circulate, partial):
    """Diffusion then decay of every layer into ``dst``; ``partial[layer, row]`` gets the
    row's sum of what each site gives to the circulation."""
    for r in nb.prange(n_layers * L):
        layer = r // L
        ys = r - layer * L
        dd = d if diffuses[layer] != 0 else 0
        dec = decay[layer]
        c = circulate[layer]
        row = src[layer, ys * L : ys * L + L]
        north = src[layer, (ys - 1) * L : ys * L] if ys > 0 else row
        south = src[layer, (ys + 1) * L : (ys + 2) * L] if ys < L - 1 else row
        has_n = 1 if ys > 0 else 0
        has_s = 1 if ys < L - 1 else 0
        out = dst[layer, ys * L : ys * L + L]
        given = 0
        for xs in range(L):
            q_w = row[xs - 1] if xs > 0 else 0
            q_e = row[xs + 1] if xs < L - 1 else 0
            q_n = north[xs] * has_n
            q_s = south[xs] * has_s
            n_nb = has_n + has_s + (1 if xs > 0 else 0) + (1 if xs < L - 1 else 0)
            q = diffuse_decay(row[xs], q_w, q_e, q_n, q_s, n_nb, dd, dec)
            out[xs] = q
            given += portion(q, c)
        partial[layer, ys] = given


@nb.njit(**_opts)
def _circulate_react(n_sites, mol, circulate, share, rest, zone, ip, fx, fp):
    n_layers = mol.shape[0]
    n_rows = (n_sites + 1023) // 1024
    for r in nb.prange(n_layers * n_rows):
        layer = r // n_rows
        c = circulate[layer]
        if c > 0:
            first = (r - layer * n_rows) * 1024
            last = min(first + 1024, n_sites)
            sh = share[layer]
            rs = rest[layer]
            values = mol[layer]
            for s in range(first, last):
                values[s] = circulate_site(values[s], c, sh, 1 if s < rs else 0)
    for s in nb.prange(n_sites):
        react_site(s, mol, zone, ip, fx, fp)


def molecules(st, p):
    """Secretion, diffusion and decay, exchange with the circulation, reactions.

    The circulation pool of a layer is the exact integer sum of what every site gives, so
    it does not depend on the order of the sum; it is shared equally, the remainder going
    one unit each to the lowest site indices.
    """
    _secrete(st.n, st.L, st.kind, st.spec, st.x, st.y, st.alive, st.mol, p.ip)
    n_layers = st.mol.shape[0]
    n_sites = st.L * st.L
    partial = np.empty((n_layers, st.L), np.int64)
    _diffuse_decay(st.L, n_layers, st.mol, st.mol_next, p.diffuses, p.decay,
                   p.fx[FX_DIFFUSION], p.circulate, partial)
    st.mol, st.mol_next = st.mol_next, st.mol
    pool = partial.sum(axis=1)
    share = pool // n_sites
    rest = pool - share * n_sites
    _circulate_react(n_sites, st.mol, p.circulate, share, rest, st.zone, p.ip, p.fx, p.fp)


# --------------------------------------------------------------------------- death


@nb.njit(**_opts)
def _death(n, seed, step, uid, kind, state, alive, age, counter, thr_death):
    for i in nb.prange(n):
        if dies(i, seed, step, uid, kind, state, alive, thr_death):
            alive[i] = 0
        age[i] += 1
        if kind[i] == CAR_T and counter[i] > 0:
            counter[i] -= 1


@nb.njit(cache=True)
def _compact(n, L, uid, kind, state, spec, x, y, age, counter, car_mask, alive, occ, ledger):
    w = 0
    for i in range(n):
        s = y[i] * L + x[i]
        if alive[i] != 0:
            if w != i:
                copy_cell(i, w, uid, kind, state, spec, x, y, age, counter, car_mask, uid, kind,
                          state, spec, x, y, age, counter, car_mask, alive)
            occ[s] = w
            w += 1
        else:
            occ[s] = -1
            ledger[kind[i], 1] += 1
    return w


def death(st, p, seed, step):
    """Deaths by lifespan, then removal of every cell that died this step."""
    _death(st.n, seed, step, st.uid, st.kind, st.state, st.alive, st.age, st.counter,
           p.thr_death)
    compact(st)


def compact(st):
    """Remove dead cells, keeping slot order, and count their deaths in the ledger."""
    st.n = _compact(st.n, st.L, st.uid, st.kind, st.state, st.spec, st.x, st.y, st.age,
                    st.counter, st.car_mask, st.alive, st.occ, st.ledger)


# --------------------------------------------------------------------------- observation


@nb.njit(cache=True)
def _count(n, L, kind, state, spec, x, y, alive, zone, out):
    """out[kind_class, spec, zone] += 1 for live cells (class 7: memory CAR-T)."""
    for i in range(n):
        if alive[i] != 0:
            k = kind[i]
            if k == CAR_T and (state[i] & STATE_CAR_T_MEMORY) != 0:
                k = 7
            out[k, spec[i], zone[y[i] * L + x[i]]] += 1


def count_cells(st, p) -> np.ndarray:
    """Cell counts, int64[N_KINDS + 1, n_spec, 3] by kind class, specificity and zone."""
    out = np.zeros((8, p.layers.n_spec, 3), np.int64)
    _count(st.n, st.L, st.kind, st.state, st.spec, st.x, st.y, st.alive, st.zone, out)
    return out


# --------------------------------------------------------------------------- host side

#: Array module of the state's arrays.
xp = np


def is_available() -> bool:
    return True


def auto_eligible() -> bool:
    return True


def describe() -> str:
    return f"CPU, {nb.get_num_threads()} numba threads"


def prepare(st, p):
    """The state and parameters as the kernels take them: on the CPU, as they are."""
    return st, p


def to_host(a) -> np.ndarray:
    return a


def synchronize() -> None:
    """Kernels return when they are done: nothing to wait for."""

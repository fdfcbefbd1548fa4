"""The CUDA backend: numba-cuda kernels on CuPy arrays, compiled from the same scalar rules.

Every kernel here calls the rule functions of :mod:`immunesim.kernels` (numba compiles an
``@njit`` function called from a ``@cuda.jit`` kernel as a device function), so there is no
second copy of the biology. What differs from :mod:`immunesim.backends.numba_cpu` is only how
the rules are mapped over cells and sites:

- one thread per cell or per site;
- conflicts (two cells wanting one site or one victim) go through ``cuda.atomic.min`` on
  the priority keys, which gives the same winner whatever the order of the atomics;
- births, daughters and compaction take their slots from a prefix sum (``cumsum``) over
  sites or parents in index order, so uids and slots are those of the CPU's serial passes;
- counts (ledger, kills, cell counts) are integer atomic adds, exact and order-free; the
  circulation pool is an exact integer sum of per-thread partial sums.

So a run gives the same bits as on the CPU. The host reads back four integers per step: the
number of cells after production, division and compaction (they size the next launches) and
the T-helper count, which sets the production rate (a float computation kept on the host so
that it rounds as on the CPU). Everything else stays on the device until a sampling step.

Without a GPU, the backend runs under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)
with numpy arrays standing in for CuPy: the same kernel code, executed by Python threads,
for tests on small lattices. ``auto`` never picks the simulator.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import numba as nb
import numpy as np
from numba import cuda

from immunesim.kernels.common import (
    CAR_T,
)
from immunesim.kernels.contact import activation_rule, division_proposal, kill_proposal
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
from immunesim.model.cells import STATE_CAR_T_MEMORY
from immunesim.model.params import (
    FX_DIFFUSION,
    IP_CAR_STIM_STEPS,
    IP_CYTO_PER_KILL,
    IP_LAYER_CYTO,
    IP_THR_CAR_MEMORY,
)
from immunesim.state import CLAIM_FREE, State

#: Whether numba's CUDA simulator stands in for a GPU (set before numba is imported).
SIMULATED = bool(nb.config.ENABLE_CUDASIM)

#: Threads per block (the simulator runs one Python thread per CUDA thread of a block).
TPB = 16 if SIMULATED else 256

# Ledger columns.
BORN, DIED, CONV_IN, CONV_OUT = 0, 1, 2, 3

#: Cell fields moved by compaction (everything but the scratch ``want``/``key``).
CELL_FIELDS = ("uid", "kind", "state", "spec", "x", "y", "age", "counter", "car_mask", "alive")

if SIMULATED:
    # The simulator runs kernels as Python and hands them wrapped arrays, which the compiled
    # rule functions cannot take: unwrap them on the way in. (On a GPU, numba compiles the
    # rules as device functions instead.) The kernels below are the same code either way.
    from numba.cuda.simulator.cudadrv.devicearray import FakeWithinKernelCUDAArray as _Wrapped

    def _unwrapping(rule):
        def call(*args):
            return rule(*[a._item._ary if isinstance(a, _Wrapped) else a for a in args])

        call.__name__ = rule.__name__
        return call

    (activation_rule, division_proposal, kill_proposal, depleted, dies, newborn, write_cell,
     copy_cell, place_daughter, production_at, react_site, move_proposal, secretion) = map(
        _unwrapping, (activation_rule, division_proposal, kill_proposal, depleted, dies,
                      newborn, write_cell, copy_cell, place_daughter, production_at, react_site,
                      move_proposal, secretion))


# --------------------------------------------------------------------------- device


def _cupy() -> ModuleType | None:
    """CuPy, when it is installed and sees a GPU."""
    if SIMULATED:
        return None
    try:
        import cupy

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


def real_gpu() -> bool:
    """Whether a real GPU is usable: numba-cuda and CuPy both see one (never the simulator:
    ``numba.cuda.is_available()`` is true under it)."""
    if SIMULATED:
        return False
    try:
        return bool(cuda.is_available()) and _cupy() is not None
    except Exception:
        return False


_cp = _cupy()
#: Array module of the device arrays: CuPy on a GPU, numpy under the simulator.
xp: ModuleType = _cp if _cp is not None else np

if _cp is not None:
    # CuPy's work and these kernels all go to the default stream, which orders them, so numba
    # need not synchronise the stream CuPy names for every array of every launch (its default
    # for foreign arrays, which would stall the GPU at each kernel).
    try:
        from numba.cuda.core import config as _cuda_config  # numba-cuda
    except ImportError:  # numba's built-in CUDA target
        from numba.core import config as _cuda_config
    _cuda_config.CUDA_ARRAY_INTERFACE_SYNC = False


def is_available() -> bool:
    """A real GPU, or numba's CUDA simulator when asked for explicitly."""
    return SIMULATED or real_gpu()


def auto_eligible() -> bool:
    """``auto`` picks this backend only on a real GPU."""
    return real_gpu()


def unavailable_reason() -> str:
    return ("no usable CUDA GPU (install the GPU extra with pip install 'immunesim[gpu]' on a "
            "machine with an NVIDIA GPU and driver, or set NUMBA_ENABLE_CUDASIM=1 to run the "
            "CUDA kernels in numba's simulator, slowly)")


def describe() -> str:
    """What this backend runs on."""
    if SIMULATED:
        return "numba CUDA simulator (numpy arrays)"
    if real_gpu():
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        major, minor = dev.compute_capability
        return f"{name} (compute capability {major}.{minor})"
    return "not available"


def to_host(a) -> np.ndarray:
    """A device array as a numpy array."""
    return _cp.asnumpy(a) if _cp is not None else np.asarray(a)


def synchronize() -> None:
    """Wait for every launched kernel (phase timings are only meaningful after it)."""
    if not SIMULATED:
        cuda.synchronize()


def prepare(st: State, p):
    """Copy a host state and its parameters to the device; returns ``(state, params)`` and
    leaves the host ones as they were.

    The activation look-up tables' probabilities stay on the host (the engine scales them
    there); every array a kernel reads goes to the device.
    """
    dev = {f.name: xp.array(getattr(st, f.name), copy=True) for f in dataclasses.fields(st)
           if isinstance(getattr(st, f.name), np.ndarray)}
    out = dataclasses.replace(st, **dev)
    out.aux = {
        "spare": {f: xp.empty_like(dev[f]) for f in CELL_FIELDS},
        "thr_car_memory": np.uint64(p.ip[IP_THR_CAR_MEMORY]),
        "diffusion": int(p.fx[FX_DIFFUSION]),
    }
    keep = {"lut_naive_p", "lut_memory_p"}
    pdev = {f.name: xp.asarray(getattr(p, f.name)) for f in dataclasses.fields(p)
            if isinstance(getattr(p, f.name), np.ndarray) and f.name not in keep}
    return out, dataclasses.replace(p, **pdev)


#: Most blocks of a launch. Every kernel is a grid-stride loop, so a capped grid gives the
#: same result: each thread then handles several items (under the simulator, which runs one
#: Python thread per CUDA thread, two blocks keep tests fast and still exercise several).
MAX_BLOCKS = 2 if SIMULATED else 4096


def _blocks(n: int) -> int:
    """Blocks of a launch over ``n`` items."""
    return min(max(1, (n + TPB - 1) // TPB), MAX_BLOCKS)


def _device_lut(st: State, lut: np.ndarray, name: str):
    """Device copy of an activation table, copied again only when the engine replaces it."""
    cached = st.aux.get(name)
    if cached is None or cached[0] is not lut:
        cached = (lut, xp.asarray(lut))
        st.aux[name] = cached
    return cached[1]


# --------------------------------------------------------------------------- conflicts


@cuda.jit
def _scatter_min(n, want, key, claim):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        t = want[i]
        if t >= 0:
            cuda.atomic.min(claim, t, key[i])


@cuda.jit
def _release_claims(n, want, claim):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        t = want[i]
        if t >= 0:
            claim[t] = CLAIM_FREE


def _resolve(st, n):
    if n > 0:
        _scatter_min[_blocks(n), TPB](n, st.want, st.key, st.claim)


def _release(st, n):
    if n > 0:
        _release_claims[_blocks(n), TPB](n, st.want, st.claim)


# --------------------------------------------------------------------------- therapy


@cuda.jit
def _deplete(n, seed, step, L, uid, kind, x, y, alive, zone, markers, target_mask, thr_zone,
             killed):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        z = zone[y[i] * L + x[i]]
        if depleted(i, seed, step, uid, kind, z, alive, markers, target_mask, thr_zone):
            alive[i] = 0
            cuda.atomic.add(killed, 0, 1)


def deplete(st, p, seed, step, target_mask, thr_zone):
    """Therapy depletion of cells bearing ``target_mask``; ``thr_zone``: uint64[3]
    per-zone kill thresholds. Returns the number killed (a device scalar: reading it
    waits for the kernel)."""
    killed = xp.zeros(1, np.int64)
    if st.n > 0:
        _deplete[_blocks(st.n), TPB](st.n, seed, step, st.L, st.uid, st.kind, st.x, st.y,
                                     st.alive, st.zone, p.markers, np.uint8(target_mask),
                                     xp.asarray(thr_zone), killed)
    return killed[0]


# --------------------------------------------------------------------------- production


@cuda.jit
def _production_flags(n_sites, seed, step, occ, zone, thr_produce, thr_t_helper, flag):
    for s in range(cuda.grid(1), n_sites, cuda.gridsize(1)):
        flag[s] = production_at(s, seed, step, occ, zone, thr_produce, thr_t_helper)


@cuda.jit
def _place_births(n_sites, n, next_uid, L, seed, step, flag, offset, spec_cum, uid, kind, state,
                  spec, x, y, age, counter, car_mask, alive, occ, ledger, n_other_spec):
    for s in range(cuda.grid(1), n_sites, cuda.gridsize(1)):
        code = flag[s]
        if code == PRODUCE_NAIVE_B or code == PRODUCE_T_HELPER:
            j = offset[s] - 1
            k, sp = newborn(code, seed, step, s, spec_cum, n_other_spec)
            write_cell(n + j, next_uid + j, k, 0, sp, s, L, 0, 0, uid, kind, state, spec, x, y,
                       age, counter, car_mask, alive, occ)
            cuda.atomic.add(ledger, (k, BORN), 1)


def produce(st, p, seed, step, thr_t_helper):
    """Naive B cells at free marrow sites, T helpers at free lymphoid sites; new cells take
    slots and uids in site order (a prefix sum over the sites)."""
    n_sites = st.L * st.L
    _production_flags[_blocks(n_sites), TPB](n_sites, seed, step, st.occ, st.zone,
                                             np.uint64(p.thr_produce), np.uint64(thr_t_helper),
                                             st.want)
    flag = st.want[:n_sites]
    offset = xp.cumsum((flag == PRODUCE_NAIVE_B) | (flag == PRODUCE_T_HELPER), dtype=np.int64)
    born = int(offset[-1])
    if born:
        _place_births[_blocks(n_sites), TPB](
            n_sites, st.n, st.next_uid, st.L, seed, step, st.want, offset, p.spec_cum, st.uid,
            st.kind, st.state, st.spec, st.x, st.y, st.age, st.counter, st.car_mask, st.alive,
            st.occ, st.ledger, p.layers.n_spec - 1)
    st.n += born
    st.next_uid += born


# --------------------------------------------------------------------------- movement


@cuda.jit
def _move_proposals(n, seed, step, L, uid, kind, x, y, alive, occ, zone, toward, thr_move,
                    thr_homing, thr_stay, home, want, key):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        t, kk = move_proposal(i, seed, step, L, uid, kind, x, y, alive, occ, zone, toward,
                              thr_move, thr_homing, thr_stay, home)
        want[i] = t
        key[i] = kk


@cuda.jit
def _apply_moves(n, L, x, y, occ, want, key, claim):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        t = want[i]
        if t >= 0 and claim[t] == key[i]:
            occ[y[i] * L + x[i]] = -1
            occ[t] = i
            x[i] = t % L
            y[i] = t // L


def move(st, p, seed, step):
    """Random walk with homing; one cell per site."""
    n = st.n
    if n == 0:
        return
    _move_proposals[_blocks(n), TPB](n, seed, step, st.L, st.uid, st.kind, st.x, st.y,
                                     st.alive, st.occ, st.zone, st.toward, p.thr_move,
                                     p.thr_homing, p.thr_stay, p.home, st.want, st.key)
    _resolve(st, n)
    _apply_moves[_blocks(n), TPB](n, st.L, st.x, st.y, st.occ, st.want, st.key, st.claim)
    _release(st, n)


# --------------------------------------------------------------------------- contact


@cuda.jit
def _kill_proposals(n, seed, step, L, uid, kind, state, x, y, alive, car_mask, occ, markers, ip,
                    want, key):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v, kk = kill_proposal(i, seed, step, L, uid, kind, state, x, y, alive, car_mask, occ,
                              markers, ip)
        want[i] = v
        key[i] = kk


@cuda.jit
def _apply_kills(n, L, x, y, alive, counter, want, key, claim, mol, ip, kills):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = want[i]
        if v >= 0 and claim[v] == key[i]:
            alive[v] = 0
            counter[i] = nb.int16(ip[IP_CAR_STIM_STEPS])
            mol[ip[IP_LAYER_CYTO], y[v] * L + x[v]] += ip[IP_CYTO_PER_KILL]
            cuda.atomic.add(kills, 0, 1)


def kill(st, p, seed, step):
    """CAR-T cells kill marker-bearing neighbours; each victim dies once, and the attacker
    with the lowest key is credited (stimulated). Returns the number of kills (a device
    scalar)."""
    n = st.n
    kills = xp.zeros(1, np.int64)
    if n == 0:
        return kills[0]
    _kill_proposals[_blocks(n), TPB](n, seed, step, st.L, st.uid, st.kind, st.state, st.x,
                                     st.y, st.alive, st.car_mask, st.occ, p.markers, p.ip,
                                     st.want, st.key)
    _resolve(st, n)
    _apply_kills[_blocks(n), TPB](n, st.L, st.x, st.y, st.alive, st.counter, st.want, st.key,
                                  st.claim, st.mol, p.ip, kills)
    _release(st, n)
    return kills[0]


@cuda.jit
def _activate(n, seed, step, L, uid, kind, spec, x, y, alive, counter, occ, niche, mol, ip,
              lut_naive, lut_memory, ledger):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        old = kind[i]
        k, c, code = activation_rule(i, seed, step, L, uid, kind, spec, x, y, alive, counter,
                                     occ, niche, mol, ip, lut_naive, lut_memory)
        if code != 0:
            kind[i] = k
            counter[i] = c
            cuda.atomic.add(ledger, (old, CONV_OUT), 1)
            cuda.atomic.add(ledger, (k, CONV_IN), 1)


def activate(st, p, seed, step, lut_naive, lut_memory):
    """Activation with T help, differentiation, plasmablast to LLPC."""
    if st.n == 0:
        return
    _activate[_blocks(st.n), TPB](st.n, seed, step, st.L, st.uid, st.kind, st.spec, st.x, st.y,
                                  st.alive, st.counter, st.occ, st.niche, st.mol, p.ip,
                                  _device_lut(st, lut_naive, "lut_naive"),
                                  _device_lut(st, lut_memory, "lut_memory"), st.ledger)


@cuda.jit
def _division_proposals(n, seed, step, L, uid, kind, state, x, y, alive, counter, occ,
                        thr_divide, ip, want, key):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        t, kk = division_proposal(i, seed, step, L, uid, kind, state, x, y, alive, counter, occ,
                                  thr_divide, ip)
        want[i] = t
        key[i] = kk


@cuda.jit
def _winners(n, want, key, claim, won):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        t = want[i]
        won[i] = 1 if t >= 0 and claim[t] == key[i] else 0


@cuda.jit
def _place_daughters(n, next_uid, seed, step, L, want, won, offset, uid, kind, state, spec, x,
                     y, age, counter, car_mask, alive, occ, ledger, thr_car_memory):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if won[i] != 0:
            j = offset[i] - 1
            k = place_daughter(i, n + j, next_uid + j, want[i], L, seed, step, thr_car_memory,
                               uid, kind, state, spec, x, y, age, counter, car_mask, alive, occ)
            cuda.atomic.add(ledger, (k, BORN), 1)


def divide(st, p, seed, step):
    """Activated B cells, stimulated CAR-T and homeostatic divisions into free sites;
    daughters take slots and uids in parent order (a prefix sum over the parents)."""
    n = st.n
    if n == 0:
        return
    _division_proposals[_blocks(n), TPB](n, seed, step, st.L, st.uid, st.kind, st.state, st.x,
                                         st.y, st.alive, st.counter, st.occ, p.thr_divide, p.ip,
                                         st.want, st.key)
    _resolve(st, n)
    won = xp.empty(n, np.int32)
    _winners[_blocks(n), TPB](n, st.want, st.key, st.claim, won)
    offset = xp.cumsum(won, dtype=np.int64)
    born = int(offset[-1])
    if born:
        _place_daughters[_blocks(n), TPB](
            n, st.next_uid, seed, step, st.L, st.want, won, offset, st.uid, st.kind, st.state,
            st.spec, st.x, st.y, st.age, st.counter, st.car_mask, st.alive, st.occ, st.ledger,
            st.aux["thr_car_memory"])
    _release(st, n)
    st.n += born
    st.next_uid += born


# --------------------------------------------------------------------------- molecules


@cuda.jit
def _secrete(n, L, kind, spec, x, y, alive, mol, ip):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if alive[i] == 0:
            continue
        amount = secretion(kind[i], ip)
        if amount > 0:
            mol[spec[i], y[i] * L + x[i]] += amount


@cuda.jit
def _diffuse_decay(L, src, dst, diffuses, decay, d, circulate, partial):
    """Diffusion then decay of layer ``blockIdx.y`` into ``dst``; ``partial[layer, t]`` gets
    what the sites of thread ``t`` give to the circulation."""
    layer = cuda.blockIdx.y
    dd = d if diffuses[layer] != 0 else 0
    dec = decay[layer]
    c = circulate[layer]
    given = nb.int64(0)
    t = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    for s in range(t, L * L, cuda.blockDim.x * cuda.gridDim.x):
        ys = s // L
        xs = s - ys * L
        q_w = src[layer, s - 1] if xs > 0 else 0
        q_e = src[layer, s + 1] if xs < L - 1 else 0
        q_n = src[layer, s - L] if ys > 0 else 0
        q_s = src[layer, s + L] if ys < L - 1 else 0
        n_nb = ((1 if xs > 0 else 0) + (1 if xs < L - 1 else 0) + (1 if ys > 0 else 0)
                + (1 if ys < L - 1 else 0))
        q = diffuse_decay(src[layer, s], q_w, q_e, q_n, q_s, n_nb, dd, dec)
        dst[layer, s] = q
        given += portion(q, c)
    partial[layer, t] = given


@cuda.jit
def _circulate(n_sites, mol, circulate, share, rest):
    layer = cuda.blockIdx.y
    c = circulate[layer]
    if c > 0:
        sh = share[layer]
        rs = rest[layer]
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        for s in range(start, n_sites, cuda.blockDim.x * cuda.gridDim.x):
            mol[layer, s] = circulate_site(mol[layer, s], c, sh, 1 if s < rs else 0)


@cuda.jit
def _react(n_sites, mol, zone, ip, fx, fp):
    for s in range(cuda.grid(1), n_sites, cuda.gridsize(1)):
        react_site(s, mol, zone, ip, fx, fp)


def molecules(st, p):
    """Secretion, diffusion and decay, exchange with the circulation, reactions (the same
    integer arithmetic as the CPU backend; the pool is an exact integer sum)."""
    if st.n > 0:
        _secrete[_blocks(st.n), TPB](st.n, st.L, st.kind, st.spec, st.x, st.y, st.alive,
                                     st.mol, p.ip)
    n_layers = st.mol.shape[0]
    n_sites = st.L * st.L
    grid = (_blocks(n_sites), n_layers)
    partial = xp.empty((n_layers, grid[0] * TPB), np.int64)
    _diffuse_decay[grid, TPB](st.L, st.mol, st.mol_next, p.diffuses, p.decay,
                              st.aux["diffusion"], p.circulate, partial)
    st.mol, st.mol_next = st.mol_next, st.mol
    pool = partial.sum(axis=1)
    share = pool // n_sites
    rest = pool - share * n_sites
    _circulate[grid, TPB](n_sites, st.mol, p.circulate, share, rest)
    _react[_blocks(n_sites), TPB](n_sites, st.mol, st.zone, p.ip, p.fx, p.fp)


# --------------------------------------------------------------------------- death


@cuda.jit
def _death(n, seed, step, uid, kind, state, alive, age, counter, thr_death):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if dies(i, seed, step, uid, kind, state, alive, thr_death):
            alive[i] = 0
        age[i] += 1
        if kind[i] == CAR_T and counter[i] > 0:
            counter[i] -= 1


@cuda.jit
def _compact(n, L, offset, uid, kind, state, spec, x, y, age, counter, car_mask, alive, occ,
             ledger, uid2, kind2, state2, spec2, x2, y2, age2, counter2, car_mask2, alive2):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        s = y[i] * L + x[i]
        if alive[i] != 0:
            w = offset[i] - 1
            copy_cell(i, w, uid, kind, state, spec, x, y, age, counter, car_mask, uid2, kind2,
                      state2, spec2, x2, y2, age2, counter2, car_mask2, alive2)
            occ[s] = w
        else:
            occ[s] = -1
            cuda.atomic.add(ledger, (kind[i], DIED), 1)


def death(st, p, seed, step):
    """Deaths by lifespan, then removal of every cell that died this step."""
    if st.n > 0:
        _death[_blocks(st.n), TPB](st.n, seed, step, st.uid, st.kind, st.state, st.alive,
                                   st.age, st.counter, p.thr_death)
    compact(st)


def compact(st):
    """Remove dead cells, keeping slot order (a prefix sum of the live ones gives each its
    new slot; the cells are written into the spare buffers, which then swap in), and count
    their deaths in the ledger."""
    n = st.n
    if n == 0:
        return
    offset = xp.cumsum(st.alive[:n], dtype=np.int64)
    spare = st.aux["spare"]
    _compact[_blocks(n), TPB](n, st.L, offset, *(getattr(st, f) for f in CELL_FIELDS), st.occ,
                              st.ledger, *(spare[f] for f in CELL_FIELDS))
    for f in CELL_FIELDS:
        old = getattr(st, f)
        setattr(st, f, spare[f])
        spare[f] = old
    st.n = int(offset[-1])


# --------------------------------------------------------------------------- observation


@cuda.jit
def _count(n, L, kind, state, spec, x, y, alive, zone, out):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if alive[i] == 0:
            continue
        k = kind[i]
        if k == CAR_T and (state[i] & STATE_CAR_T_MEMORY) != 0:
            k = 7
        cuda.atomic.add(out, (k, spec[i], zone[y[i] * L + x[i]]), 1)


def count_cells(st, p) -> np.ndarray:
    """Cell counts, int64[N_KINDS + 1, n_spec, 3] by kind class, specificity and zone."""
    out = xp.zeros((8, p.layers.n_spec, 3), np.int64)
    if st.n > 0:
        _count[_blocks(st.n), TPB](st.n, st.L, st.kind, st.state, st.spec, st.x, st.y,
                                   st.alive, st.zone, out)
    return to_host(out)


__all__ = ["SIMULATED", "is_available", "auto_eligible", "real_gpu", "describe", "prepare",
           "to_host", "synchronize", "xp"]

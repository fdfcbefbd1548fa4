"""The CUDA backend: the primitives of :mod:`immunesim.engine.contract` as numba-cuda
kernels on CuPy arrays.

A kernel is made once per phase body (numba compiles the ``@njit`` body and every rule it
calls as device functions), so the biology is the CPU's. What differs is only how the
bodies are mapped:

- one thread per cell or site, in grid-stride loops (the grid size does not change the
  result); a site map runs one grid row per molecular layer;
- tallies are integer atomic adds, spread over ``SLOTS`` columns to avoid contention and
  summed at the end: exact and order-free;
- conflicts go through ``cuda.atomic.min`` on the priority keys, which gives the same
  winner whatever the order of the atomics;
- appends take their slots from a prefix sum (``cumsum``) over the winners in index order,
  so slots and uids are those of the CPU's serial pass; compaction writes into spare
  arrays, which the state then swaps in.

So a run gives the same bits as on the CPU. The host reads back one integer per append
(the number of winners: it sizes later launches) and, in the engine, the T-helper count
that sets the production rate (a float computation kept on the host so that it rounds as
on the CPU). Everything else stays on the device until a sampling step.

Without a GPU, the backend runs under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)
with numpy arrays standing in for CuPy: the same kernel code, executed by Python threads,
for tests on small lattices. The state reaches the kernels as named tuples of arrays, which
the simulator hands over as they are, so the compiled bodies run on them directly. ``auto``
never picks the simulator.
"""

from __future__ import annotations

import dataclasses
import time
from types import ModuleType
from typing import Any

import numba as nb
import numpy as np
from numba import cuda

from immunesim.kernels import molecules
from immunesim.model.fields import Cells
from immunesim.model.params import MOL_MAX
from immunesim.state import empty_cells, slots_for, with_capacity

#: Whether numba's CUDA simulator stands in for a GPU (set before numba is imported; numba
#: makes its config attributes from the environment at import, unseen by type checkers).
SIMULATED = bool(nb.config.ENABLE_CUDASIM)  # type: ignore[attr-defined]

#: Threads per block (the simulator runs one Python thread per CUDA thread of a block).
TPB = 16 if SIMULATED else 256

#: Most blocks of a launch. Every kernel is a grid-stride loop, so a capped grid gives the
#: same result: each thread then handles several items (under the simulator, which runs one
#: Python thread per CUDA thread, two blocks keep tests fast and still exercise several).
MAX_BLOCKS = 2 if SIMULATED else 4096

#: Columns of a tally that atomic adds are spread over.
SLOTS = 4 if SIMULATED else 256


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
    return (
        "no usable CUDA GPU (install the GPU extra with pip install 'immunesim[gpu]' on a "
        "machine with an NVIDIA GPU and driver, or set NUMBA_ENABLE_CUDASIM=1 to run the "
        "CUDA kernels in numba's simulator, slowly)"
    )


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


def asarray(a):
    return xp.asarray(a)


def to_host(a) -> np.ndarray:
    """A device array as a numpy array."""
    return _cp.asnumpy(a) if _cp is not None else np.asarray(a)


def synchronize() -> None:
    """Wait for every launched kernel (phase timings are only meaningful after it)."""
    if not SIMULATED:
        cuda.synchronize()


def mark():
    """An event on the default stream, which the GPU reaches once the kernels launched
    before it are done (the host does not wait); the host's clock in the simulator, which
    runs each kernel as it is launched."""
    if _cp is None:
        return time.perf_counter()
    event = _cp.cuda.Event()
    event.record()
    return event


def seconds_between(start, end) -> float:
    """Seconds from mark ``start`` to mark ``end``, waiting for the GPU to reach ``end``."""
    if _cp is None:
        return end - start
    end.synchronize()
    return _cp.cuda.get_elapsed_time(start, end) / 1e3


def _on_device(tup):
    """A named tuple of host arrays with each array copied to the device."""
    return type(tup)(*(xp.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in tup))


def prepare(st, p):
    """Copy a host state and its parameters to the device; returns ``(state, params)`` and
    leaves the host ones as they were. The state gets spare cell arrays for compaction (as
    many slots as the cell arrays) and its diffusion buffer (:func:`diffusion_scratch`)."""
    cells = _on_device(st.cells)
    out = dataclasses.replace(
        st,
        cells=cells,
        sites=_on_device(st.sites),
        ledger=xp.array(st.ledger, copy=True),
        aux={},
    )
    out.aux["spare"] = Cells(*(xp.empty_like(a) for a in cells))
    diffusion_scratch(out)
    return out, dataclasses.replace(p, k=_on_device(p.k))


def spare_mol(state):
    """The GPU diffuses in place (:func:`diffuse`): no second copy of the layers."""
    return state.sites.mol


_MOL_MAX = np.int64(MOL_MAX)

#: Rows of one layer that a block of threads diffuses in place (:func:`diffuse`).
DIFFUSE_ROWS = molecules.gpu_diffuse_rows(SIMULATED)
#: Threads of such a block. They wait for each other at every row, which the simulator's
#: Python threads do slowly (some milliseconds a wait): there one thread does a block's
#: work without waiting, except in a test that sets more.
ROW_THREADS = 1 if SIMULATED else TPB


def _scratch(layers: int, L: int):
    return xp.empty(
        molecules.diffusion_buffer_shape(layers, L, DIFFUSE_ROWS, molecules.GPU_BUFFER_ROWS),
        np.int32,
    )


def diffusion_scratch(state):
    """int32[tasks, 5, L], a task per :data:`DIFFUSE_ROWS` rows of a layer: rows 0 and 1
    what the rows just above and below the task's rows send to their neighbours (read
    before any task writes), rows 2-4 what three consecutive rows of the task send, as it
    goes down its rows; kept in the state (``aux.halo``). A portion never exceeds the int32
    value it comes from."""
    buf = state.aux.get("halo")
    want = molecules.diffusion_buffer_shape(
        state.mol.shape[0], state.L, DIFFUSE_ROWS, molecules.GPU_BUFFER_ROWS
    )
    if buf is None or buf.shape != want:
        buf = state.aux["halo"] = _scratch(state.mol.shape[0], state.L)
    return buf


def reserve(state, count):
    """Grow the cell arrays and their spare ones when ``count`` more cells would not fit.
    Only a count on the host (a Python int: the infused dose, or :func:`append`'s count
    through its ``room``) is acted on; a map's tally (on the device; a numpy scalar in the
    simulator, treated alike) is left alone, so as not to wait for the device: the append
    that follows makes room once it has read its count."""
    if not isinstance(count, int):
        return
    need = state.n + int(count)
    if need > state.capacity:
        capacity = slots_for(need, state.L)
        state.cells = with_capacity(state.cells, state.n, capacity, xp)
        state.aux["spare"] = empty_cells(capacity, xp)


def spare_cells(state):
    """The spare cell arrays (compaction writes every live cell there, in parallel)."""
    return state.aux["spare"]


def _blocks(n: int) -> int:
    """Blocks of a launch over ``n`` items."""
    return min(max(1, (n + TPB - 1) // TPB), MAX_BLOCKS)


# --------------------------------------------------------------------------- kernels
#
# The kernels are written in numba's CUDA kernel language, whose intrinsics (``cuda.grid``,
# ``cuda.blockIdx``, ``cuda.atomic``) are Python objects with other signatures for a type
# checker: the lines that use them carry a ``type: ignore``.

_kernels: dict[tuple[Any, ...], Any] = {}


def _made(factory, *bodies):
    """The kernel ``factory`` makes around ``bodies``, made once per process."""
    key = (factory, *bodies)
    return _kernels[key] if key in _kernels else _kernels.setdefault(key, factory(*bodies))


@cuda.jit(device=True)
def _flush(acc, b, v, slot):
    """Add ``v`` to bin ``b`` of the tally (column ``slot``)."""
    if v != 0:
        cuda.atomic.add(acc, (b, slot), v)  # type: ignore[call-arg]


@cuda.jit(device=True)
def _tally(acc, slot, b0, v0, result):
    """Add a body's ``(bin, value)`` to a run of one bin (kept in registers), flushing the
    run to the tally when the bin changes; returns the run."""
    b, v = result
    if v != 0:
        if b != b0:
            _flush(acc, b0, v0, slot)
            b0 = b
            v0 = 0
        v0 += v
    return b0, v0


def _cell_map(body):
    @cuda.jit
    def kernel(n, acc, t, c, s, p):
        start = cuda.grid(1)  # type: ignore[call-arg, var-annotated]
        slot = start % SLOTS
        b0 = 0
        v0 = 0
        for i in range(start, n, cuda.gridsize(1)):
            b0, v0 = _tally(acc, slot, b0, v0, body(i, t, c, s, p))
        _flush(acc, b0, v0, slot)

    return kernel


def _site_map(body):
    @cuda.jit
    def kernel(acc, t, c, s, p):
        layer = cuda.blockIdx.y
        L = t.L
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x  # type: ignore[operator]
        slot = start % SLOTS
        b0 = 0
        v0 = 0
        for site in range(start, L * L, cuda.blockDim.x * cuda.gridDim.x):  # type: ignore[operator]
            y = site // L
            b0, v0 = _tally(acc, slot, b0, v0, body(layer, site, site - y * L, y, t, c, s, p))
        _flush(acc, b0, v0, slot)

    return kernel


def _winners(wins):
    @cuda.jit
    def kernel(n, flag, t, c, s, p):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):  # type: ignore[call-arg]
            flag[i] = 1 if wins(i, t, c, s, p) else 0

    return kernel


def _placing(place):
    @cuda.jit
    def kernel(n, flag, offset, acc, t, c, s, p):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):  # type: ignore[call-arg]
            if flag[i] != 0:
                b, v = place(i, offset[i] - 1, t, c, s, p)
                _flush(acc, b, v, i % SLOTS)

    return kernel


@cuda.jit
def _scatter_min(n, c, s):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):  # type: ignore[call-arg]
        w = c.want[i]
        if w >= 0:
            cuda.atomic.min(s.claim, w, c.key[i])


# --------------------------------------------------------------------------- primitives


def for_cells(body, n, t, c, s, p, bins=1):
    acc = xp.zeros((bins, SLOTS), np.int64)
    if n > 0:
        _made(_cell_map, body)[_blocks(n), TPB](n, acc, t, c, s, p)
    return acc.sum(axis=1)


def for_sites(body, layers, t, c, s, p, bins=1):
    acc = xp.zeros((bins, SLOTS), np.int64)
    _made(_site_map, body)[(_blocks(t.L * t.L), layers), TPB](acc, t, c, s, p)
    return acc.sum(axis=1)


def diffuse(t, c, s, p, layers, scratch=None):
    """One diffusion sub-step of every layer, written in place when ``t.dst`` is ``s.mol``:
    a kernel saves what the rows around each task's rows send (:func:`_rows_halo`), then a
    block of threads per task walks down its rows (:func:`_rows_diffuse`), the bits of
    :func:`immunesim.kernels.molecules.diffuse`. Returns what each layer gives to the
    circulation."""
    buf = _scratch(layers, t.L) if scratch is None else scratch
    tasks = buf.shape[0]
    blocks = tasks // layers
    acc = xp.zeros((layers, SLOTS), np.int64)
    _rows_halo[(_blocks(t.L), tasks), TPB](t, s, p, buf, blocks)
    _rows_diffuse[tasks, ROW_THREADS](t, s, p, buf, blocks, acc)
    return acc.sum(axis=1)


@cuda.jit(device=True)
def _task_rows(task, blocks, t, p):
    """``(layer, y0, y1, d)`` of a task: its layer, its rows ``y0 .. y1 - 1`` and the
    fraction of a site that layer sends to each neighbour."""
    layer = task // blocks
    y0 = (task - layer * blocks) * DIFFUSE_ROWS
    d = t.diffusion if p.diffuses[layer] != 0 else 0
    return layer, y0, min(t.L, y0 + DIFFUSE_ROWS), d


@cuda.jit
def _rows_halo(t, s, p, buf, blocks):
    """Rows 0 and 1 of each task's buffer: what the row above and the row below its rows
    send to each neighbour (0 beyond the lattice)."""
    task = cuda.blockIdx.y
    layer, y0, y1, d = _task_rows(task, blocks, t, p)
    L = t.L
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x  # type: ignore[operator]
    for x in range(start, L, cuda.blockDim.x * cuda.gridDim.x):  # type: ignore[operator]
        buf[task, 0, x] = molecules.portion_u32(s.mol[layer, (y0 - 1) * L + x], d) if y0 else 0
        buf[task, 1, x] = molecules.portion_u32(s.mol[layer, y1 * L + x], d) if y1 < L else 0


@cuda.jit
def _rows_diffuse(t, s, p, buf, blocks, acc):
    """A task's rows, one after the other, each written in place by the block's threads
    (a column each, in strides): what a row sends is saved before the row is written (rows
    2-4 of the buffer, in turn), and the threads wait for each other between the rows."""
    task = cuda.blockIdx.x
    layer, y0, y1, d = _task_rows(task, blocks, t, p)
    L = t.L
    decay = p.decay[layer] if t.last != 0 else 0
    circulate = p.circulate[layer] if t.last != 0 else 0
    tid: Any = cuda.threadIdx.x
    stride: Any = cuda.blockDim.x
    for x in range(tid, L, stride):
        buf[task, 2, x] = molecules.portion_u32(s.mol[layer, y0 * L + x], d)
    if stride > 1:  # the same for every thread of the block
        cuda.syncthreads()  # type: ignore[call-arg]
    gift = nb.int64(0)
    peak = nb.int64(0)
    for y in range(y0, y1):
        here = 2 + (y - y0) % 3
        below = 2 + (y - y0 + 1) % 3
        above = 2 + (y - y0 + 2) % 3 if y > y0 else 0
        for x in range(tid, L, stride):
            if y + 1 < y1:
                buf[task, below, x] = molecules.portion_u32(s.mol[layer, (y + 1) * L + x], d)
            else:
                buf[task, below, x] = buf[task, 1, x]
        if stride > 1:
            cuda.syncthreads()  # type: ignore[call-arg]
        vertical = (1 if y > 0 else 0) + (1 if y < L - 1 else 0)
        for x in range(tid, L, stride):
            got = nb.int64(buf[task, above, x]) + nb.int64(buf[task, below, x])
            if x > 0:
                got += nb.int64(buf[task, here, x - 1])
            if x < L - 1:
                got += nb.int64(buf[task, here, x + 1])
            n_nb = vertical + (1 if x > 0 else 0) + (1 if x < L - 1 else 0)
            site = y * L + x
            q = molecules.site_after(
                nb.int64(s.mol[layer, site]), nb.int64(buf[task, here, x]), n_nb, got, decay
            )
            peak = max(peak, q)
            q = min(q, _MOL_MAX)
            t.dst[layer, site] = q
            gift += molecules.portion_u32(q, circulate)  # q <= MOL_MAX
        if stride > 1:
            cuda.syncthreads()  # type: ignore[call-arg]
    if peak > _MOL_MAX:
        s.saturated[layer] = 1
    _flush(acc, layer, gift, tid % SLOTS)


def scatter_min(n, c, s):
    if n > 0:
        _scatter_min[_blocks(n), TPB](n, c, s)


def append(wins, place, n, t, c, s, p, bins=1, room=None):
    """Flags, their prefix sum, then a placing kernel; between them the count is read (the
    one wait for the device) and ``room(count)`` gives the arrays to place into."""
    acc = xp.zeros((bins, SLOTS), np.int64)
    if n == 0:
        return 0, acc.sum(axis=1)
    flag = xp.empty(n, np.int32)
    _made(_winners, wins)[_blocks(n), TPB](n, flag, t, c, s, p)
    offset = xp.cumsum(flag, dtype=np.int64)
    count = int(offset[-1])
    if count and room is not None:
        c = room(count)
    if count:
        _made(_placing, place)[_blocks(n), TPB](n, flag, offset, acc, t, c, s, p)
    return count, acc.sum(axis=1)


__all__ = [
    "SIMULATED",
    "append",
    "auto_eligible",
    "describe",
    "diffuse",
    "diffusion_scratch",
    "for_cells",
    "for_sites",
    "is_available",
    "mark",
    "prepare",
    "real_gpu",
    "reserve",
    "scatter_min",
    "seconds_between",
    "spare_cells",
    "spare_mol",
    "synchronize",
    "to_host",
    "xp",
]

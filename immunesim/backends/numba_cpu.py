"""The numba CPU backend: the primitives of :mod:`immunesim.engine.contract` as numba
kernels.

Maps run in ``prange`` loops over chunks of cells or rows of sites; a body writes only its
own cell and site (or a site it won), so they are race-free. Each chunk keeps its tally in
its own row, summed at the end (integer sums: the same whatever the threads). Conflicts
(two cells proposing one site or one victim) are resolved by a serial scatter-min of
priority keys, which gives the same winner whatever the order; appends are a serial pass in
index order (a prefix sum), so slots and uids do not depend on threads either.

A kernel is made once per body by a factory and cached on disk under the body's name
(:func:`immunesim._jit_cache.cache_kernel`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numba as nb
import numpy as np

from immunesim._jit_cache import cache_kernel
from immunesim.kernels import molecules
from immunesim.kernels.molecules import DIFFUSE_ROWS
from immunesim.state import slots_for, with_capacity

#: Cells per chunk of a cell map at least (a chunk's tally stays in registers), and the most
#: chunks of a map (each has its own row of the tally, summed at the end; a site map's
#: chunks are whole rows of sites).
CHUNK = 1024
MAX_CHUNKS = 256
#: Cell maps run serially up to this many cells (all maps do with one thread): on 2 cores
#: threads saved 3 s of a 22-s default run, and their kernels took 35 s to compile.
SERIAL_CELLS = 16384

#: Array module of the state's arrays.
xp = np

#: The parallel loops use ``prange`` and nothing else of numba's automatic parallelisation
#: (its other passes find nothing in them, and cost seconds of compilation per kernel).
_PRANGE_ONLY = {"prange": True} | dict.fromkeys(
    ("comprehension", "numpy", "reduction", "setitem", "stencil", "fusion", "inplace_binop"), False
)

#: The kernels made so far (numba dispatchers), and their :class:`_Direct` launchers.
_kernels: dict[tuple[Any, ...], Any] = {}


def _made(factory, *bodies):
    """The kernel ``factory`` makes around ``bodies``, compiled once per process."""
    key = (factory, *bodies)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = factory(*bodies)
        cache_kernel(kernel, *bodies)
        _kernels[key] = kernel
    return kernel


class _Direct:
    """A kernel called through its compiled entry point once its one signature is known.

    numba's dispatcher types every argument at every call, some 12 microseconds for the
    state's named tuples, more than a small map takes. A kernel here is launched with one
    set of argument types: the state's arrays have the dtypes of the field table, the
    parameters those of :func:`~immunesim.engine.parameters.build_params`, and each body
    its own launch tuple. So after the first call (through the dispatcher, which compiles
    or loads the kernel, and which is used for good if it made more than one overload) the
    entry point of the kernel's single overload is called directly, without checking the
    types again: a launch must pass the types of the first (C-contiguous arrays of the
    declared dtypes), or its arguments would be misread.
    """

    __slots__ = ("kernel", "entry")

    def __init__(self, kernel):
        self.kernel = kernel
        self.entry = None

    def __call__(self, *args):
        if self.entry is not None:
            return self.entry(*args)
        out = self.kernel(*args)
        overloads = list(self.kernel.overloads.values())
        self.entry = overloads[0].entry_point if len(overloads) == 1 else None
        return out


def _direct(factory, *bodies) -> _Direct:
    """:func:`_made`, called through its entry point."""
    key = ("direct", factory, *bodies)
    launcher = _kernels.get(key)
    if launcher is None:
        launcher = _kernels[key] = _Direct(_made(factory, *bodies))
    return launcher


# The serial loops release the GIL (``nogil``): simulations stepped in threads of one process
# (the app's browser tabs, each with one numba thread, which runs the serial loops) then use
# the cores together instead of taking turns. Their tallies are per thread (:class:`_Map`).
# A map is a parallel loop over chunks, each a call of a serial loop into which the body is
# inlined, compiled without numba's reference counting (``_nrt=False``: the loops allocate
# nothing, and counting the references of every array of the named tuples at every inlined
# call costs 15-30 ns an item). Inlined straight into a ``prange`` loop, a body's writes
# through the named tuples would be lost to numba's parallel dead-code elimination (numba
# 0.68). numba's type stubs know neither ``_nrt`` nor a dict of passes for ``parallel``,
# hence the ``type: ignore[call-overload]`` on those ``njit`` calls.


@nb.njit(inline="always", cache=True)
def _tally(acc, row, b0, v0, result):
    """Add a body's ``(bin, value)`` to a run of one bin (kept in registers), writing the
    run to ``acc[row]`` when the bin changes; returns the run."""
    b, v = result
    if v != 0:
        if b != b0:
            acc[row, b0] += v0
            b0 = b
            v0 = 0
        v0 += v
    return b0, v0


def _cell_chunk(body):
    def chunk(lo, hi, t, c, s, p, acc, row):
        acc[row, :] = 0
        b0 = 0
        v0 = 0
        for i in range(lo, hi):
            b0, v0 = _tally(acc, row, b0, v0, body(i, t, c, s, p))
        acc[row, b0] += v0

    return nb.njit(_nrt=False, nogil=True)(chunk)  # type: ignore[call-overload]


def _cell_map(body):
    chunk = _made(_cell_chunk, body)

    def kernel(n, t, c, s, p, acc):
        chunks, size = _chunks(n, CHUNK)
        for kk in nb.prange(chunks):
            k = nb.int64(kk)  # one signature for the chunk (parfors index unsigned)
            chunk(k * size, min(n, k * size + size), t, c, s, p, acc, k)
        _total(acc, chunks)

    return nb.njit(parallel=_PRANGE_ONLY)(kernel)  # type: ignore[call-overload]


def _row_chunk(body):
    def chunk(lo, hi, t, c, s, p, acc, row):
        acc[row, :] = 0
        L = t.L
        b0 = 0
        v0 = 0
        for r in range(lo, hi):
            layer = r // L
            y = r - layer * L
            for x in range(L):
                b0, v0 = _tally(acc, row, b0, v0, body(layer, y * L + x, x, y, t, c, s, p))
        acc[row, b0] += v0

    return nb.njit(_nrt=False, nogil=True)(chunk)  # type: ignore[call-overload]


def _site_map(body):
    chunk = _made(_row_chunk, body)

    def kernel(rows, t, c, s, p, acc):
        chunks, size = _chunks(rows, 1)
        for kk in nb.prange(chunks):
            k = nb.int64(kk)
            chunk(k * size, min(rows, k * size + size), t, c, s, p, acc, k)
        _total(acc, chunks)

    return nb.njit(parallel=_PRANGE_ONLY)(kernel)  # type: ignore[call-overload]


def _ordered(wins, place):
    def kernel(n, t, c, s, p, acc):
        j = 0
        for i in range(n):
            if wins(i, t, c, s, p):
                b, v = place(i, j, t, c, s, p)
                acc[b] += v
                j += 1
        return j

    return nb.njit(_nrt=False, nogil=True)(kernel)  # type: ignore[call-overload]


@nb.njit(inline="always", cache=True)
def _chunks(n, least):
    """``(chunks, size)`` splitting ``n`` items into at most ``MAX_CHUNKS`` chunks of at least
    ``least`` items."""
    chunks = min(max(1, (n + least - 1) // least), MAX_CHUNKS)
    return chunks, (n + chunks - 1) // chunks


@nb.njit(inline="always", cache=True)
def _total(acc, chunks):
    """Row ``MAX_CHUNKS`` of a tally: the sum of the chunks' rows."""
    for b in range(acc.shape[1]):
        total = 0
        for k in range(chunks):
            total += acc[k, b]
        acc[MAX_CHUNKS, b] = total


@nb.njit(cache=True, nogil=True)
def _scatter_min(n, c, s):
    for i in range(n):
        w = c.want[i]
        if w >= 0 and c.key[i] < s.claim[w]:
            s.claim[w] = c.key[i]


# --------------------------------------------------------------------------- primitives


class _Map:
    """A map of one body: a serial call of its chunk when one chunk covers the items (no
    threads to wake), the parallel kernel otherwise; the tally rows are kept between
    launches, one set per Python thread: simulations stepped in threads of one process
    (the app's browser tabs) must not write each other's tallies."""

    __slots__ = ("chunk", "kernel", "local")

    def __init__(self, chunk_factory, kernel_factory, body):
        self.chunk = _Direct(_made(chunk_factory, body))
        self.kernel = _Direct(_made(kernel_factory, body))
        self.local = threading.local()

    def __call__(self, items, serial, t, c, s, p, bins):
        tallies = getattr(self.local, "tallies", None)
        if tallies is None:
            tallies = self.local.tallies = {}
        acc = tallies.get(bins)
        if acc is None:
            acc = tallies[bins] = np.zeros((MAX_CHUNKS + 1, bins), np.int64)
        if serial or nb.get_num_threads() == 1:
            self.chunk(0, items, t, c, s, p, acc, MAX_CHUNKS)
        else:
            self.kernel(items, t, c, s, p, acc)
        return acc[MAX_CHUNKS].copy()


_cell_maps: dict = {}
_site_maps: dict = {}


def for_cells(body, n, t, c, s, p, bins=1):
    run = _cell_maps.get(body)
    if run is None:
        run = _cell_maps[body] = _Map(_cell_chunk, _cell_map, body)
    return run(n, n <= SERIAL_CELLS, t, c, s, p, bins)


def for_sites(body, layers, t, c, s, p, bins=1):
    run = _site_maps.get(body)
    if run is None:
        run = _site_maps[body] = _Map(_row_chunk, _site_map, body)
    return run(layers * t.L, layers * t.L * t.L <= CHUNK, t, c, s, p, bins)


def _rows_serial(rows_body):
    size = DIFFUSE_ROWS

    def kernel(tasks, blocks, t, s, p, halo, out):
        for k in range(tasks):
            layer = k // blocks
            y0 = (k - layer * blocks) * size
            out[k] = rows_body(layer, y0, min(t.L, y0 + size), t, s, p, halo[k])

    return nb.njit(nogil=True)(kernel)


def _rows_parallel(rows_body):
    size = DIFFUSE_ROWS

    def kernel(tasks, blocks, t, s, p, halo, out):
        for kk in nb.prange(tasks):
            k = nb.int64(kk)
            layer = k // blocks
            y0 = (k - layer * blocks) * size
            out[k] = rows_body(layer, y0, min(t.L, y0 + size), t, s, p, halo[k])

    return nb.njit(parallel=_PRANGE_ONLY)(kernel)  # type: ignore[call-overload]


def diffusion_scratch(state):
    """int32[tasks, 2, L], a task per block of :data:`~immunesim.kernels.molecules.
    DIFFUSE_ROWS` rows of a layer: what the rows just above and below each block send to
    their neighbours (:func:`~immunesim.kernels.molecules.rows_halo`), kept in the state
    (``aux.halo``: a portion never exceeds the int32 value it comes from)."""
    shape = _buffer_shape(state.mol.shape[0], state.L)
    halo = state.aux.get("halo")
    if halo is None or halo.shape != shape:
        halo = state.aux["halo"] = np.empty(shape, np.int32)
    return halo


def _buffer_shape(layers: int, L: int) -> tuple:
    return molecules.diffusion_buffer_shape(layers, L, DIFFUSE_ROWS, molecules.CPU_BUFFER_ROWS)


def diffuse(t, c, s, p, layers, scratch=None):
    """One diffusion sub-step of every layer (:func:`immunesim.kernels.molecules.diffuse`)
    in blocks of :data:`~immunesim.kernels.molecules.DIFFUSE_ROWS` rows, written in place
    when ``t.dst`` is ``s.mol`` (:func:`~immunesim.kernels.molecules.diffuse_rows`, the same
    bits): first every block's neighbouring rows are read into ``scratch``
    (:func:`diffusion_scratch`; made here when none is given) by
    :func:`~immunesim.kernels.molecules.rows_halo`, then the blocks are diffused. Returns
    what each layer gives to the circulation."""
    halo = np.empty(_buffer_shape(layers, t.L), np.int32) if scratch is None else scratch
    tasks = halo.shape[0]
    blocks = tasks // layers
    gifts = np.empty(tasks, np.int64)
    serial = layers * t.L * t.L <= CHUNK or nb.get_num_threads() == 1
    factory = _rows_serial if serial else _rows_parallel
    _direct(factory, molecules.rows_halo)(tasks, blocks, t, s, p, halo, gifts)
    _direct(factory, molecules.diffuse_rows)(tasks, blocks, t, s, p, halo, gifts)
    return gifts.reshape(layers, blocks).sum(axis=1)


def spare_mol(state):
    """The CPU diffuses in place (:func:`diffuse`): no second copy of the layers."""
    return state.sites.mol


def scatter_min(n, c, s):
    _scatter_min(n, c, s)


def append(wins, place, n, t, c, s, p, bins=1, room=None):
    """A serial pass in index order, placing each winner as it is found (so ``room`` is not
    called: the phase has reserved room for every cell it can add)."""
    tally = np.zeros(bins, np.int64)
    count = _direct(_ordered, wins, place)(n, t, c, s, p, tally)
    return int(count), tally


def reserve(state, count):
    """Grow the cell arrays when ``count`` more cells would not fit: to a quarter more slots
    than cells (:func:`~immunesim.state.slots_for`), so growing is rare and its copies cost
    little over a run."""
    need = state.n + int(count)
    if need > state.capacity:
        state.cells = with_capacity(state.cells, state.n, slots_for(need, state.L))


def spare_cells(state):
    """The CPU compacts in place: a live cell only ever moves to a lower slot."""
    return state.cells


# --------------------------------------------------------------------------- host side


def is_available() -> bool:
    return True


def auto_eligible() -> bool:
    return True


def unavailable_reason() -> str:
    return ""


def describe() -> str:
    return f"CPU, {nb.get_num_threads()} numba threads"


def prepare(st, p):
    """The state and parameters as the kernels take them: on the CPU, as they are (the
    state gets its diffusion buffer, :func:`diffusion_scratch`)."""
    diffusion_scratch(st)
    return st, p


def asarray(a) -> np.ndarray:
    return np.asarray(a)


def to_host(a) -> np.ndarray:
    return np.asarray(a)


def synchronize() -> None:
    """Kernels return when they are done: nothing to wait for."""


def mark() -> float:
    """The host's clock (a CPU's work is done when its call returns)."""
    return time.perf_counter()


def seconds_between(start: float, end: float) -> float:
    return end - start

"""Throughput benchmark (``immunesim bench``): cell-updates per second of the full model.

For each lattice size and backend (the numba CPU backend at each thread count; the CUDA
backend on a GPU with ``backends=("numba", "cuda")``) it builds the untreated disease (the
default cell and molecule parameters), compiles the kernels in an untimed warm-up (reported apart),
runs a short untimed run-in from the initial densities, then times a fixed number of steps
and reports:

- cell-updates per second (live cells x steps / wall seconds) and the per-phase breakdown;
- the "floor": a bare random walk of the same cells with the same conflict resolution (the
  movement phase with every cell moving every step), so the full step's cost can be
  stated as a multiple of it;
- bytes of state per lattice site plus cell (on a GPU: device memory, the spare buffers of
  compaction included);
- a roofline: the machine's streaming bandwidth, measured in the same run with a STREAM
  triad on the same threads or device (:func:`stream_bandwidth`), the bytes a step would
  move if it read and wrote every byte of the state once (twice the state's size), and the
  ratio of the measured step time to that floor (1 would be a step bound by memory
  bandwidth alone).

It then compares the fast engine with the Mesa reference implementation
(:mod:`immunesim.reference`, the same rules executed as Mesa agents) on one lattice of about
10^4 cells (:func:`mesa_comparison`): cell-updates per second of each, measured in the same
run on the same cells, and the speed-up.

Results are a list of dicts, written as JSON with the hardware and package versions.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from immunesim import io
from immunesim.engine import PHASES, Simulation, warm_up
from immunesim.rng import ONE53
from immunesim.scenario import load_scenario

#: Lattice sizes of the quick and the full benchmark (cells are about 0.26 per site).
QUICK_SIZES = (56, 170, 540)
FULL_SIZES = (56, 170, 540, 1700, 5400)
#: Sizes of ``immunesim bench --dry-run``: the full set and about 10^8 cells.
DRY_RUN_SIZES = (*FULL_SIZES, 19700)
#: Lattice of the comparison with the Mesa reference (about 10^4 cells after the run-in).
MESA_SIZE = 200
#: Timed steps of the Mesa reference: one simulated day (about 0.12 s a step at 10^4 cells).
MESA_STEPS = 24
#: Columns of :func:`comparison_rows`.
COMPARISON_COLUMNS = (
    "lattice",
    "cells",
    "engine",
    "threads",
    "cell-updates/s",
    "speed-up over Mesa",
)


def _numba_threads() -> int:
    """numba's number of threads (``NUMBA_NUM_THREADS``: numba makes its config attributes
    from the environment at import, unseen by type checkers)."""
    return numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


def _scenario(size: int, run_in_days: float):
    return load_scenario(
        {
            # whole anatomical units of 100 sites where the size allows, else one unit
            "lattice": {"size": size, "zones": {"unit_um": size * 10.0 if size % 100 else 1000.0}},
            "time": {"run_in_days": run_in_days, "follow_up_days": 30.0},
            "therapy": [{"type": "standard_of_care", "activation_factor": 0.7}],
        }
    )


def floor_rate(sim: Simulation, steps: int) -> float:
    """Cell-updates per second of a bare random walk of the simulation's cells."""
    st, p, b, ph = sim.state, sim.params, sim.backend, sim.phases
    k = p.k
    walk = dataclasses.replace(
        p,
        k=k._replace(
            thr_move=b.xp.full_like(k.thr_move, ONE53),
            thr_stay=b.xp.zeros_like(k.thr_stay),
            thr_homing=b.xp.zeros_like(k.thr_homing),
        ),
    )
    ph.move(st, walk, sim.seed, 10**7)  # compile
    b.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        ph.move(st, walk, sim.seed, 10**7 + i)
    b.synchronize()
    return st.live * steps / (time.perf_counter() - t0)


#: Elements of each STREAM triad array: 3 x 128 MB of float64, far beyond any cache.
STREAM_ELEMENTS = 1 << 24


@numba.njit(parallel=True, cache=True)
def _triad(a, b, c, scalar):  # pragma: no cover - compiled
    for i in numba.prange(a.size):
        a[i] = b[i] + scalar * c[i]


def stream_bandwidth(backend: Any = None, n: int = STREAM_ELEMENTS, repeats: int = 5) -> float:
    """Bytes per second that a STREAM triad (``a = b + s * c`` on float64 arrays of ``n``
    elements) moves: on numba's current threads, or, given a GPU backend module
    (:mod:`immunesim.backends.cuda`), on its device
    (its array module's two elementwise passes, then 40 bytes an element). Counted as in
    STREAM: 24 bytes an element (two reads, one write; a write-allocate read is not
    counted). The best of ``repeats``."""
    if backend is not None:
        xp = backend.xp
        a, b, c = (xp.full(n, v, dtype=xp.float64) for v in (0.0, 1.0, 2.0))

        def once() -> None:
            xp.multiply(c, 3.0, out=a)
            xp.add(a, b, out=a)

        sync = backend.synchronize
        per_element = 40
    else:
        a, b, c = (np.full(n, v) for v in (0.0, 1.0, 2.0))

        def once() -> None:
            _triad(a, b, c, 3.0)

        def sync() -> None:
            pass

        per_element = 24
    once()  # compile, and touch every page
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        sync()
        best = min(best, time.perf_counter() - t0)
    if float(a[-1]) != 7.0:  # b + 3 c
        raise RuntimeError("the STREAM triad computed a wrong value")
    return per_element * n / best


def roofline(state_bytes: int, step_seconds: float, bandwidth: float) -> dict[str, float]:
    """The memory-bandwidth floor of a step that reads and writes every byte of a state of
    ``state_bytes`` once, and the measured step's multiple of it."""
    moved = 2 * state_bytes
    floor = moved / bandwidth
    return {
        "bytes_per_step": moved,
        "stream_bytes_per_second": bandwidth,
        "floor_step_seconds": floor,
        "step_vs_roofline": step_seconds / floor,
    }


#: Live cells per site in the benchmark's untreated disease after its run-in (measured:
#: 0.256-0.260 at lattice 56-5400).
CELLS_PER_SITE = 0.26


def memory_estimate(size: int, backend: str = "numba", slots: int | None = None) -> dict[str, Any]:
    """Bytes of state the benchmark's scenario allocates on an ``size`` x ``size`` lattice,
    computed from the field tables without allocating anything: the cell slots, the site
    arrays, every molecular layer, the buffer for diffusing them in place and the ledger.
    The slots follow the cells (:func:`~immunesim.state.slots_for` of
    :data:`CELLS_PER_SITE` per site, unless ``slots`` says how many); the CUDA backend also
    keeps as many spare slots, that compaction writes into. Equal to
    :meth:`~immunesim.state.State.nbytes` of such a simulation with as many slots (tests
    check it on the CPU and in the CUDA simulator)."""
    from immunesim.kernels.molecules import (
        CPU_BUFFER_ROWS,
        DIFFUSE_ROWS,
        GPU_BUFFER_ROWS,
        diffusion_buffer_shape,
        gpu_diffuse_rows,
    )
    from immunesim.model.cells import N_KINDS
    from immunesim.model.fields import bytes_per_site, bytes_per_slot
    from immunesim.model.layers import n_layers
    from immunesim.scenario import Specificities
    from immunesim.state import slots_for

    # the benchmark's classes are the defaults; no scenario is loaded, which would refuse a
    # lattice whose state does not fit in this machine's memory
    spec = Specificities()
    sites = size * size
    layers = n_layers(len(spec.vaccines), len(spec.autoantibodies))
    cells = CELLS_PER_SITE * sites
    slots = slots_for(int(round(cells)), size) if slots is None else slots
    if backend == "cuda":  # spare slots, and the GPU's diffusion buffer
        rows = (gpu_diffuse_rows(_cuda_simulated()), GPU_BUFFER_ROWS)
        extra = slots * bytes_per_slot()
    else:
        rows, extra = (DIFFUSE_ROWS, CPU_BUFFER_ROWS), 0
    extra += 4 * math.prod(diffusion_buffer_shape(layers, size, *rows))  # int32
    state = sites * bytes_per_site(layers, 0.0) + slots * bytes_per_slot() + extra
    total = int(state) + N_KINDS * 4 * 8 + layers  # the ledger, a flag per layer
    return {
        "backend": backend,
        "lattice": size,
        "sites": sites,
        "cells": int(round(cells)),
        "slots": slots,
        "state_bytes": total,
        "bytes_per_site_plus_cell": total / (sites + cells),
    }


def _cuda_simulated() -> bool:
    """Whether the CUDA backend would run in numba's simulator (its smaller blocks of rows),
    read without importing the backend."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)  # type: ignore[attr-defined]


def timed_steps(
    step: Callable[[], None],
    count: Callable[[], int],
    steps: int,
    sync: Callable[[], None] = lambda: None,
) -> tuple[float, float]:
    """Run ``step()`` ``steps`` times; the mean of ``count()`` (live cells) after each step
    and the wall seconds of the steps, up to ``sync()`` (a GPU's work is done)."""
    cells = []
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
        cells.append(count())
    sync()
    return float(np.mean(cells)), time.perf_counter() - t0


def bench_one(
    size: int, threads: int, steps: int, run_in_days: float, backend: str = "numba"
) -> dict[str, Any]:
    """One configuration: ``size`` x ``size`` sites on ``backend`` (``threads`` numba
    threads; a GPU backend ignores them)."""
    numba.set_num_threads(threads)
    sim = Simulation(_scenario(size, run_in_days), seed=1, backend=backend)
    sim.run(until_step=sim.scenario.run_in_steps - steps)
    before = dict(sim.phase_seconds)
    mean_cells, wall = timed_steps(sim.step, lambda: sim.state.live, steps, sim.backend.synchronize)
    phases = {k: sim.phase_seconds[k] - before[k] for k in PHASES}
    full = mean_cells * steps / wall
    floor = floor_rate(sim, steps)
    state_bytes = sim.state.nbytes()
    bandwidth = stream_bandwidth(sim.backend if sim.backend_name == "cuda" else None)
    return {
        "backend": sim.backend_name,
        "device": sim.backend.describe(),
        "lattice": size,
        "sites": size * size,
        "cells": int(round(mean_cells)),
        "threads": threads,
        "steps": steps,
        "wall_seconds": wall,
        "cell_updates_per_second": full,
        "floor_cell_updates_per_second": floor,
        "cost_vs_floor": floor / full,
        "phase_fraction": {k: v / wall for k, v in phases.items()},
        "bytes_per_site_plus_cell": state_bytes / (size * size + mean_cells),
        "state_bytes": state_bytes,
        **roofline(state_bytes, wall / steps, bandwidth),
    }


def _best_of(
    repeats: int,
    step: Callable[[], None],
    count: Callable[[], int],
    steps: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The fastest of ``repeats`` timings of ``steps`` steps (other processes on the machine
    only ever add time): its steps, mean live cells, wall seconds and cell-updates/s."""
    runs = [timed_steps(step, count, steps, sync) for _ in range(repeats)]
    cells, wall = min(runs, key=lambda r: r[1] / r[0])
    return {
        "steps": steps,
        "repeats": repeats,
        "cells": int(round(cells)),
        "wall_seconds": wall,
        "cell_updates_per_second": cells * steps / wall,
    }


def mesa_comparison(
    size: int = MESA_SIZE,
    threads=None,
    steps: int = 48,
    mesa_steps: int = MESA_STEPS,
    run_in_days: float = 3.0,
    repeats: int = 3,
) -> dict[str, Any]:
    """Cell-updates per second of the Mesa reference and of the fast engine (numba CPU, at
    each thread count) on the same state, and the speed-up of the fast engine.

    The fast engine runs the untimed run-in of the benchmark scenario; the reference takes
    over that state (:meth:`~immunesim.reference.ReferenceModel.from_simulation`: the same
    lattice, cells and molecular layers) and is timed for ``mesa_steps`` steps, then the
    fast engine for ``steps`` steps per thread count from where it stood; each timing is
    the best of ``repeats``. Building the reference's grid and agents is timed apart
    (``setup_seconds``).
    """
    from immunesim.reference import ReferenceModel

    threads = threads or sorted({1, _numba_threads()})
    sim = Simulation(_scenario(size, run_in_days), seed=1, backend="numba")
    sim.run(until_step=sim.scenario.run_in_steps)
    t0 = time.perf_counter()
    ref = ReferenceModel.from_simulation(sim)
    setup = time.perf_counter() - t0
    mesa = {
        "engine": "mesa-reference",
        "threads": 1,
        "setup_seconds": setup,
        **_best_of(repeats, ref.step, lambda: len(ref.agents), mesa_steps),
    }
    fast = []
    for t in threads:
        numba.set_num_threads(t)
        r = _best_of(repeats, sim.step, lambda: sim.state.live, steps, sim.backend.synchronize)
        r["speedup_over_mesa"] = r["cell_updates_per_second"] / mesa["cell_updates_per_second"]
        fast.append({"engine": "numba", "threads": t, **r})
    numba.set_num_threads(_numba_threads())
    return {"lattice": size, "sites": size * size, "mesa": mesa, "fast": fast}


def comparison_rows(cmp: dict[str, Any]) -> list[tuple[str, ...]]:
    """The Mesa comparison as table rows of strings (:data:`COMPARISON_COLUMNS`)."""
    rows: list[tuple[str, ...]] = [
        (
            f"{cmp['lattice']}^2",
            f"{cmp['mesa']['cells']:,}",
            "Mesa reference",
            "1",
            f"{cmp['mesa']['cell_updates_per_second']:.3g}",
            "1",
        )
    ]
    for r in cmp["fast"]:
        rows.append(
            (
                f"{cmp['lattice']}^2",
                f"{r['cells']:,}",
                "immunesim (numba)",
                str(r["threads"]),
                f"{r['cell_updates_per_second']:.3g}",
                f"{r['speedup_over_mesa']:,.0f}",
            )
        )
    return rows


def run_bench(
    sizes=QUICK_SIZES,
    threads=None,
    steps: int = 48,
    run_in_days: float = 3.0,
    mesa: bool = True,
    backends: tuple[str, ...] = ("numba",),
) -> dict[str, Any]:
    """Benchmark every size on every backend (the numba backend at every thread count),
    then (with ``mesa``) the comparison with the Mesa reference at :data:`MESA_SIZE`;
    returns results with hardware info. Compilation is timed apart, per backend."""
    threads = threads or sorted({1, _numba_threads()})
    jit = {b: warm_up(b) for b in backends}
    results = []
    for size in sizes:
        for b in backends:
            for t in threads if b == "numba" else [_numba_threads()]:
                results.append(bench_one(size, t, steps, run_in_days, b))
    numba.set_num_threads(_numba_threads())
    res = {
        "jit_warm_up_seconds": sum(jit.values()),
        "jit_seconds_per_backend": jit,
        "hardware": io.hardware(),
        "versions": io.versions(),
        "results": results,
    }
    if mesa:
        res["mesa_comparison"] = mesa_comparison(MESA_SIZE, threads, steps, MESA_STEPS, run_in_days)
    return res

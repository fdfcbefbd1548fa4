"""Throughput benchmark (``immunesim bench``): cell-updates per second of the full model.

For each lattice size and numba thread count it builds the untreated disease (the default
cell and molecule parameters), compiles the kernels in an untimed warm-up (reported apart),
runs a short untimed run-in from the initial densities, then times a fixed number of steps
and reports:

- cell-updates per second (live cells x steps / wall seconds) and the per-phase breakdown;
- the "floor": a bare random walk of the same cells with the same conflict resolution (the
  movement phase with every cell moving every step), so the full step's cost can be
  stated as a multiple of it;
- bytes of state per lattice site plus cell.

Results are a list of dicts, written as JSON with the hardware and package versions.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numba
import numpy as np

from immunesim import io
from immunesim.engine import PHASES, Simulation, warm_up
from immunesim.rng import ONE53
from immunesim.scenario import load_scenario

#: Lattice sizes of the quick and the full benchmark (cells are about 0.35 per site).
QUICK_SIZES = (56, 170, 540)
FULL_SIZES = (56, 170, 540, 1700, 5400)


def _scenario(size: int, run_in_days: float):
    return load_scenario({
        "lattice": {"size": size},
        "time": {"run_in_days": run_in_days, "follow_up_days": 30.0},
        "therapy": [{"type": "standard_of_care", "activation_factor": 0.7}],
    })


def floor_rate(sim: Simulation, steps: int) -> float:
    """Cell-updates per second of a bare random walk of the simulation's cells."""
    st, p = sim.state, sim.params
    walk = dataclasses.replace(p, thr_move=np.full_like(p.thr_move, ONE53),
                               thr_stay=np.zeros_like(p.thr_stay),
                               thr_homing=np.zeros_like(p.thr_homing))
    move = sim.backend.move
    move(st, walk, sim.seed, 10**7)  # compile
    t0 = time.perf_counter()
    for k in range(steps):
        move(st, walk, sim.seed, 10**7 + k)
    return st.n * steps / (time.perf_counter() - t0)


def bench_one(size: int, threads: int, steps: int, run_in_days: float) -> dict[str, Any]:
    numba.set_num_threads(threads)
    sim = Simulation(_scenario(size, run_in_days), seed=1)
    sim.run(until_step=sim.scenario.run_in_steps - steps)
    before = dict(sim.phase_seconds)
    cells = []
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.step()
        cells.append(sim.state.n)
    wall = time.perf_counter() - t0
    mean_cells = float(np.mean(cells))
    phases = {k: sim.phase_seconds[k] - before[k] for k in PHASES}
    full = mean_cells * steps / wall
    floor = floor_rate(sim, steps)
    return {
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
        "bytes_per_site_plus_cell": sim.state.nbytes() / (size * size + mean_cells),
    }


def run_bench(sizes=QUICK_SIZES, threads=None, steps: int = 48,
              run_in_days: float = 3.0) -> dict[str, Any]:
    """Benchmark every size at every thread count; returns results with hardware info."""
    threads = threads or sorted({1, numba.config.NUMBA_NUM_THREADS})
    jit = warm_up()
    results = []
    for size in sizes:
        for t in threads:
            results.append(bench_one(size, t, steps, run_in_days))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return {"jit_warm_up_seconds": jit, "hardware": io.hardware(), "versions": io.versions(),
            "results": results}

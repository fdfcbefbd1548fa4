"""Compaction after every step against compaction when a sixteenth of the slots are dead.

    python benchmarks/compaction_ab.py [--sizes 540,1700] [--threads 1,2] [--steps 48] [--out FILE]

For each lattice size and thread count, two simulations of the benchmark scenario step in
alternation from the same seed:

- **lazy**: what a step runs, compaction once more than ``1 / COMPACT_SHARE`` of the used
  slots hold cells that died in earlier steps (:meth:`immunesim.engine.phases.Phases.death`);
- **every step**: compaction after every step in which a cell died (``COMPACT_SHARE`` set
  so high that any dead slot triggers it), as before.

Their live cells (by uid), layers and ledgers must stay equal (checked at the end).
Reported: the step's minimum and median time for each, the death phase's time for each
(the cells' ageing plus compaction), how often each compacted, and the ratios (above 1: lazy
is faster). Alternating in one process puts both under the same load, so the ratios hold
on a noisy machine where absolute figures do not.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numba as nb
import numpy as np

import immunesim.engine.phases as phases_module
from immunesim.bench import _scenario
from immunesim.engine import Simulation
from immunesim.state import COMPACT_SHARE

#: name -> the COMPACT_SHARE a step runs with
POLICIES = {"lazy": COMPACT_SHARE, "every step": 10**18}


def _live_by_uid(sim: Simulation) -> dict[str, np.ndarray]:
    st = sim.state
    live = np.flatnonzero(st.alive[: st.n] != 0)
    order = live[np.argsort(st.uid[live])]
    return {f: getattr(st, f)[order] for f in ("uid", "kind", "state", "x", "y", "age")}


def measure(size: int, threads: int, steps: int) -> dict:
    nb.set_num_threads(threads)
    sims = {k: Simulation(_scenario(size, 2.0), seed=1, backend="numba") for k in POLICIES}
    step: dict[str, list[float]] = {k: [] for k in POLICIES}
    death: dict[str, list[float]] = {k: [] for k in POLICIES}
    compactions = dict.fromkeys(POLICIES, 0)
    compact = phases_module.Phases.compact

    def counted(self, st, p, k):
        compactions[k] += 1
        compact(self, st, p)

    try:
        for _ in range(3):  # compile, and leave the first steps out
            for k, sim in sims.items():
                phases_module.COMPACT_SHARE = POLICIES[k]
                sim.step()
        for _ in range(steps):
            for k, sim in sims.items():
                phases_module.COMPACT_SHARE = POLICIES[k]
                phases_module.Phases.compact = lambda self, st, p, k=k: counted(self, st, p, k)
                before = sim.phase_seconds["death"]
                t0 = time.perf_counter()
                sim.step()
                step[k].append(time.perf_counter() - t0)
                death[k].append(sim.phase_seconds["death"] - before)
    finally:
        phases_module.COMPACT_SHARE = COMPACT_SHARE
        phases_module.Phases.compact = compact
    a, b = (sims[k] for k in POLICIES)
    la, lb = _live_by_uid(a), _live_by_uid(b)
    same = (
        all(np.array_equal(la[f], lb[f]) for f in la)
        and np.array_equal(a.state.mol, b.state.mol)
        and np.array_equal(a.state.ledger, b.state.ledger)
    )
    lazy, every = (np.array(step[k]) for k in POLICIES)
    d_lazy, d_every = (np.array(death[k]) for k in POLICIES)
    return {
        "lattice": size,
        "cells": a.state.live,
        "threads": threads,
        "steps": steps,
        "same_cells_layers_ledger": bool(same),
        "step_ms": {
            k: [float(np.min(v)) * 1e3, float(np.median(v)) * 1e3] for k, v in step.items()
        },
        "death_ms_median": {k: float(np.median(v) * 1e3) for k, v in death.items()},
        "compactions": compactions,
        "dead_slots_at_end": a.state.dead,
        "every_over_lazy": [
            float(every.min() / lazy.min()),
            float(np.median(every) / np.median(lazy)),
        ],
        "death_every_over_lazy_median": float(np.median(d_every) / np.median(d_lazy)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="540,1700")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    rows = [
        measure(size, threads, a.steps)
        for size in (int(v) for v in a.sizes.split(","))
        for threads in (int(v) for v in a.threads.split(","))
    ]
    print(
        "| lattice | cells | threads | step ms, lazy (min / median) | step, every step / lazy "
        "(min / median) | death phase ms, lazy / every step (median) | compactions, lazy / "
        "every step |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lz, ev = r["step_ms"]["lazy"], r["death_ms_median"]
        print(
            f"| {r['lattice']}^2 | {r['cells']:,} | {r['threads']} | {lz[0]:.3g} / {lz[1]:.3g} | "
            f"{r['every_over_lazy'][0]:.2f} / {r['every_over_lazy'][1]:.2f} | "
            f"{ev['lazy']:.3g} / {ev['every step']:.3g} | "
            f"{r['compactions']['lazy']} / {r['compactions']['every step']} |"
        )
        if not r["same_cells_layers_ledger"]:
            print("  the two simulations differ: the comparison is void")
    if a.out:
        a.out.write_text(
            json.dumps(
                {
                    "hardware": {"machine": platform.machine(), "processor": platform.processor()},
                    "versions": {"numba": nb.__version__, "python": platform.python_version()},
                    "results": rows,
                },
                indent=2,
            )
        )
    return 0 if all(r["same_cells_layers_ledger"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

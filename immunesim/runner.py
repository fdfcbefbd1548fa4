"""Running a scenario end to end: the ``immunesim.run`` API and the run directory.

A run directory holds ``timeseries.csv``, ``timeseries.parquet``, ``endpoints.json``,
``events.json`` and ``manifest.json``. They are rewritten atomically every
``flush_seconds`` during the run and once at its end, so an interrupted run (Ctrl-C, a
crash) leaves usable outputs whose manifest says ``"status": "interrupted"``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from immunesim import io
from immunesim.engine import Simulation, warm_up
from immunesim.model.cells import KIND_NAMES
from immunesim.observe import endpoints as compute_endpoints
from immunesim.observe import with_score
from immunesim.scenario import Scenario, load_scenario


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        timeseries: one row per sampled step (see :mod:`immunesim.observe` for columns).
        endpoints: clinical endpoints (days relative to day 0).
        manifest: scenario as resolved, seed, versions, backend, hardware, timing.
        events: therapy events as they happened.
        out_dir: the run directory, when outputs were written.
    """

    timeseries: pd.DataFrame
    endpoints: dict[str, Any]
    manifest: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    simulation: Simulation | None = field(default=None, repr=False)


@functools.lru_cache(maxsize=1)
def _software() -> tuple[dict[str, str], str | None]:
    """Package versions and git revision (fixed for the life of the process)."""
    return io.versions(), io.git_revision()


def _results(
    sim: Simulation, status: str, started: float, started_at: str, argv: list[str] | None
) -> RunResult:
    s = sim.scenario
    df = with_score(pd.DataFrame(sim.rows), s)
    ends = compute_endpoints(df, s, sim.infused_car_t) if len(df) else {}
    wall = time.perf_counter() - started
    steps = sim.step_index
    n_cells = float(df[list(KIND_NAMES)].sum(axis=1).mean())
    versions, revision = _software()
    manifest = {
        "immunesim_manifest": 1,
        "status": status,
        "scenario_name": s.name,
        "seed": sim.seed,
        "backend": sim.backend_name,
        "steps_done": steps,
        "steps_total": sim.total_steps,
        "last_day": sim.day,
        "lattice_sites": s.lattice.size**2,
        "command": argv,
        "versions": versions,
        "git_revision": revision,
        "hardware": io.hardware(),
        "scenario": s.model_dump(mode="json"),
        "timing": {
            "started_at": started_at,
            "wall_seconds": wall,
            "jit_warm_up_seconds": sim.jit_seconds,
            "phase_seconds": dict(sim.phase_seconds),
            "mean_cells": n_cells,
            "cell_updates_per_second": n_cells * steps / wall if wall > 0 else None,
        },
    }
    events = [asdict(e) for e in sim.events]
    return RunResult(df, ends, manifest, events, simulation=sim)


def write_run(result: RunResult, out_dir: str | os.PathLike[str], parquet: bool = True) -> None:
    """Write a result's files into ``out_dir`` (atomically, file by file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = io.write_timeseries(out, result.timeseries, parquet)
    io.write_json(out / "endpoints.json", result.endpoints)
    io.write_json(out / "events.json", {"events": result.events})
    result.manifest["files"] = files + ["endpoints.json", "events.json", "manifest.json"]
    io.write_json(out / "manifest.json", result.manifest)
    result.out_dir = out


def run(
    scenario: str | os.PathLike[str] | dict[str, Any] | Scenario,
    seed: int | None = None,
    *,
    overrides: list[str] | None = None,
    backend: str | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: Callable[[Simulation], None] | None = None,
    flush_seconds: float = 30.0,
    argv: list[str] | None = None,
) -> RunResult:
    """Run a scenario to its end and return its results.

    Args:
        scenario: a TOML path, a dict of raw values or a :class:`Scenario`.
        seed: random seed (default: the scenario's ``run.seed``).
        overrides: ``key.path=value`` strings applied to the scenario.
        backend: ``"auto"`` or a backend name (default: the scenario's ``run.backend``).
        out: run directory to write; nothing is written when ``None``.
        progress: called after each sampled step with the simulation.
        flush_seconds: with ``out``, rewrite the outputs at least this often (seconds).
        argv: the command line, recorded in the manifest.

    Raises:
        ScenarioError: for a bad scenario or override.
        KeyboardInterrupt: after writing the partial outputs (``status: interrupted``).
    """
    s = load_scenario(scenario, overrides)
    jit_seconds = warm_up(backend or s.run.backend)
    sim = Simulation(s, seed=seed, backend=backend or s.run.backend)
    sim.jit_seconds = jit_seconds
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    last_flush = [started]

    def on_sample(sim_: Simulation) -> None:
        if progress is not None:
            progress(sim_)
        if out is not None and time.perf_counter() - last_flush[0] > flush_seconds:
            write_run(_results(sim_, "running", started, started_at, argv), out, s.output.parquet)
            last_flush[0] = time.perf_counter()

    if out is not None and s.output.snapshot_every_hours > 0:
        from immunesim.viz.snapshots import SnapshotWriter

        writer = SnapshotWriter(
            out, sim.backend.to_host(sim.state.zone).reshape(s.lattice.size, s.lattice.size)
        )
        every = max(1, int(round(s.output.snapshot_every_hours / s.time.dt_hours)))
        sim.add_observer(writer.write, every, s.step_of_day(s.output.snapshot_from_day))

    status = "failed"
    try:
        sim.run(callback=on_sample)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        result = _results(sim, status, started, started_at, argv if argv else sys.argv)
        if out is not None:
            write_run(result, out, s.output.parquet)
    return result

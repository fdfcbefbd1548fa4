"""Running a scenario end to end: the ``immunesim.run`` API and the run directory.

A run directory holds ``timeseries.csv``, ``timeseries.parquet``, ``endpoints.json``,
``events.json`` and ``manifest.json``. They are rewritten atomically every
``flush_seconds`` during the run and once at its end, so an interrupted run (Ctrl-C, a
crash) leaves usable outputs whose manifest says ``"status": "interrupted"``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from immunesim import checkpoint, io, runin
from immunesim.engine import Simulation, warm_up
from immunesim.model.cells import KIND_NAMES
from immunesim.observe import endpoints as compute_endpoints
from immunesim.observe import with_score
from immunesim.scenario import Scenario, ScenarioError, load_scenario


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
        # who writes it: a manifest that says running while its process is gone is stale
        "process": {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "heartbeat_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "scenario_name": s.name,
        "seed": sim.seed,
        "backend": sim.backend_name,
        "steps_done": steps,
        "steps_total": sim.total_steps,
        "last_day": sim.day,
        "run_in": sim.run_in,
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


class RunIOError(OSError):
    """Writing a run's outputs failed (a full disk, a lost mount): the run stopped there;
    every file it had written is intact (files are replaced atomically), and its manifest
    says ``failed`` when it could still be written."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal (SIGINT, SIGTERM, SIGHUP).

    Attributes:
        signum: the signal.
        out_dir: the run directory, or ``None`` when nothing was written (stopped before
            the simulation started).
        resumable: whether a checkpoint at the step it stopped lets ``resume`` go on.
    """

    def __init__(self, signum: int, out_dir: Path | None, resumable: bool):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.out_dir, self.resumable = signum, out_dir, resumable


#: Signals that ask a run to stop at the next step boundary (a second one stops at once).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While in force, a stop signal is recorded in the yielded list (the run stops at the
    next step boundary and writes a checkpoint there); a second one raises
    ``KeyboardInterrupt`` at once. Outside the main thread signals are left alone."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: Any) -> None:
        if caught:
            if _HOLDING[0]:
                _HELD.append(signum)
                return
            raise KeyboardInterrupt
        caught.append(signum)

    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield caught
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


#: While above zero, a second stop signal waits (:func:`_signals_held`); those that waited.
_HOLDING = [0]
_HELD: list[int] = []


@contextmanager
def _signals_held() -> Iterator[None]:
    """A second stop signal arriving inside the block (Ctrl-C twice, or a cohort's pool
    ending its other workers once one has stopped) waits until the block's end, so that it
    cannot cut the writing of a run's last outputs short; it then stops at once."""
    _HOLDING[0] += 1
    try:
        yield
    finally:
        _HOLDING[0] -= 1
    if _HOLDING[0] == 0 and _HELD:
        _HELD.clear()
        raise KeyboardInterrupt


def _is_run_dir(d: Path) -> bool:
    try:
        return json.loads((d / "manifest.json").read_text()).get("immunesim_manifest") == 1
    except (OSError, ValueError, AttributeError):
        return False


#: Files at the top of what a cohort, ``compare``, ``calibrate`` and ``fit`` write: a
#: directory with one of them is an earlier immunesim output when every directory in it is
#: one too (:func:`_is_output_dir`).
_OUTPUT_TABLES = ("cohort.csv", "compare_summary.json", "calibration.json", "fit.json")


def _is_output_dir(d: Path) -> bool:
    """An earlier run, or a cohort, comparison, calibration or fit of runs (its table at the
    top, and nothing but such outputs in its directories)."""
    if _is_run_dir(d):
        return True
    if not any((d / name).is_file() for name in _OUTPUT_TABLES):
        return False
    return all(_is_output_dir(e) for e in d.iterdir() if e.is_dir() and not e.is_symlink())


def prepare_out(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Make ``out_dir`` ready for a new run before any work is done: create it, refuse a
    directory that already holds files (unless ``overwrite``, which empties a directory
    that holds an earlier run, or a cohort, comparison, calibration or fit of runs), and
    check that it can be written.

    Raises:
        ScenarioError: naming ``--out`` and what was expected.
    """
    out = Path(out_dir)
    where = f"--out {out_dir}"
    if str(out_dir).strip() == "":
        raise ScenarioError(where, "", "a directory name (got an empty one)")
    if out.exists() and not out.is_dir():
        raise ScenarioError(where, "", "a directory, and this is a file")
    try:
        entries = sorted(out.iterdir()) if out.is_dir() else []
    except OSError as exc:
        raise ScenarioError(where, "", f"a readable directory ({exc.strerror or exc})") from None
    if entries:
        if not overwrite:
            raise ScenarioError(
                where,
                "",
                f"an empty or new directory; it holds {len(entries)} entries (an earlier "
                "run?): choose another or pass --overwrite to replace its contents",
            )
        if not _is_output_dir(out):
            raise ScenarioError(
                where,
                "",
                "a directory of an earlier immunesim run to overwrite; this one holds other "
                "files, so it is left as it is",
            )
        for e in entries:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ScenarioError(where, "", f"a writable directory ({exc.strerror or exc})") from None
    return out


def _check_seed(seed: int | None) -> None:
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63
    ):
        raise ScenarioError("seed", "", f"a whole number from 0 to 2**63-1 (got {seed!r})")


def run(
    scenario: str | os.PathLike[str] | dict[str, Any] | Scenario,
    seed: int | None = None,
    *,
    overrides: list[str] | None = None,
    backend: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[Simulation], None] | None = None,
    flush_seconds: float = 30.0,
    checkpoint_every_days: float | None = None,
    checkpoint_seconds: float = 600.0,
    argv: list[str] | None = None,
    cache: bool | runin.RunInCache | None = None,
) -> RunResult:
    """Run a scenario to its end and return its results.

    Args:
        scenario: a TOML path, a dict of raw values or a :class:`Scenario`.
        seed: random seed (default: the scenario's ``run.seed``).
        overrides: ``key.path=value`` strings applied to the scenario.
        backend: ``"auto"`` or a backend name (default: the scenario's ``run.backend``).
        out: run directory to write; nothing is written when ``None``.
        overwrite: replace an earlier run in ``out`` (otherwise a non-empty ``out`` is
            refused).
        progress: called after each sampled step with the simulation.
        flush_seconds: with ``out``, rewrite the outputs at least this often (seconds).
        checkpoint_every_days: with ``out``, write ``checkpoint.npz`` every this many
            simulated days.
        checkpoint_seconds: with ``out``, write it at least this often (wall seconds), so
            that a long run checkpoints without being asked; it is also written when a
            signal stops the run, and removed when the run completes.
        argv: the command line, recorded in the manifest.
        cache: start from the run-in cache (:mod:`immunesim.runin`): ``None`` for the
            default (on unless ``IMMUNESIM_CACHE=off``), ``False`` for a run from scratch,
            or a :class:`~immunesim.runin.RunInCache`. The results are the same bits either
            way; the manifest's ``run_in`` says how the run started.

    Raises:
        ScenarioError: for a bad scenario, override, seed or run directory.
        RunIOError: when writing the outputs failed (a full disk).
        RunInterrupted: (a ``KeyboardInterrupt``) after writing the partial outputs and a
            checkpoint (``status: interrupted``), when SIGINT, SIGTERM or SIGHUP stopped it.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    _check_seed(seed)
    s = load_scenario(scenario, overrides)
    out_path = prepare_out(out, overwrite) if out is not None else None
    with _stop_on_signals() as caught:
        jit_seconds = warm_up(backend or s.run.backend, (16, s.lattice.size))
        if caught:
            raise RunInterrupted(caught[0], None, False)
        sim, _ = runin.start(
            s, s.run.seed if seed is None else seed, backend or s.run.backend, cache
        )
        sim.jit_seconds = jit_seconds
        return _execute(
            sim, out_path, caught, progress, flush_seconds, checkpoint_every_days,
            checkpoint_seconds, argv if argv else sys.argv, resumed=[],
        )  # fmt: skip


def resume(
    run_dir: str | os.PathLike[str],
    *,
    backend: str | None = None,
    progress: Callable[[Simulation], None] | None = None,
    flush_seconds: float = 30.0,
    checkpoint_every_days: float | None = None,
    checkpoint_seconds: float = 600.0,
    argv: list[str] | None = None,
) -> RunResult:
    """Go on with an interrupted or killed run from its checkpoint, in its directory; the
    outputs are those of the uninterrupted run, bit for bit.

    Raises:
        ScenarioError: when the directory holds no run to resume (none, a complete one, one
            still running) or its checkpoint cannot be used.
    """
    d = Path(run_dir)
    manifest = resumable(d)
    try:
        sim = Simulation.load(d / checkpoint.FILE, backend=backend or "auto")
    except checkpoint.CheckpointError as exc:
        raise ScenarioError(str(run_dir), "", f"a run with a usable checkpoint: {exc}") from None
    resumed = list(manifest.get("resumed_at_steps", [])) + [sim.step_index]
    sim.run_in = manifest.get("run_in")
    with _stop_on_signals() as caught:
        sim.jit_seconds = warm_up(sim.backend_name, (16, sim.scenario.lattice.size))
        if caught:
            raise RunInterrupted(caught[0], None, True)
        return _execute(
            sim, d, caught, progress, flush_seconds, checkpoint_every_days,
            checkpoint_seconds, argv if argv else sys.argv, resumed=resumed,
        )  # fmt: skip


def resumable(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a run directory whose run can be resumed.

    Raises:
        ScenarioError: when it holds no run, a complete one, one still running or no
            checkpoint.
    """
    d = Path(run_dir)
    where = str(run_dir)
    if not d.is_dir():
        raise ScenarioError(where, "", "a run directory (there is none)")
    manifest: dict[str, Any] = {}
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    state = run_state(manifest)
    proc = manifest.get("process") or {}
    if state == "complete":
        raise ScenarioError(where, "", "a run to resume; this one is complete")
    if state == "running":
        raise ScenarioError(
            where,
            "",
            f"a stopped run; this one is still running (process {proc.get('pid')} on "
            f"{proc.get('host')}): stop it first",
        )
    if not (d / checkpoint.FILE).is_file():
        raise ScenarioError(
            where, "", f"a run with a checkpoint to go on from; there is no {checkpoint.FILE}"
        )
    return manifest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(manifest: dict[str, Any]) -> str:
    """What a run directory's manifest says of its run: ``complete``, ``interrupted``,
    ``failed``, ``running``, ``stale`` (says running, but its process on this host is gone)
    or ``none``."""
    status = manifest.get("status", "none")
    proc = manifest.get("process") or {}
    if status == "running" and proc.get("host") == socket.gethostname():
        pid = proc.get("pid")
        if not isinstance(pid, int) or not _pid_alive(pid):
            return "stale"
    return str(status)


def _execute(
    sim: Simulation,
    out: Path | None,
    caught: list[int],
    progress: Callable[[Simulation], None] | None,
    flush_seconds: float,
    checkpoint_every_days: float | None,
    checkpoint_seconds: float,
    argv: list[str],
    resumed: list[int],
) -> RunResult:
    s = sim.scenario
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    last_flush = [started]
    last_checkpoint = [started]
    ck_path = out / checkpoint.FILE if out is not None else None

    def results(status: str) -> RunResult:
        r = _results(sim, status, started, started_at, argv)
        r.manifest["resumed_at_steps"] = resumed
        r.manifest["checkpoint"] = (
            checkpoint.FILE if ck_path is not None and ck_path.exists() else None
        )
        return r

    def on_sample(sim_: Simulation) -> None:
        if progress is not None:
            progress(sim_)
        if out is None:
            return
        now = time.perf_counter()
        if now - last_checkpoint[0] > checkpoint_seconds:
            sim_.save(ck_path)  # type: ignore[arg-type]
            last_checkpoint[0] = now
        if now - last_flush[0] > flush_seconds:
            write_run(results("running"), out, s.output.parquet)
            last_flush[0] = time.perf_counter()

    if out is not None and s.output.snapshot_every_hours > 0:
        from immunesim.viz.snapshots import SnapshotWriter

        writer = SnapshotWriter(
            out, sim.backend.to_host(sim.state.zone).reshape(s.lattice.size, s.lattice.size)
        )
        every = max(1, int(round(s.output.snapshot_every_hours / s.time.dt_hours)))
        sim.add_observer(writer.write, every, s.step_of_day(s.output.snapshot_from_day))
    if out is not None and checkpoint_every_days:
        every = max(1, int(round(checkpoint_every_days * s.steps_per_day)))

        def save(sim_: Simulation) -> None:
            if sim_.step_index > 0 and not sim_.finished:
                sim_.save(ck_path)  # type: ignore[arg-type]
                last_checkpoint[0] = time.perf_counter()

        sim.add_observer(save, every)

    status = "failed"
    io_error: OSError | None = None
    try:
        if out is not None:
            write_run(results("running"), out, s.output.parquet)
        sim.run(callback=on_sample, stop=lambda: bool(caught))
        if caught:
            status = "interrupted"
            if out is not None:
                with _signals_held():
                    sim.save(ck_path)  # type: ignore[arg-type]
            raise RunInterrupted(caught[0], out, out is not None)
        status = "complete"
        if ck_path is not None:
            ck_path.unlink(missing_ok=True)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except OSError as exc:  # writing an output failed: the run stops, and says so below
        io_error = exc
    finally:
        # held from the first line: a cohort's pool ends its other workers with a second
        # SIGTERM once one worker has stopped, and the workers stop together, so that signal
        # tends to arrive while the last results are computed, not only while written
        with _signals_held():
            result = results(status)
            if out is not None:
                try:
                    write_run(result, out, s.output.parquet)
                except OSError as exc:
                    io_error = io_error or exc
    if io_error is not None:
        raise RunIOError(
            f"{out}: writing the outputs failed at step {sim.step_index} "
            f"({io_error.strerror or io_error}); the files written before are intact"
        ) from io_error
    return result

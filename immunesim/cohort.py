"""Cohorts of virtual patients: one scenario, per-patient parameters and seeds.

A scenario's ``[[variability]]`` entries give distributions over scenario values. Patient
``p`` of a cohort run with seed ``s`` draws its values from a generator seeded by
``(s, p)`` and runs with its own simulation seed, so patient ``p`` is the same whatever the
cohort size or the number of worker processes. Each patient's run directory is written as
by ``immunesim run``; ``cohort.csv`` holds one row per patient (drawn values and
endpoints) and ``cohort_summary.json`` the median and 90% interval of every numeric
endpoint.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from immunesim import io
from immunesim.rng import hash64_py
from immunesim.scenario import Scenario, ScenarioError, Variability, load_scenario

S_PATIENT = 101


def patient_seed(seed: int, patient: int) -> int:
    """Simulation seed of a cohort's patient (a hash of the cohort seed and the index)."""
    return hash64_py(seed, 0, patient, S_PATIENT) >> 1


def _incomplete(v: Variability, needs: str) -> str:
    return f"[[variability]] {v.key}: a {v.distribution} distribution needs {needs}"


def patient_values(s: Scenario, seed: int, patient: int) -> dict[str, float]:
    """The values a patient draws for each ``[[variability]]`` entry."""
    gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, patient])))
    out = {}
    for v in s.variability:
        if v.distribution == "lognormal":
            if v.median is None or v.sigma is None:
                raise ValueError(_incomplete(v, "median and sigma"))
            x = float(v.median * math.exp(v.sigma * gen.standard_normal()))
        elif v.distribution == "normal":
            if v.mean is None or v.sd is None:
                raise ValueError(_incomplete(v, "mean and sd"))
            x = max(0.0, float(v.mean + v.sd * gen.standard_normal()))
        else:
            if v.low is None or v.high is None:
                raise ValueError(_incomplete(v, "low and high"))
            x = float(gen.uniform(v.low, v.high))
        out[v.key] = x
    return out


def patient_scenario(s: Scenario, values: dict[str, float]) -> Scenario:
    """The scenario with a patient's drawn values applied (validated again)."""
    overrides = [f"{k}={v!r}" for k, v in values.items()]
    try:
        return load_scenario(s, overrides)
    except ScenarioError as exc:
        raise ScenarioError(f"<variability of {s.name}>", exc.key, exc.expected) from None


@dataclass(frozen=True)
class PatientTask:
    """One patient's run: the cohort's scenario (as a dump, for the worker processes), the
    cohort seed, the patient's index, its run directory and how to run it. ``values``
    are the patient's drawn values (drawn from the scenario's ``[[variability]]`` when
    ``None``)."""

    scenario: dict[str, Any]
    seed: int
    patient: int
    out_dir: str
    backend: str | None = None
    cache: bool | None = None
    values: dict[str, float] | None = None
    label: str | None = None


def _run_patient(task: PatientTask) -> dict[str, Any]:
    from immunesim.runner import run

    s = Scenario.model_validate(task.scenario)
    values = patient_values(s, task.seed, task.patient) if task.values is None else task.values
    ps = patient_scenario(s, values)
    pseed = patient_seed(task.seed, task.patient)
    try:
        res = run(
            ps,
            pseed,
            backend=task.backend,
            out=Path(task.out_dir) / f"patient_{task.patient:03d}",
            cache=task.cache,
        )
    except KeyboardInterrupt:
        if _IN_WORKER:  # stopped by the cohort: its outputs are written; the worker ends
            os._exit(130)
        raise
    row: dict[str, Any] = {"patient": task.patient, "seed": pseed}
    if task.label is not None:
        row["scenario"] = task.label
    row.update({f"param:{k}": v for k, v in values.items()})
    for k, v in res.endpoints.items():
        row[k] = v
    return row


def summarise(table: pd.DataFrame) -> dict[str, dict[str, float | int | str | None]]:
    """Median, 5th and 95th percentile and count of every numeric endpoint column; for a
    yes/no endpoint, ``n`` counts the patients for whom it is true (``median`` is None); for
    a categorical one, ``median`` is its most common value."""
    out: dict[str, dict[str, float | int | str | None]] = {}
    for col in table.columns:
        if col in ("patient", "seed") or col.startswith("param:"):
            continue
        flags = table[col].dropna()
        if len(flags) and all(isinstance(v, (bool, np.bool_)) for v in flags):
            out[col] = {
                "n": int(sum(bool(v) for v in flags)),
                "of": int(len(table)),
                "median": None,
                "p5": None,
                "p95": None,
            }
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        if not pd.api.types.is_numeric_dtype(table[col]) and values.isna().all():
            words = table[col].dropna().astype(str)
            if len(words):  # a categorical endpoint: its most common value
                mode = words.mode().iloc[0]
                out[col] = {
                    "n": int((words == mode).sum()),
                    "of": int(len(table)),
                    "median": mode,
                    "p5": None,
                    "p95": None,
                }
            continue
        reached = values.dropna()
        out[col] = {
            "n": int(reached.size),
            "of": int(len(table)),
            "median": float(reached.median()) if reached.size else None,
            "p5": float(reached.quantile(0.05)) if reached.size else None,
            "p95": float(reached.quantile(0.95)) if reached.size else None,
        }
    return out


#: Whether this process is a cohort's worker.
_IN_WORKER = False


def _worker_init() -> None:
    """In a worker: die with the parent (Linux), so that no worker outlives a killed cohort."""
    global _IN_WORKER
    _IN_WORKER = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the cohort's parent as Ctrl-C does (``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    sigs = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop_workers(ex: ProcessPoolExecutor) -> None:
    """Stop a pool's workers: pending patients are dropped, running ones get SIGTERM (each
    stops at a step boundary and writes its outputs and checkpoint), and are waited for."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():  # pragma: no cover - a worker that did not stop
            p.kill()


def run_cohort(
    scenario: Scenario,
    patients: int,
    out: str | os.PathLike[str],
    seed: int | None = None,
    jobs: int | None = None,
    backend: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    cache: bool | None = None,
    scheduler: str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Run ``patients`` virtual patients of a scenario; returns the table and summary.

    Workers are separate processes, each with one numba thread (several numba thread pools
    on the same cores slow each other down many times over). ``out`` must be new or empty
    (or hold an earlier run or cohort, replaced with ``overwrite``). ``cache`` is the
    run-in cache setting of each run (:func:`immunesim.runner.run`); ``scheduler``, the
    address of a dask cluster to run the patients on instead of local processes.
    """
    from immunesim.runner import prepare_out

    if patients < 1:
        raise ValueError("a cohort needs at least one patient")
    seed = int(scenario.run.seed if seed is None else seed)
    out = prepare_out(out, overwrite)
    dump = scenario.model_dump(mode="json")
    tasks = [PatientTask(dump, seed, p, str(out), backend, cache) for p in range(patients)]
    rows = run_patients(tasks, jobs, progress, scheduler)
    table = pd.DataFrame(rows).sort_values("patient").reset_index(drop=True)
    summary = {
        "scenario_name": scenario.name,
        "seed": seed,
        "patients": patients,
        "endpoints": summarise(table),
    }
    io.atomic_write(out / "cohort.csv", lambda p: table.to_csv(p, index=False))
    io.write_json(out / "cohort_summary.json", summary)
    return table, summary


def _on_dask(
    tasks: list[PatientTask], scheduler: str, progress: Callable[[int, int], None] | None
) -> list[dict[str, Any]]:
    from immunesim.sweep import _client

    with _client(scheduler, None) as client:
        from dask.distributed import as_completed

        futures = [client.submit(_run_patient, t, pure=False) for t in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        rows: list[dict[str, Any] | None] = [None] * len(tasks)
        for done, fut in enumerate(as_completed(futures), start=1):
            rows[index[fut.key]] = fut.result()
            if progress:
                progress(done, len(tasks))
    return [r for r in rows if r is not None]


def run_patients(
    tasks: list[PatientTask],
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run patients' tasks, in order on one process, on ``jobs`` worker processes (one
    numba thread each), or on the dask cluster at ``scheduler`` (the sweeps' executor;
    needs the ``dist`` extra); returns their rows in the tasks' order."""
    if scheduler is not None:
        return _on_dask(tasks, scheduler, progress)
    jobs = max(1, min(len(tasks), jobs or os.cpu_count() or 1))
    rows: list[dict[str, Any]] = []
    if jobs == 1:
        for t in tasks:
            rows.append(_run_patient(t))
            if progress:
                progress(len(rows), len(tasks))
        return rows
    env_before = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = "1"  # inherited by the worker processes
    try:
        import multiprocessing as mp

        ex = ProcessPoolExecutor(
            max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init
        )
        try:
            with _signals_interrupt():
                for row in ex.map(_run_patient, tasks):
                    rows.append(row)
                    if progress:
                        progress(len(rows), len(tasks))
        except BaseException:
            _stop_workers(ex)
            raise
        ex.shutdown()
    finally:
        if env_before is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = env_before
    return rows

"""Parameter sweeps: a design of scenario values crossed with seeds (or virtual patients),
run on dask.distributed.

A sweep file (TOML) names a scenario, a design and the parameters it varies::

    scenario = "scenarios/sle_cd19_cart.toml"  # relative to the sweep file
    design = "grid"            # or "lhs" (Latin hypercube), "sobol" (Saltelli, for Sobol indices)
    samples = 8                # lhs: points; sobol: base samples N (N * (D + 2) points)
    seeds = [1, 2]             # every design point runs with each seed
    set = ["lattice.size=60"]  # fixed overrides for every run
    [[parameter]]
    key = "therapy.2.dose_per_kg"
    values = [2.5e5, 1.0e6]    # grid; lhs and sobol take low and high (and log = true)

With ``patients = N`` each design point runs the scenario's virtual patients 0..N-1 of
each seed's cohort (their ``[[variability]]`` draws and seeds, as ``run --patients``), the
design's values applied over the patient's.

A sweep directory holds:

- ``sweep.json``: the sweep as resolved (the scenario included) and the software;
- ``design.csv``: one row per run: ``run``, ``point``, ``seed`` (``patient``), and a
  ``param:<key>`` column per parameter;
- ``results.parquet/``: a Parquet dataset, one file (one row) per finished run: the design
  columns, ``status`` (``ok`` or ``failed``), ``error``, ``wall_seconds`` and every endpoint;
- ``timeseries.parquet/``: a Parquet dataset, one file per finished run: its time series
  with a ``run`` column.

Files are written as runs finish, each atomically. Running the same sweep into the same
directory again skips the runs that finished (and retries failed ones), so a killed sweep
goes on where it stopped and ends with what an uninterrupted one gives.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator

from immunesim import io
from immunesim.scenario import Scenario, ScenarioError, load_scenario, read_toml
from immunesim.sections import Section

#: The files of a sweep directory.
SPEC_FILE, DESIGN_FILE = "sweep.json", "design.csv"
RESULTS_DIR, TIMESERIES_DIR = "results.parquet", "timeseries.parquet"
#: Columns of a results row before the endpoints.
STATUS_COLUMNS = ("status", "error", "wall_seconds")


class Parameter(Section):
    """A ``[[parameter]]`` of a sweep: a scenario key and the values it takes."""

    key: str = Field(description="Scenario key path, as for --set (therapy.2.dose_per_kg).")
    values: list[float] | None = Field(None, min_length=1, description="grid: the values.")
    low: float | None = Field(None, description="lhs, sobol: the lowest value.")
    high: float | None = Field(None, description="lhs, sobol: the highest value.")
    log: bool = Field(False, description="lhs, sobol: sample log10(value) uniformly.")


class SweepSpec(Section):
    """A sweep file."""

    scenario: str = Field(description="Scenario file, relative to the sweep file.")
    design: Literal["grid", "lhs", "sobol"] = Field("grid", description="How points are made.")
    samples: int = Field(8, ge=1, le=100_000, description="lhs: points; sobol: base samples N.")
    design_seed: int = Field(0, ge=0, lt=2**32, description="Seed of the lhs and sobol samples.")
    seeds: list[int] = Field(
        [1], min_length=1, description="Seeds every design point runs with (0 to 2**63-1)."
    )
    patients: int | None = Field(
        None, ge=1, le=100_000, description="Run virtual patients 0..N-1 of each seed's cohort."
    )
    set: list[str] = Field([], description="Overrides applied to every run (key.path=value).")
    parameter: list[Parameter] = Field(min_length=1, description="The parameters varied.")

    @model_validator(mode="after")
    def _complete(self) -> SweepSpec:
        for i, p in enumerate(self.parameter):
            where = f"parameter.{i}"
            if self.design == "grid":
                if p.values is None:
                    raise _Keyed(f"{where}.values", "a list of values (design = 'grid')")
                continue
            if p.low is None or p.high is None:
                raise _Keyed(f"{where}.low", f"low and high (design = '{self.design}')")
            if not p.low < p.high:
                raise _Keyed(f"{where}.high", f"a value above low = {p.low} (got {p.high})")
            if p.log and p.low <= 0:
                raise _Keyed(f"{where}.low", f"a value above 0 with log = true (got {p.low})")
        keys = [p.key for p in self.parameter]
        if len(set(keys)) < len(keys):
            raise _Keyed("parameter", f"each key once (got {keys})")
        for i, s in enumerate(self.seeds):
            if not 0 <= s < 2**63:
                raise _Keyed(f"seeds.{i}", f"a whole number from 0 to 2**63-1 (got {s})")
        return self


class _Keyed(ValueError):
    def __init__(self, key: str, expected: str):
        super().__init__(expected)
        self.key, self.expected = key, expected


@dataclass(frozen=True)
class Sweep:
    """A sweep file, read and checked: its spec, the scenario and the run table."""

    spec: SweepSpec
    scenario: Scenario
    file: str
    design: pd.DataFrame  # one row per run: run, point, seed[, patient], param:<key>...

    @property
    def params(self) -> list[str]:
        return [p.key for p in self.spec.parameter]


def _points(spec: SweepSpec) -> np.ndarray:
    """The design points, one row per point and one column per parameter."""
    ps = spec.parameter
    if spec.design == "grid":
        return np.array(list(itertools.product(*[p.values or [] for p in ps])), dtype=float)
    if spec.design == "lhs":
        from scipy.stats import qmc

        unit = qmc.LatinHypercube(d=len(ps), seed=spec.design_seed).random(spec.samples)
    else:
        from SALib.sample import sobol as saltelli

        unit = saltelli.sample(
            _problem(spec, unit=True), spec.samples, calc_second_order=False, seed=spec.design_seed
        )
    cols = []
    for j, p in enumerate(ps):
        assert p.low is not None and p.high is not None  # checked by SweepSpec
        lo, hi = (math.log10(p.low), math.log10(p.high)) if p.log else (p.low, p.high)
        x = lo + unit[:, j] * (hi - lo)
        cols.append(10.0**x if p.log else x)
    return np.column_stack(cols)


def _problem(spec: SweepSpec, unit: bool = False) -> dict[str, Any]:
    """The SALib problem of a sweep (on the unit cube with ``unit``)."""
    return {
        "num_vars": len(spec.parameter),
        "names": [p.key for p in spec.parameter],
        "bounds": [[0.0, 1.0] if unit else [p.low, p.high] for p in spec.parameter],
    }


def _override(key: str, value: float) -> str:
    return f"{key}={value!r}"


def read_spec(cls: type[Any], path: str | os.PathLike[str], what: str) -> tuple[Any, Scenario]:
    """A sweep-like file (a sweep, a fit) validated by ``cls``, and its scenario (relative
    to the file) with the file's ``set`` overrides.

    Raises:
        ScenarioError: naming the file, the key and what was expected.
    """
    file = str(path)
    raw = read_toml(path)
    try:
        spec = cls.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, _Keyed):
            raise ScenarioError(file, inner.key, inner.expected) from None
        key = ".".join(str(p) for p in err["loc"])
        msg = (
            f"unknown key (not part of the {what} schema; check the spelling)"
            if err["type"] == "extra_forbidden"
            else "required key is missing"
            if err["type"] == "missing"
            else f"{err['msg']} (got {err.get('input')!r})"
        )
        raise ScenarioError(file, key, msg) from None
    scenario_file = Path(spec.scenario)
    if not scenario_file.is_absolute():
        scenario_file = Path(path).parent / scenario_file
    return spec, load_scenario(scenario_file, spec.set)


def read_sweep(path: str | os.PathLike[str]) -> Sweep:
    """Read and check a sweep file: its keys, its scenario, and every design point's
    values against the scenario's schema (so that no run fails on bad input).

    Raises:
        ScenarioError: naming the file (the sweep's or the scenario's), the key and what
            was expected.
    """
    from immunesim.cohort import patient_seed

    file = str(path)
    spec, base = read_spec(SweepSpec, path, "sweep")
    if spec.patients is not None and not base.variability:
        raise ScenarioError(file, "patients", f"a scenario with [[variability]] ({spec.scenario})")
    points = _points(spec)
    for i, p in enumerate(spec.parameter):  # every value the design gives, checked once
        for v in (points[:, i].min(), points[:, i].max()):
            try:
                load_scenario(base, [_override(p.key, float(v))])
            except ScenarioError as exc:
                raise ScenarioError(
                    file, f"parameter.{i}", f"{exc.key or p.key} = {v:g}: {exc.expected}"
                ) from None
    keys = [p.key for p in spec.parameter]
    rows: list[dict[str, Any]] = []
    for point, values in enumerate(points):
        for seed in spec.seeds:
            for patient in range(spec.patients or 1):
                row: dict[str, Any] = {"run": len(rows), "point": point}
                if spec.patients is None:
                    row["seed"] = seed
                else:
                    row["cohort_seed"], row["patient"] = seed, patient
                    row["seed"] = patient_seed(seed, patient)
                row.update({f"param:{k}": float(v) for k, v in zip(keys, values, strict=True)})
                rows.append(row)
    return Sweep(spec, base, file, pd.DataFrame(rows))


def _run_one(scenario_dump: dict[str, Any], design: dict[str, Any], params: list[str]) -> tuple:
    """Run one design row (in a worker); returns its results row and time series. A failure
    is a row with ``status = failed`` and the error, not an exception."""
    from immunesim.cohort import patient_scenario, patient_values
    from immunesim.runner import run

    row = dict(design)
    started = time.perf_counter()
    try:
        s = Scenario.model_validate(scenario_dump)
        s = load_scenario(s, [_override(k, design[f"param:{k}"]) for k in params])
        if "patient" in design:  # drawn from the design's distributions (variability.N.*)
            drawn = patient_values(s, design["cohort_seed"], design["patient"])
            s = patient_scenario(s, {k: v for k, v in drawn.items() if k not in params})
        res = run(s, int(design["seed"]))
    except Exception as exc:  # recorded, the sweep goes on
        row.update(
            status="failed", error=_one_line(exc), wall_seconds=time.perf_counter() - started
        )
        return row, None
    row.update(status="ok", error="", wall_seconds=time.perf_counter() - started)
    row.update({k: _plain(v) for k, v in res.endpoints.items()})
    ts = res.timeseries.copy()
    ts.insert(0, "run", design["run"])
    return row, ts


def _one_line(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last.replace("\n", " ")[:500]


def _part(run: int) -> str:
    return f"run-{run:06d}.parquet"


def finished_runs(out: Path) -> set[int]:
    """Runs whose results are in ``out`` with status ``ok``."""
    d = out / RESULTS_DIR
    if not d.is_dir():
        return set()
    done = set()
    for f in d.glob("run-*.parquet"):
        try:
            status = pd.read_parquet(f, columns=["status"])["status"].iloc[0]
        except (OSError, ValueError, KeyError, IndexError):
            continue  # unreadable: run again
        if status == "ok":
            done.add(int(f.stem.split("-")[1]))
    return done


def _record(sweep: Sweep, out: Path) -> None:
    """Write ``sweep.json`` and ``design.csv``, or check that ``out`` holds this very sweep."""
    from immunesim import __version__

    record = {
        "immunesim_sweep": 1,
        "sweep_file": sweep.file,
        "spec": sweep.spec.model_dump(mode="json"),
        "scenario": sweep.scenario.model_dump(mode="json"),
        "runs": len(sweep.design),
    }
    spec_file = out / SPEC_FILE
    if spec_file.exists():
        try:
            old = json.loads(spec_file.read_text())
        except (OSError, ValueError):
            old = {}
        same = all(old.get(k) == record[k] for k in ("spec", "scenario", "runs"))
        if not same:
            raise ScenarioError(
                out, "", "a sweep directory of this sweep: it holds another sweep (use a new "
                "--out, or --overwrite to replace it)",
            )  # fmt: skip
        return
    record["versions"] = io.versions()
    record["immunesim_version"] = __version__
    io.write_json(spec_file, record)
    io.atomic_write(out / DESIGN_FILE, lambda p: sweep.design.to_csv(p, index=False))


def prepare_sweep_out(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``out`` ready for a sweep: new, empty, holding a sweep (to go on with, or to clear
    with ``overwrite``); anything else is refused."""
    import shutil

    from immunesim.runner import prepare_out

    p = Path(out)
    if (p / SPEC_FILE).is_file():
        if overwrite:
            for child in p.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        return p
    return prepare_out(p, overwrite)


@contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A dask.distributed client: of the cluster at ``scheduler``, or of a new local
    cluster of ``workers`` single-threaded worker processes (default: one a core)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ScenarioError(
            "--workers", "", "dask.distributed for sweeps: pip install 'immunesim[dist]'"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, ValueError, TypeError) as exc:
            raise ScenarioError(
                "--scheduler", scheduler, f"the address of a running dask scheduler ({exc})"
            ) from None
        with client:
            yield client
        return
    n = max(1, workers or os.cpu_count() or 1)
    before = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = "1"  # one numba thread a worker: inherited by them
    try:
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    finally:
        if before is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = before


def run_sweep(
    sweep: Sweep | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    overwrite: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
) -> pd.DataFrame:
    """Run a sweep into ``out`` and return its results (as :func:`load_sweep` would).

    Args:
        sweep: a sweep file or a :class:`Sweep`.
        out: the sweep directory: new, empty, or holding this sweep (its finished runs are
            skipped).
        scheduler: address of a running dask scheduler (``tcp://host:8786``).
        workers: worker processes of the local cluster made otherwise (default: cores).
        client: a ``dask.distributed.Client`` to use instead (the caller owns it).
        overwrite: clear a directory holding another sweep first.
        progress: called with (runs finished, runs failed, runs in all) as runs finish.

    Raises:
        ScenarioError: for a bad sweep file, scenario or directory (before any run).
    """
    sw = sweep if isinstance(sweep, Sweep) else read_sweep(sweep)
    out_path = prepare_sweep_out(out, overwrite)
    _record(sw, out_path)
    done = finished_runs(out_path)
    todo = [r for r in sw.design.to_dict("records") if r["run"] not in done]
    total, failed = len(sw.design), 0
    if progress:
        progress(len(done), 0, total)
    if todo:
        dump = sw.scenario.model_dump(mode="json")
        with _client(scheduler, workers) if client is None else nullcontext(client) as c:
            from dask.distributed import as_completed

            futures = [
                c.submit(_run_one, dump, r, sw.params, key=f"immunesim-run-{r['run']}", pure=False)
                for r in todo
            ]
            by_run = {f.key: r for f, r in zip(futures, todo, strict=True)}
            for fut in as_completed(futures):
                try:
                    row, ts = fut.result()
                except Exception as exc:  # the worker died (killed, out of memory)
                    row = dict(by_run[fut.key], status="failed", error=_one_line(exc))
                    row["wall_seconds"] = float("nan")
                    ts = None
                _write_result(out_path, row, ts)
                if row["status"] == "ok":
                    done.add(row["run"])
                else:
                    failed += 1
                if progress:
                    progress(len(done), failed, total)
    return load_sweep(out_path).results


def _write_result(out: Path, row: dict[str, Any], ts: pd.DataFrame | None) -> None:
    name = _part(int(row["run"]))
    if ts is not None:  # the time series first: a results row says its run is complete
        io.atomic_write(out / TIMESERIES_DIR / name, lambda p: ts.to_parquet(p, index=False))
    frame = pd.DataFrame([row])
    io.atomic_write(out / RESULTS_DIR / name, lambda p: frame.to_parquet(p, index=False))


def _plain(v: Any) -> Any:
    """A value Parquet stores in one column type whatever the run (None for NaN and inf)."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return float(v)  # an endpoint that is sometimes NaN is a float column
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class SweepResults:
    """A sweep directory, loaded.

    Attributes:
        results: one row per finished run (design columns, status, endpoints), by run.
        timeseries: the time series of the runs that finished, stacked, with a ``run``
            column (tidy: one row per run and sampled day).
        design: every run of the sweep, finished or not.
        spec: the sweep as resolved (``sweep.json``).
    """

    results: pd.DataFrame
    timeseries: pd.DataFrame
    design: pd.DataFrame
    spec: dict[str, Any]

    @property
    def params(self) -> list[str]:
        return [c for c in self.design.columns if c.startswith("param:")]

    def to_xarray(self) -> Any:
        """The time series as an ``xarray.Dataset`` over (run, day), one variable per
        metric, with the design values and seeds as coordinates along ``run``."""
        import xarray as xr

        ts = self.timeseries.set_index(["run", "day"]).drop(columns=["step"], errors="ignore")
        ds = xr.Dataset.from_dataframe(ts)
        design = self.design.set_index("run").loc[ds["run"].values]
        coords = {c.removeprefix("param:"): ("run", design[c].to_numpy()) for c in design}
        return ds.assign_coords(coords)


def load_sweep(path: str | os.PathLike[str]) -> SweepResults:
    """Load a sweep directory (finished or not): results, time series, design.

    Raises:
        ScenarioError: when ``path`` is not a sweep directory.
    """
    p = Path(path)
    if not (p / SPEC_FILE).is_file() or not (p / DESIGN_FILE).is_file():
        raise ScenarioError(p, "", f"a sweep directory (with {SPEC_FILE} and {DESIGN_FILE})")
    spec = json.loads((p / SPEC_FILE).read_text())
    design = pd.read_csv(p / DESIGN_FILE)

    def dataset(name: str) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted((p / name).glob("run-*.parquet")) if (p / name).is_dir() else []
        if not files:
            return pd.DataFrame()
        # one file a run; an endpoint a run did not reach is a null column there
        tables = [pq.read_table(f) for f in files]
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    results = dataset(RESULTS_DIR)
    if len(results):
        results = results.sort_values("run").reset_index(drop=True)
    return SweepResults(results, dataset(TIMESERIES_DIR), design, spec)


def sobol_indices(
    sweep_dir: str | os.PathLike[str], endpoints: list[str] | None = None
) -> pd.DataFrame:
    """Sobol first-order (S1) and total-order (ST) indices, with 95% confidence intervals,
    of each numeric endpoint of a finished ``design = "sobol"`` sweep (SALib).

    Runs with several seeds (or patients) at a design point count as one evaluation, the
    mean of the endpoint over them. An endpoint that some run did not reach (NaN) is left
    out, as are constant ones.

    Returns:
        one row per (endpoint, parameter): ``S1``, ``S1_conf``, ``ST``, ``ST_conf``.

    Raises:
        ScenarioError: when the sweep is not a Sobol design, or not finished.
    """
    from SALib.analyze import sobol

    res = load_sweep(sweep_dir)
    spec = SweepSpec.model_validate(res.spec["spec"])
    where = Path(sweep_dir)
    if spec.design != "sobol":
        raise ScenarioError(where, "design", f"a sweep with design = 'sobol' (got {spec.design!r})")
    ok = res.results[res.results["status"] == "ok"] if len(res.results) else res.results
    if len(ok) < len(res.design):
        raise ScenarioError(
            where, "", f"a finished sweep: {len(ok)} of {len(res.design)} runs finished "
            "(run the sweep again to finish it)",
        )  # fmt: skip
    means = ok.drop(columns=["run", "seed"]).groupby("point").mean(numeric_only=True)
    names = endpoints or [
        c for c in means.columns
        if not c.startswith("param:") and c not in ("cohort_seed", "patient", "wall_seconds")
    ]  # fmt: skip
    problem = _problem(spec)
    rows = []
    for name in names:
        y = means[name].to_numpy(dtype=float)
        if np.isnan(y).any() or np.ptp(y) == 0:
            continue
        si = sobol.analyze(
            problem, y, calc_second_order=False, seed=spec.design_seed, print_to_console=False
        )
        for j, key in enumerate(problem["names"]):
            rows.append({
                "endpoint": name, "parameter": key,
                "S1": si["S1"][j], "S1_conf": si["S1_conf"][j],
                "ST": si["ST"][j], "ST_conf": si["ST_conf"][j],
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["endpoint", "parameter", "S1", "S1_conf", "ST", "ST_conf"])


def plot_sobol(table: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """Bar chart of first- and total-order indices (with their confidence intervals), one
    panel per endpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = list(dict.fromkeys(table["endpoint"]))
    cols = min(3, max(1, len(ends)))
    rows = max(1, math.ceil(len(ends) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, ends, strict=False):
        t = table[table["endpoint"] == name]
        x = np.arange(len(t))
        ax.bar(x - 0.2, t["S1"], 0.4, yerr=t["S1_conf"], label="first order (S1)", color="#0072B2")
        ax.bar(x + 0.2, t["ST"], 0.4, yerr=t["ST_conf"], label="total (ST)", color="#E69F00")
        ax.set_xticks(x, [p.split(".")[-1] for p in t["parameter"]], rotation=30, ha="right")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-0.1, 1.1)
        ax.axhline(0, color="grey", lw=0.5)
    for ax in list(axes.flat)[len(ends) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = io.save_figure(fig, out, dpi=110)
    plt.close(fig)
    return path

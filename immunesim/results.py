"""Outputs loaded back: a run, a cohort, a comparison or a sweep as tidy pandas frames.

``immunesim.load_run(DIR)`` reads any directory immunesim writes and returns a
:class:`Results`:

- ``endpoints``: one row per run (``run``, ``group``, ``seed``, drawn or design values as
  ``param:...`` columns, then every endpoint);
- ``timeseries``: the time series of every run stacked, tidy (``run``, ``group``, then the
  columns of ``timeseries.csv``: one row per run and sampled day);
- ``to_xarray()``: the time series as an ``xarray.Dataset`` over (run, day), with ``group``
  and the drawn values as coordinates along ``run``.

``group`` is what a figure compares: the scenario's name for a run or a cohort, the arm for
a comparison, ``sweep`` for a sweep. ``run`` is ``patient_NNN`` (cohort), ``<arm>/patient_NNN``
(comparison), the sweep's run number, or the run's directory name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from immunesim.scenario import ScenarioError

KINDS = ("run", "cohort", "compare", "sweep")


@dataclass
class Results:
    """What :func:`load_run` read (see the module's documentation).

    Attributes:
        kind: ``run``, ``cohort``, ``compare`` or ``sweep``.
        path: the directory.
        endpoints: one row per run.
        timeseries: every run's time series, stacked (tidy).
        manifests: the manifest of each run (by ``run``; a sweep keeps its spec instead).
        summary: the directory's own summary (``cohort_summary.json``,
            ``compare_summary.json``, a sweep's ``sweep.json``; empty for a run).
    """

    kind: str
    path: Path
    endpoints: pd.DataFrame
    timeseries: pd.DataFrame
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        """The groups, in the order they first appear."""
        return list(dict.fromkeys(self.endpoints["group"])) if len(self.endpoints) else []

    @property
    def scenario(self) -> dict[str, Any]:
        """The scenario (as resolved) of the first run."""
        for m in self.manifests.values():
            if "scenario" in m:
                return m["scenario"]
        scenario = self.summary.get("scenario")  # a sweep's, as resolved
        return dict(scenario) if isinstance(scenario, dict) else {}

    def to_xarray(self) -> Any:
        """The time series as an ``xarray.Dataset`` over (run, day), one variable per
        metric, with ``group``, ``seed`` and the ``param:`` values as coordinates on
        ``run`` (needs xarray: ``pip install 'immunesim[dist]'``)."""
        import xarray as xr

        ts = self.timeseries.drop(columns=["group", "step"], errors="ignore")
        ds = xr.Dataset.from_dataframe(ts.set_index(["run", "day"]))
        by_run = self.endpoints.set_index("run").loc[ds["run"].values]
        keep = ["group", "seed", *[c for c in by_run.columns if c.startswith("param:")]]
        coords = {c.removeprefix("param:"): ("run", by_run[c].to_numpy()) for c in keep}
        return ds.assign_coords(coords)


def kind_of(path: str | os.PathLike[str]) -> str | None:
    """What immunesim wrote in a directory: one of :data:`KINDS`, or ``None``."""
    p = Path(path)
    if (p / "compare.csv").is_file():
        return "compare"
    if (p / "cohort.csv").is_file():
        return "cohort"
    if (p / "sweep.json").is_file():
        return "sweep"
    if (p / "manifest.json").is_file() and (p / "timeseries.csv").is_file():
        return "run"
    return None


def _one(d: Path, run: str, group: str | None = None) -> tuple[dict, pd.DataFrame, dict]:
    """Endpoints row, time series and manifest of one run directory."""
    manifest = json.loads((d / "manifest.json").read_text())
    ends_file = d / "endpoints.json"
    ends = json.loads(ends_file.read_text()) if ends_file.is_file() else {}
    name = group or str(manifest.get("scenario_name", d.name))
    row = {"run": run, "group": name, "seed": manifest.get("seed"), **ends}
    parquet = d / "timeseries.parquet"
    ts = pd.read_parquet(parquet) if parquet.is_file() else pd.read_csv(d / "timeseries.csv")
    ts.insert(0, "group", name)
    ts.insert(0, "run", run)
    return row, ts, manifest


def _stack(
    dirs: Sequence[tuple[Path, str, str | None]], table: pd.DataFrame | None, key: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    rows, series, manifests = [], [], {}
    for d, run, group in dirs:
        row, ts, manifest = _one(d, run, group)
        rows.append(row)
        series.append(ts)
        manifests[run] = manifest
    ends = pd.DataFrame(rows)
    if table is not None and len(ends):  # the drawn values, from the directory's table
        params = [c for c in table.columns if c.startswith("param:")]
        if params:
            ends = ends.merge(table[key + params], on=key, how="left")
    return ends, pd.concat(series, ignore_index=True) if series else pd.DataFrame(), manifests


def load_run(path: str | os.PathLike[str]) -> Results:
    """Read a run, cohort, comparison or sweep directory (see the module's documentation).

    Raises:
        ScenarioError: when the directory holds none of them.
    """
    p = Path(path)
    kind = kind_of(p)
    if kind is None:
        raise ScenarioError(
            p, "", "a directory immunesim wrote: a run, a cohort, a comparison or a sweep"
        )
    if kind == "run":
        ends, ts, manifests = _stack([(p, p.name, None)], None, [])
        return Results(kind, p, ends, ts, manifests)
    if kind == "cohort":
        table = pd.read_csv(p / "cohort.csv")
        table["run"] = [f"patient_{int(i):03d}" for i in table["patient"]]
        dirs = [(p / run, run, None) for run in table["run"] if (p / run).is_dir()]
        ends, ts, manifests = _stack(dirs, table, ["run"])
        summary = json.loads((p / "cohort_summary.json").read_text())
        return Results(kind, p, ends, ts, manifests, summary)
    if kind == "compare":
        table = pd.read_csv(p / "compare.csv")
        pairs = zip(table["scenario"], table["patient"], strict=True)
        table["run"] = [f"{arm}/patient_{int(i):03d}" for arm, i in pairs]
        dirs = [(p / run, run, run.split("/")[0]) for run in table["run"] if (p / run).is_dir()]
        ends, ts, manifests = _stack(dirs, table, ["run"])
        summary = json.loads((p / "compare_summary.json").read_text())
        return Results(kind, p, ends, ts, manifests, summary)
    from immunesim.sweep import load_sweep

    sw = load_sweep(p)
    ends = sw.results.copy()
    if len(ends):
        ends["run"] = ends["run"].astype(str)
        ends.insert(1, "group", "sweep")
    ts = sw.timeseries.copy()
    if len(ts):
        ts["run"] = ts["run"].astype(str)
        ts.insert(1, "group", "sweep")
    return Results(kind, p, ends, ts, {}, sw.spec)


__all__ = ["KINDS", "Results", "kind_of", "load_run"]

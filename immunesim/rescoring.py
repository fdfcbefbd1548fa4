"""Scoring stored runs again: their endpoints under other ``[endpoints]`` settings.

A run's endpoints are a function of its time series and its scenario (the ``[endpoints]``
section says how they are read: detection limits, the remission score, the CRS proxy's
grade cut-offs). ``immunesim rescore DIR --set endpoints.KEY=VALUE`` computes them again
from the stored time series of a run, a cohort or a comparison, with the manifest's
scenario and the overrides, and rewrites what depends on them:

- each run's ``endpoints.json``, and its ``manifest.json`` (the scenario's ``[endpoints]``
  section as now used, and a ``rescored`` record: when, with which overrides);
- a cohort's ``cohort.csv`` and ``cohort_summary.json``;
- a comparison's ``compare.csv``, ``paired.csv`` and ``compare_summary.json``.

Only ``endpoints.*`` keys may be overridden: any other key changes the simulation, and
its runs must be made again. Every run is scored before anything is written, and each
file is replaced atomically, so a bad override or an unreadable run leaves the directory
as it was; scoring again with the same overrides gives the same files (a run stopped
half-way through the writing is finished by running it again).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from immunesim import io
from immunesim.observe import endpoints as compute_endpoints
from immunesim.results import kind_of
from immunesim.scenario import Scenario, ScenarioError, load_scenario, parse_override

#: The scenario sections an override may touch (the rest change the simulation).
SCORING_SECTIONS = ("endpoints",)


@dataclass
class Rescored:
    """What :func:`rescore` computed (and, unless a dry run, wrote).

    Attributes:
        kind: ``run``, ``cohort`` or ``compare``.
        path: the directory.
        runs: the run directories scored, in the directory's order.
        before: each run's endpoints as they were stored (by run directory).
        after: each run's endpoints as scored now.
        written: the files rewritten (empty for a dry run).
    """

    kind: str
    path: Path
    runs: list[Path]
    before: dict[Path, dict[str, Any]]
    after: dict[Path, dict[str, Any]]
    written: list[Path] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    manifests: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False)

    def changes(self) -> pd.DataFrame:
        """One row per endpoint whose value changed in any run: how many runs changed,
        and the median before and after (over the runs where it has a number)."""
        rows = []
        names = dict.fromkeys(k for r in self.runs for k in (*self.before[r], *self.after[r]))
        for name in names:
            old = [self.before[r].get(name) for r in self.runs]
            new = [self.after[r].get(name) for r in self.runs]
            changed = sum(not _same(a, b) for a, b in zip(old, new, strict=True))
            if changed:
                rows.append(
                    {
                        "endpoint": name,
                        "runs_changed": changed,
                        "of": len(self.runs),
                        "median_before": _median(old),
                        "median_after": _median(new),
                    }
                )
        return pd.DataFrame(
            rows, columns=["endpoint", "runs_changed", "of", "median_before", "median_after"]
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _median(values: list[Any]) -> float | None:
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna()
    return float(v.median()) if len(v) else None


def check_overrides(overrides: list[str]) -> None:
    """Refuse overrides outside :data:`SCORING_SECTIONS`.

    Raises:
        ScenarioError: naming the override and what is allowed.
    """
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] not in SCORING_SECTIONS:
            raise ScenarioError(
                "--set",
                ".".join(path),
                "an endpoints.* key: scoring again reads the stored time series, and "
                "other keys change the simulation (make the runs again with --set)",
            )


def _run_dirs(path: Path, kind: str) -> list[Path]:
    if kind == "run":
        return [path]
    table_file = path / ("cohort.csv" if kind == "cohort" else "compare.csv")
    try:
        table = pd.read_csv(table_file)
        if kind == "cohort":
            names = [f"patient_{int(i):03d}" for i in table["patient"]]
        else:
            pairs = zip(table["scenario"], table["patient"], strict=True)
            names = [f"{arm}/patient_{int(i):03d}" for arm, i in pairs]
    except (OSError, ValueError, KeyError) as exc:
        raise ScenarioError(
            table_file, "", f"a readable table with patient columns ({exc})"
        ) from None
    dirs = [path / n for n in names]
    for d in dirs:
        if not (d / "manifest.json").is_file():
            raise ScenarioError(table_file, d.name, f"the run directory {d} (with manifest.json)")
    return dirs


def _infused(d: Path) -> int:
    """CAR-T agents infused in a run, from its events."""
    events_file = d / "events.json"
    if not events_file.is_file():
        return 0
    try:
        events = json.loads(events_file.read_text()).get("events", [])
    except (OSError, ValueError) as exc:
        raise ScenarioError(events_file, "", f"readable events ({exc})") from None
    return sum(int(e["detail"].get("cells", 0)) for e in events if e.get("kind") == "car_t")


def _timeseries(d: Path) -> pd.DataFrame:
    parquet, csv = d / "timeseries.parquet", d / "timeseries.csv"
    source = parquet if parquet.is_file() else csv
    try:
        return pd.read_parquet(source) if source == parquet else pd.read_csv(source)
    except (OSError, ValueError) as exc:  # pyarrow's and pandas' read errors are ValueErrors
        raise ScenarioError(source, "", f"a readable time series ({exc})") from None


def _score(d: Path, overrides: list[str]) -> tuple[dict, dict, Scenario]:
    """A run's stored endpoints and manifest, and its scenario with the overrides."""
    manifest_file = d / "manifest.json"
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScenarioError(manifest_file, "", f"a readable manifest ({exc})") from None
    if "scenario" not in manifest:
        raise ScenarioError(manifest_file, "scenario", "the run's scenario as resolved")
    try:
        s = load_scenario(manifest["scenario"], overrides)
    except ScenarioError as exc:
        raise ScenarioError(
            manifest_file if exc.key.split(".")[0] not in SCORING_SECTIONS else "--set",
            exc.key,
            exc.expected,
        ) from None
    return manifest, s.model_dump(mode="json"), s


def rescore(path: str | os.PathLike[str], overrides: list[str], dry_run: bool = False) -> Rescored:
    """Score the runs of a run, cohort or comparison directory again (see the module's
    documentation); with ``dry_run``, compute and write nothing.

    Raises:
        ScenarioError: an override outside ``[endpoints]`` or with a bad value, or a
            directory that is none of a run, a cohort or a comparison.
    """
    p = Path(path)
    kind = kind_of(p)
    if kind is None or kind == "sweep":
        raise ScenarioError(
            p,
            "",
            "a run, cohort or comparison directory (a sweep keeps no scenario per run: "
            "run the sweep again with the new settings in its set list)"
            if kind == "sweep"
            else "a run, cohort or comparison directory",
        )
    check_overrides(overrides)
    dirs = _run_dirs(p, kind)
    before: dict[Path, dict[str, Any]] = {}
    after: dict[Path, dict[str, Any]] = {}
    manifests: dict[Path, dict[str, Any]] = {}
    for d in dirs:  # everything is scored before anything is written
        manifest, dump, s = _score(d, overrides)
        ends_file = d / "endpoints.json"
        try:
            before[d] = json.loads(ends_file.read_text()) if ends_file.is_file() else {}
        except (OSError, ValueError):
            before[d] = {}  # unreadable: scored again from the time series
        df = _timeseries(d)
        after[d] = compute_endpoints(df, s, _infused(d)) if len(df) else {}
        manifest["scenario"] = dump
        manifests[d] = manifest
    result = Rescored(kind, p, dirs, before, after, [], list(overrides), manifests)
    if not dry_run:
        write(result)
    return result


def write(result: Rescored) -> None:
    """Write what :func:`rescore` computed with ``dry_run`` (each file atomically): the
    runs' endpoints and manifests, then the directory's tables and summary."""
    if result.written:
        raise ValueError(f"{result.path}: already written")
    stamp = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "set": list(result.overrides),
        "immunesim": _version(),
    }
    p, dirs, after = result.path, result.runs, result.after
    for d in dirs:
        io.write_json(d / "endpoints.json", after[d])
        result.manifests[d].setdefault("rescored", []).append(stamp)
        io.write_json(d / "manifest.json", result.manifests[d])
        result.written += [d / "endpoints.json", d / "manifest.json"]
    if result.kind == "cohort":
        result.written += _cohort_tables(p, dirs, after)
    elif result.kind == "compare":
        result.written += _compare_tables(p, dirs, after)


def _version() -> str:
    from immunesim import __version__

    return __version__


def _table(table_file: Path, dirs: list[Path], after: dict[Path, dict[str, Any]]) -> pd.DataFrame:
    """A cohort's or comparison's table with each row's endpoints replaced: its first
    columns (patient, scenario, seed, drawn values) kept, the endpoints as scored now."""
    old = pd.read_csv(table_file)
    keep = [
        c for c in old.columns if c in ("patient", "scenario", "seed") or c.startswith("param:")
    ]
    rows = []
    for (_, row), d in zip(old.iterrows(), dirs, strict=True):
        # a drawn value that only some arms have is left out of the others' rows, as the
        # comparison left it, so the columns come in the order it wrote them
        first = {c: row[c] for c in keep if not pd.isna(row[c])}
        first["patient"] = int(first["patient"])
        if "seed" in first:
            first["seed"] = int(first["seed"])
        rows.append({**first, **after[d]})
    return pd.DataFrame(rows)


def _cohort_tables(p: Path, dirs: list[Path], after: dict[Path, dict[str, Any]]) -> list[Path]:
    from immunesim.cohort import summarise

    table = _table(p / "cohort.csv", dirs, after)
    summary = json.loads((p / "cohort_summary.json").read_text())
    summary["endpoints"] = summarise(table)
    io.atomic_write(p / "cohort.csv", lambda f: table.to_csv(f, index=False))
    io.write_json(p / "cohort_summary.json", summary)
    return [p / "cohort.csv", p / "cohort_summary.json"]


def _compare_tables(p: Path, dirs: list[Path], after: dict[Path, dict[str, Any]]) -> list[Path]:
    from immunesim.compare import paired, summarise_paired

    table = _table(p / "compare.csv", dirs, after)
    summary = json.loads((p / "compare_summary.json").read_text())
    names = list(summary.get("scenarios") or dict.fromkeys(table["scenario"]))
    pairs = paired(table, names)
    summary["paired_differences"] = summarise_paired(pairs)
    io.atomic_write(p / "compare.csv", lambda f: table.to_csv(f, index=False))
    io.atomic_write(p / "paired.csv", lambda f: pairs.to_csv(f, index=False))
    io.write_json(p / "compare_summary.json", summary)
    return [p / "compare.csv", p / "paired.csv", p / "compare_summary.json"]


__all__ = ["SCORING_SECTIONS", "Rescored", "check_overrides", "rescore", "write"]

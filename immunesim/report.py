"""Validation report: runs (or cohorts) side by side with the published clinical facts.

``immunesim report RUNDIR... --out report.md`` (or ``.html``) writes:

- a table of every published target (``immunesim/data/clinical_targets.toml``) with the
  simulated value of each run, marked met or missed against the target's tolerance (for a
  cohort, an arm of a comparison or a sweep: the median, and how many runs met it), and the
  publication it comes from;
- the time course (CAR-T, B cells, anti-dsDNA, protective titre, disease score) of every
  run, or of a group of runs its median and 5-95% band, with the published points overlaid;
- the endpoints of all runs side by side.

Markdown reports keep their figures as PNG files in ``<name>_files/``; HTML reports embed
them, so the file is self-contained.
"""

from __future__ import annotations

import base64
import html
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from immunesim import io


@dataclass
class Target:
    """One published fact and the tolerance that decides met or missed."""

    name: str
    endpoint: str
    published: str
    tolerance: str
    source: str
    low: float | None = None
    high: float | None = None
    point: float | None = None
    expected: bool | None = None

    def met(self, value: Any) -> bool | None:
        """Whether a simulated value meets the target (None: no value)."""
        if value is None or (isinstance(value, float) and value != value):
            return None if self.expected is None else False
        if self.expected is not None:
            return bool(value) == self.expected
        if self.low is None or self.high is None:
            raise ValueError(f"target {self.name!r}: needs low and high, or expected")
        return self.low <= float(value) <= self.high


def load_targets() -> list[Target]:
    """The published targets shipped with the package."""
    text = resources.files("immunesim").joinpath("data/clinical_targets.toml").read_text()
    data = tomllib.loads(text)
    return [Target(name=k, **v) for k, v in data["targets"].items()]


@dataclass
class RunSummary:
    """What the report needs of one column: a run, or a group of runs (a cohort, an arm of
    a comparison, a sweep)."""

    label: str
    path: Path
    endpoints: dict[str, Any]
    timeseries: pd.DataFrame | None
    manifest: dict[str, Any]
    cohort: pd.DataFrame | None = None
    #: The relative course of its runs (:func:`immunesim.plot.relative_course`).
    course: pd.DataFrame | None = None


def _medians(table: pd.DataFrame) -> dict[str, Any]:
    """Each endpoint's median over the runs (yes/no endpoints: the majority; categorical
    ones: the most common value)."""
    from immunesim.cohort import summarise

    out: dict[str, Any] = {}
    for k, v in summarise(table.drop(columns=["run", "group"], errors="ignore")).items():
        flags = table[k].dropna() if k in table else pd.Series([], dtype=object)
        if len(flags) and all(isinstance(x, (bool, np.bool_)) for x in flags):
            out[k] = int(flags.sum()) * 2 > len(table)
        else:
            out[k] = v["median"]
    return out


def summaries(path: str | Path) -> list[RunSummary]:
    """The report's columns of a directory: one for a run or a cohort, one per arm of a
    comparison, one for a sweep."""
    from immunesim.plot import relative_course
    from immunesim.results import load_run

    r = load_run(path)
    p = Path(path)
    course = relative_course(r.timeseries, r.scenario)
    first = next(iter(r.manifests.values()), {"scenario": r.scenario})
    if r.kind == "run":
        ends = json.loads((p / "endpoints.json").read_text())
        label = f"{first['scenario_name']} (seed {first['seed']}, {_grid(first)})"
        return [RunSummary(label, p, ends, r.timeseries, first, course=course)]
    out = []
    for group in r.groups:
        table = r.endpoints[r.endpoints["group"] == group]
        runs = set(table["run"])
        manifest = next((m for run, m in r.manifests.items() if run in runs), first)
        what = {"cohort": "cohort", "compare": "arm", "sweep": "sweep"}[r.kind]
        label = f"{group} ({what} of {len(table)}, {_grid(manifest)})"
        mine = course[course["group"] == group]
        out.append(RunSummary(label, p, _medians(table), None, manifest, table, mine))
    return out


def load_run(path: str | Path) -> RunSummary:
    """The first column :func:`summaries` makes of a directory."""
    return summaries(path)[0]


def _grid(manifest: dict[str, Any]) -> str:
    """Lattice and time step of a run, as ``100x100, 2 h``."""
    s = manifest.get("scenario") or {}
    size, dt = s.get("lattice", {}).get("size"), s.get("time", {}).get("dt_hours")
    return f"{size}x{size}, {dt:g} h" if size and dt else "?"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def target_rows(runs: list[RunSummary], targets: list[Target]) -> list[list[str]]:
    """Rows of the targets table: target, published, tolerance, then one cell per run."""
    rows = []
    for t in targets:
        cells = [t.name.replace("_", " "), t.published, t.tolerance]
        for r in runs:
            value = r.endpoints.get(t.endpoint)
            verdict = t.met(value)
            mark = {True: "met", False: "MISSED", None: "n/a"}[verdict]
            cell = f"{_fmt(value)} ({mark})"
            if r.cohort is not None and t.endpoint in r.cohort:
                hits = [t.met(v if v == v else None) for v in r.cohort[t.endpoint]]
                cell += f", {sum(h is True for h in hits)}/{len(hits)} patients"
            cells.append(cell)
        rows.append(cells + [t.source])
    return rows


def plot_courses(runs: list[RunSummary], targets: list[Target], out: Path) -> Path:
    """Six panels of the time course of every column (a group of runs as its median and
    5-95% band), with the published points."""
    from immunesim.plot import plot_bands

    by_name = {t.name: t for t in targets}
    grey = "#444444"

    def published(axes) -> None:
        if "car_t_peak_day" in by_name:
            t = by_name["car_t_peak_day"]
            axes[0].axvspan(
                t.low, t.high, color="#E69F00", alpha=0.15, label="published peak 7-14 d"
            )
        if "b_cell_reconstitution_day" in by_name:
            t = by_name["b_cell_reconstitution_day"]
            axes[1].axvspan(
                t.low, t.high, color="#0072B2", alpha=0.12,
                label="published B-cell return 110 +/- 32 d",
            )  # fmt: skip
            axes[1].axvline(t.point, color=grey, lw=1, ls="--")
        axes[2].errorbar(
            [90], [0.1], yerr=[[0.1], [0.1]], fmt="o", color=grey,
            label="published: seronegative at month 3",
        )  # fmt: skip
        for day in (90, 365):
            axes[3].errorbar(
                [day], [1.0], yerr=[[0.2], [0.2]], fmt="s", color=grey,
                label="published: unchanged (+/-20%)" if day == 90 else None,
            )  # fmt: skip
        axes[4].errorbar([90], [0.0], fmt="D", color=grey, label="published: SLEDAI 0 at month 3")
        axes[5].axhline(200.0, color=grey, lw=0.8, ls=":")
        axes[5].errorbar(
            [365], [155.0], fmt="v", color=grey,
            label="published, CAR-T for lymphoma: median 155/µL at 1 year",
        )  # fmt: skip

    courses = [(r.label, r.course) for r in runs if r.course is not None]
    return plot_bands(courses, out, -30.0, decorate=published)


def endpoint_table(runs: list[RunSummary]) -> tuple[list[str], list[list[str]]]:
    keys: list[str] = []
    for r in runs:
        for k in r.endpoints:
            if k not in keys:
                keys.append(k)
    return ["endpoint", *[r.label for r in runs]], [
        [k, *[_fmt(r.endpoints.get(k)) for r in runs]] for k in keys
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"miss" if "MISSED" in c else "met" if "(met)" in c else ""}">'
            f"{html.escape(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write the validation report for ``run_dirs`` to ``out`` (.md or .html)."""
    out = Path(out)
    runs = [column for d in run_dirs for column in summaries(d)]
    targets = load_targets()
    header = ["target", "published", "tolerance", *[r.label for r in runs], "source"]
    rows = target_rows(runs, targets)
    eh, erows = endpoint_table(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".html", ".htm"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            png = plot_courses(runs, targets, Path(tmp) / "course.png")
            data = base64.b64encode(png.read_bytes()).decode()
        doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>immunesim validation report</title><style>
body{{font-family:sans-serif;max-width:1100px;margin:2em auto;}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:4px}}
td.met{{background:#e6f4ea}} td.miss{{background:#fde7e9}}</style></head><body>
<h1>immunesim validation report</h1>
<h2>Published targets</h2>{_html_table(header, rows)}
<h2>Time course</h2><img alt="time course" src="data:image/png;base64,{data}">
<h2>Endpoints</h2>{_html_table(eh, erows)}
</body></html>
"""
        io.write_text(out, doc)
        return out
    files = out.parent / f"{out.stem}_files"
    files.mkdir(exist_ok=True)
    plot_courses(runs, targets, files / "course.png")
    doc = (
        "\n\n".join(
            [
                "# immunesim validation report",
                "Runs: " + ", ".join(f"`{r.path}` ({r.label})" for r in runs),
                "## Published targets",
                "Each cell: the simulated value (of a group of runs: the median) and whether "
                "it meets the target's tolerance; for a group, how many runs meet it. The "
                "last column names the publication.",
                _md_table(header, rows),
                "## Time course",
                f"![time course]({files.name}/course.png)",
                "## Endpoints",
                _md_table(eh, erows),
            ]
        )
        + "\n"
    )
    io.write_text(out, doc)
    return out

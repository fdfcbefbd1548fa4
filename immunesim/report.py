"""Validation report: runs (or cohorts) side by side with the published clinical facts.

``immunesim report RUNDIR... --out report.md`` (or ``.html``) writes:

- a table of every published target (``immunesim/data/clinical_targets.toml``) with the
  simulated value of each run, marked met or missed against the target's tolerance (for a
  cohort directory: the median, and how many patients met it);
- the time course (CAR-T, B cells, anti-dsDNA, protective titre, disease score) of every
  run (of a cohort: its first patient), with the published points overlaid;
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

import pandas as pd

from immunesim import io
from immunesim.plot import read_run


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
    """What the report needs of a run or a cohort."""

    label: str
    path: Path
    endpoints: dict[str, Any]
    timeseries: pd.DataFrame | None
    manifest: dict[str, Any]
    cohort: pd.DataFrame | None = None


def load_run(path: str | Path) -> RunSummary:
    """Read a run directory or a cohort directory (``cohort.csv``)."""
    p = Path(path)
    if (p / "cohort.csv").is_file():
        table = pd.read_csv(p / "cohort.csv")
        summary = json.loads((p / "cohort_summary.json").read_text())
        med = {k: v["median"] for k, v in summary["endpoints"].items()}
        for k, v in summary["endpoints"].items():
            if (
                v["median"] is None
                and v["p5"] is None
                and v["n"] is not None
                and k in table
                and table[k].dropna().map(type).eq(bool).all()
            ):
                # yes/no endpoints: the majority
                med[k] = v["n"] * 2 > v["of"]
        first = sorted(p.glob("patient_*"))[0]
        df, manifest, _ = read_run(first)
        label = f"{summary['scenario_name']} (cohort of {summary['patients']}, {_grid(manifest)})"
        return RunSummary(label, p, med, df, manifest, cohort=table)
    if not (p / "endpoints.json").is_file():
        raise FileNotFoundError(
            f"{p}: not a run directory (no endpoints.json) nor a cohort directory (no cohort.csv)"
        )
    df, manifest, _ = read_run(p)
    ends = json.loads((p / "endpoints.json").read_text())
    label = f"{manifest['scenario_name']} (seed {manifest['seed']}, {_grid(manifest)})"
    return RunSummary(label, p, ends, df, manifest)


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
        rows.append(cells)
    return rows


def plot_courses(runs: list[RunSummary], targets: list[Target], out: Path) -> Path:
    """Five panels of the time course of every run, with the published points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {t.name: t for t in targets}
    fig, axes = plt.subplots(5, 1, figsize=(9, 13), sharex=True, constrained_layout=True)
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
    for i, r in enumerate(runs):
        df = r.timeseries
        if df is None:
            continue
        df = df[df["day"] >= -30]
        base = df[df["day"] <= r.manifest["scenario"]["endpoints"]["baseline_day"] + 1e-9]
        base = base.iloc[-1] if len(base) else df.iloc[0]
        colour = palette[i % len(palette)]
        vaccines = r.manifest["scenario"]["specificities"]["vaccines"]
        protective = sum(df[f"antibody_{v}"] / base[f"antibody_{v}"] for v in vaccines)
        series = [
            ("car_t", df["car_t"].clip(lower=0.5), "CAR-T (agents)"),
            ("b_cells", (df["b_cells"] / base["b_cells"]).clip(lower=1e-4), "B cells / baseline"),
            ("anti_dsdna", df["anti_dsdna"] / base["anti_dsdna"], "anti-dsDNA / baseline"),
            ("protective", protective / len(vaccines), "protective titre / baseline"),
            ("disease_score", df["disease_score"], "disease score"),
        ]
        for ax, (_, y, ylabel) in zip(axes, series, strict=True):
            ax.plot(df["day"], y, color=colour, lw=1.6, label=r.label)
            ax.set_ylabel(ylabel)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    # published points
    grey = "#444444"
    if "car_t_peak_day" in by_name:
        t = by_name["car_t_peak_day"]
        axes[0].axvspan(t.low, t.high, color="#E69F00", alpha=0.15, label="published peak 7-14 d")
    if "b_cell_reconstitution_day" in by_name:
        t = by_name["b_cell_reconstitution_day"]
        axes[1].axvspan(
            t.low, t.high, color="#0072B2", alpha=0.12, label="published B-cell return 110 +/- 32 d"
        )
        axes[1].axvline(t.point, color=grey, lw=1, ls="--")
    axes[2].errorbar(
        [90],
        [0.1],
        yerr=[[0.1], [0.1]],
        fmt="o",
        color=grey,
        label="published: seronegative at month 3",
    )
    for day in (90, 365):
        axes[3].errorbar(
            [day],
            [1.0],
            yerr=[[0.2], [0.2]],
            fmt="s",
            color=grey,
            label="published: unchanged (+/-20%)" if day == 90 else None,
        )
    axes[4].errorbar([90], [0.0], fmt="D", color=grey, label="published: SLEDAI 0 at month 3")
    for ax in axes:
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.25)
    axes[-1].set_xlabel("day (0 = infusion)")
    io.save_figure(fig, out, dpi=100)
    plt.close(fig)
    return out


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
    runs = [load_run(d) for d in run_dirs]
    targets = load_targets()
    header = ["target", "published", "tolerance", *[r.label for r in runs]]
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
                "Each cell: the simulated value and whether it meets the target's tolerance.",
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

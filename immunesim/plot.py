"""The clinical course of a run as one figure (``immunesim plot RUNDIR``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from immunesim import io

# Okabe-Ito colour-blind-safe palette.
COLOURS = {
    "b_cells": "#0072B2",
    "naive_b": "#56B4E9",
    "memory_b": "#CC79A7",
    "plasmablast": "#D55E00",
    "llpc": "#009E73",
    "car_t": "#E69F00",
    "t_helper": "#999999",
    "anti_dsdna": "#D55E00",
    "disease_score": "#000000",
    "damage": "#CC79A7",
}
_VACCINE_STYLES = ("-", "--", ":", "-.")


def read_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict, list[dict]]:
    """Time series, manifest and events of a run directory."""
    d = Path(run_dir)
    df = pd.read_csv(d / "timeseries.csv")
    manifest = json.loads((d / "manifest.json").read_text())
    events_file = d / "events.json"
    events = json.loads(events_file.read_text())["events"] if events_file.exists() else []
    return df, manifest, events


def plot_course(run_dir: str | Path, out: str | Path, first_day: float | None = None) -> Path:
    """Plot cells, antibodies and disease activity over time, with the therapy events.

    Args:
        run_dir: a run directory written by ``immunesim run``.
        out: image file to write (PNG, SVG or PDF by its suffix).
        first_day: first day shown (default: 30 days before the first therapy event).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, manifest, events = read_run(run_dir)
    scenario = manifest["scenario"]
    if first_day is None:
        days = [e["day"] for e in events if e["kind"] != "standard_of_care"]
        first_day = (min(days) - 30.0) if days else float(df["day"].iloc[0])
    df = df[df["day"] >= first_day]
    base = df[df["day"] <= scenario["endpoints"]["baseline_day"] + 1e-9]
    base = base.iloc[-1] if len(base) else df.iloc[0]

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True, constrained_layout=True)
    ax = axes[0]
    for col, label in (
        ("b_cells", "B cells (CD19+)"),
        ("naive_b", "naive B"),
        ("memory_b", "memory B"),
        ("plasmablast", "plasmablasts"),
        ("llpc", "long-lived plasma cells"),
        ("car_t", "CAR-T"),
    ):
        ax.plot(
            df["day"],
            df[col].clip(lower=0.5),
            color=COLOURS[col],
            label=label,
            lw=2 if col in ("b_cells", "car_t") else 1.2,
        )
    ax.set_yscale("log")
    ax.set_ylabel("cells on the lattice")
    ax.legend(loc="lower left", ncols=3, fontsize=8)
    ax.set_title(f"{manifest['scenario_name']} (seed {manifest['seed']})")

    ax = axes[1]
    ax.plot(
        df["day"],
        df["anti_dsdna"] / base["anti_dsdna"],
        color=COLOURS["anti_dsdna"],
        lw=2,
        label="anti-dsDNA",
    )
    for i, v in enumerate(scenario["specificities"]["vaccines"]):
        col = f"antibody_{v}"
        ax.plot(
            df["day"],
            df[col] / base[col],
            color="#009E73",
            ls=_VACCINE_STYLES[i % len(_VACCINE_STYLES)],
            label=f"anti-{v}",
        )
    sero = scenario["endpoints"]["seronegative_fraction"]
    ax.axhline(sero, color="#999999", lw=0.8, ls=":")
    ax.text(
        df["day"].iloc[-1],
        sero,
        " seronegative",
        va="bottom",
        ha="right",
        fontsize=8,
        color="#666666",
    )
    ax.set_ylabel("titre / baseline")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[2]
    ax.plot(
        df["day"],
        df["disease_score"],
        color=COLOURS["disease_score"],
        lw=2,
        label="disease score (SLEDAI-like)",
    )
    remission = scenario["endpoints"]["remission_score"]
    ax.axhline(remission, color="#999999", lw=0.8, ls=":")
    ax.text(
        df["day"].iloc[-1],
        remission,
        " remission",
        va="bottom",
        ha="right",
        fontsize=8,
        color="#666666",
    )
    ax.set_ylabel("disease score")
    ax.set_xlabel("day (0 = infusion)")
    ax2 = ax.twinx()
    ax2.plot(df["day"], df["damage"], color=COLOURS["damage"], lw=1, label="tissue damage")
    ax2.set_ylabel("tissue damage per site", color=COLOURS["damage"])
    ax.legend(loc="upper right", fontsize=8)

    seen = set()
    for e in events:
        if e["kind"] == "standard_of_care" or e["day"] < first_day:
            continue
        for a in axes:
            a.axvline(e["day"], color="#bbbbbb", lw=0.8, zorder=0)
        if e["kind"] not in seen:
            axes[0].text(
                e["day"],
                axes[0].get_ylim()[1],
                e["label"],
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color="#555555",
            )
            seen.add(e["kind"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    io.save_figure(fig, out, dpi=110)
    plt.close(fig)
    return out


#: The panels of a figure of several runs: column of :func:`relative_course`, axis label,
#: log scale, floor drawn for zero on a log axis.
PANELS = (
    ("car_t_per_ul", "CAR-T per µL blood", True, 1e-3),
    ("b_cells_relative", "B cells in blood / baseline", True, 1e-4),
    ("anti_dsdna_relative", "anti-dsDNA / baseline", True, 1e-3),
    ("protective_relative", "protective titre / baseline", False, None),
    ("disease_score", "disease score", False, None),
    ("cd4_per_ul", "CD4 T cells per µL blood", False, None),
)
#: Colours of the groups of a figure (Okabe-Ito).
GROUP_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def relative_course(ts: pd.DataFrame, scenario: dict) -> pd.DataFrame:
    """Per run and day: CAR-T per µL, and B cells in blood, anti-dsDNA and the protective
    (mean vaccine) titre relative to the run's own baseline (its last day up to the
    baseline day), the disease score and CD4 T cells per µL."""
    baseline_day = scenario["endpoints"]["baseline_day"]
    vaccines = scenario["specificities"]["vaccines"]
    b = "b_cells_per_ul" if "b_cells_per_ul" in ts else "b_cells"  # blood, as endpoints
    parts = []
    # one frame built from arrays per run: the app redraws this every simulated day
    for _, df in ts.groupby("run", sort=False):
        day = df["day"].to_numpy()
        before = np.flatnonzero(day <= baseline_day + 1e-9)
        base = before[-1] if before.size else 0

        def relative(col: str, df: pd.DataFrame = df, base: int = base) -> np.ndarray:
            v = df[col].to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                return v / v[base]

        titres = [relative(f"antibody_{v}") for v in vaccines]
        out = {
            "run": df["run"].to_numpy(),
            "group": df["group"].to_numpy(),
            "day": day,
            "car_t_per_ul": df["car_t_per_ul"].to_numpy(),
            "b_cells_relative": relative(b),
            "anti_dsdna_relative": relative("anti_dsdna"),
            "protective_relative": sum(titres) / len(titres) if titres else np.nan,
            "disease_score": df["disease_score"].to_numpy(),
            "cd4_per_ul": df["cd4_per_ul"].to_numpy() if "cd4_per_ul" in df else np.nan,
        }
        parts.append(pd.DataFrame(out))
    return pd.concat(parts, ignore_index=True)


def bands(course: pd.DataFrame, column: str) -> pd.DataFrame:
    """Median and 5-95% of ``column`` over the runs of each group, day by day (``n``: how
    many runs have that day)."""
    g = course.groupby(["group", "day"], sort=False)[column]
    out = g.agg(median="median", n="count").reset_index()
    out["p5"] = g.quantile(0.05).to_numpy()
    out["p95"] = g.quantile(0.95).to_numpy()
    return out


def plot_bands(
    courses: list[tuple[str, pd.DataFrame]],
    out: str | Path,
    first_day: float = -30.0,
    title: str | None = None,
    decorate=None,
) -> Path:
    """Medians with 5-95% bands (a line alone for a group of one run) of every panel of
    :data:`PANELS`, one colour per group.

    Args:
        courses: ``(label, relative course)`` pairs (see :func:`relative_course`); each
            group of each course is drawn under ``label`` (plus the group's name when the
            course has several).
        out: image file (PNG, SVG or PDF by its suffix).
        first_day: first day shown.
        title: figure title.
        decorate: called with the panels' axes after drawing (published points).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(PANELS), 1, figsize=(9, 2.5 * len(PANELS)), sharex=True, constrained_layout=True
    )
    k = 0
    for label, course in courses:
        course = course[course["day"] >= first_day]
        groups = list(dict.fromkeys(course["group"]))
        for group in groups:
            colour = GROUP_COLOURS[k % len(GROUP_COLOURS)]
            k += 1
            name = label if len(groups) == 1 else f"{label}: {group}"
            runs = course.loc[course["group"] == group, "run"].nunique()
            name += f" (median of {runs}, 5-95%)" if runs > 1 else ""
            for ax, (col, ylabel, log, floor) in zip(axes, PANELS, strict=True):
                b = bands(course[course["group"] == group], col)
                if floor is not None:  # zeros on a log axis: drawn at the floor
                    b[["median", "p5", "p95"]] = b[["median", "p5", "p95"]].clip(lower=floor)
                ax.plot(b["day"], b["median"], color=colour, lw=1.8, label=name)
                if runs > 1:
                    ax.fill_between(b["day"], b["p5"], b["p95"], color=colour, alpha=0.18, lw=0)
                ax.set_ylabel(ylabel)
                if log:
                    ax.set_yscale("log")
    if decorate is not None:
        decorate(axes)
    for ax, (_, _, log, _) in zip(axes, PANELS, strict=True):
        ax.grid(alpha=0.25)
        if not log and ax.get_ylim()[0] > 0:  # counts, titres and scores from zero
            ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7, loc="best")
    for ax in axes[1:]:
        handles, labels = ax.get_legend_handles_labels()
        extra = [(h, lab) for h, lab in zip(handles, labels, strict=True) if "published" in lab]
        if extra:
            ax.legend(*zip(*extra, strict=True), fontsize=7, loc="best")
    axes[-1].set_xlabel("day (0 = infusion)")
    if title:
        axes[0].set_title(title)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    io.save_figure(fig, target, dpi=100)
    plt.close(fig)
    return target


def plot_results(path: str | Path, out: str | Path, first_day: float | None = None) -> Path:
    """The figure of any directory immunesim writes: a run's clinical course
    (:func:`plot_course`), or for a cohort, a comparison or a sweep the medians and 5-95%
    bands of each group (:func:`plot_bands`)."""
    from immunesim.results import load_run

    r = load_run(path)
    if r.kind == "run":
        return plot_course(path, out, first_day)
    course = relative_course(r.timeseries, r.scenario)
    what = {"cohort": "cohort", "compare": "comparison", "sweep": "sweep"}[r.kind]
    title = f"{Path(path).name}: {what} of {r.endpoints['run'].nunique()} runs"
    label = r.groups[0] if r.kind == "cohort" else what
    return plot_bands([(label, course)], out, -30.0 if first_day is None else first_day, title)

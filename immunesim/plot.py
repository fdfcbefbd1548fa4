"""The clinical course of a run as one figure (``immunesim plot RUNDIR``)."""

from __future__ import annotations

import json
from pathlib import Path

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

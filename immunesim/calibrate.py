"""Fitting one scenario parameter to one published target (``immunesim calibrate``).

The procedure is deliberately simple and transparent, so a modeler can refit to new data:
run a small cohort of virtual patients at each of a grid of values of one parameter, take
the cohort median of the endpoint the target names, and pick the value whose median comes
closest to the published value, refined by linear interpolation between the two grid
points that bracket it (when the median crosses the target between them). Every run is
kept, so the fit can be inspected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from immunesim import io
from immunesim.cohort import run_cohort
from immunesim.report import Target, load_targets
from immunesim.scenario import Scenario, ScenarioError, load_scenario


@dataclass
class CalibrationResult:
    """Grid of cohort medians and the fitted value."""

    key: str
    target: Target
    grid: pd.DataFrame  # value, median, p5, p95, reached, of
    best_grid_value: float
    interpolated_value: float | None

    @property
    def value(self) -> float:
        return (
            self.interpolated_value if self.interpolated_value is not None else self.best_grid_value
        )


def find_target(name: str) -> Target:
    targets = {t.name: t for t in load_targets()}
    if name not in targets:
        raise KeyError(f"unknown target {name!r}; expected one of {', '.join(targets)}")
    t = targets[name]
    if t.point is None:
        raise KeyError(f"target {name!r} has no published point value to fit to")
    return t


def calibrate(
    scenario: Scenario,
    key: str,
    values: list[float],
    target: Target,
    out: str | Path,
    patients: int = 3,
    seed: int | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationResult:
    """Fit the scenario value at ``key`` to ``target`` over the grid ``values``."""
    out = Path(out)
    rows = []
    for i, v in enumerate(values):
        try:
            s = load_scenario(scenario, [f"{key}={v!r}"])
        except ScenarioError as exc:
            raise ScenarioError("--param", exc.key, exc.expected) from None
        table, summary = run_cohort(s, patients, out / f"point_{i:02d}", seed=seed, jobs=jobs)
        st = summary["endpoints"].get(
            target.endpoint, {"median": None, "p5": None, "p95": None, "n": 0, "of": patients}
        )
        rows.append(
            {
                "value": v,
                "median": st["median"],
                "p5": st["p5"],
                "p95": st["p95"],
                "reached": st["n"],
                "of": st["of"],
            }
        )
        if progress:
            progress(i + 1, len(values))
    grid = pd.DataFrame(rows)
    ok = grid.dropna(subset=["median"])
    if ok.empty:
        raise RuntimeError(f"no grid point reached the endpoint {target.endpoint}")
    err = (ok["median"] - target.point).abs()
    best = float(ok.loc[err.idxmin(), "value"])
    interp = None
    for (_, a), (_, b) in zip(ok.iterrows(), ok.iloc[1:].iterrows(), strict=False):
        da, db = a["median"] - target.point, b["median"] - target.point
        if da == 0:
            interp = float(a["value"])
            break
        if da * db < 0:
            interp = float(a["value"] + (b["value"] - a["value"]) * da / (da - db))
            break
    result = CalibrationResult(key, target, grid, best, interp)
    io.atomic_write(out / "calibration.csv", lambda p: grid.to_csv(p, index=False))
    io.write_json(
        out / "calibration.json",
        {
            "key": key,
            "target": target.name,
            "endpoint": target.endpoint,
            "published_point": target.point,
            "published_range": [target.low, target.high],
            "patients_per_point": patients,
            "best_grid_value": best,
            "interpolated_value": interp,
            "apply_with": f"--set {key}={result.value:.6g}",
            "grid": rows,
        },
    )
    _plot(result, out / "calibration.png")
    return result


def _plot(res: CalibrationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = res.grid.dropna(subset=["median"])
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    t = res.target
    if t.low is not None and t.high is not None:
        ax.axhspan(t.low, t.high, color="#0072B2", alpha=0.12, label=f"published: {t.tolerance}")
    if t.point is not None:  # a target fitted to has one (find_target)
        ax.axhline(t.point, color="#0072B2", lw=1, ls="--")
    yerr = np.array([g["median"] - g["p5"], g["p95"] - g["median"]])
    ax.errorbar(
        g["value"], g["median"], yerr=yerr, fmt="o-", color="#D55E00", label="cohort median (5-95%)"
    )
    ax.axvline(res.value, color="#444444", lw=1, ls=":", label=f"fitted {res.value:.4g}")
    ax.set_xlabel(res.key)
    ax.set_ylabel(t.endpoint)
    ax.legend(fontsize=8)
    io.save_figure(fig, path, dpi=100)
    plt.close(fig)

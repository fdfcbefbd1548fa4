"""Several parameters fitted to several published targets at once (``immunesim fit``).

A fit file names a scenario, the parameters to fit (each with a range) and the published
targets to meet (names in ``immunesim/data/clinical_targets.toml``)::

    scenario = "../scenarios/sle_cd19_cart.toml"
    set = ["lattice.size=100"]
    patients = 4          # virtual patients 0..3 of the cohort: the same in every trial
    seed = 1              # the cohort seed
    trials = 24
    targets = ["b_cell_reconstitution_day", "car_t_peak_day", "b_cell_depletion"]

    [[parameter]]
    key = "therapy.2.anti_car_onset_days"
    low = 30
    high = 120

**Search.** Optuna's TPE sampler (seeded, multivariate) proposes the parameter values; each
trial runs the same virtual patients (common random numbers: the differences between
trials are the parameters', not the seeds') on the sweeps' dask executor (a local cluster,
or ``--scheduler``), a batch of trials at a time, one trial per worker. Runs start from the
run-in cache, so fitting therapy parameters computes each patient's run-in once. Optuna
was chosen over ABC-SMC (pyabc) because a run costs seconds to minutes: tens of trials
are affordable, the thousands of simulations ABC needs are not, and the targets are
published intervals rather than data sets with a likelihood.

**Loss.** Each target contributes from its stated tolerance, on the cohort median of its
endpoint: a target with a published value inside its interval (B-cell return
110 +/- 32 days) contributes ``((median - value) / half-width)^2``, a measurement with the
tolerance as its spread; a target that is an interval or a bound (remission by month 3)
contributes 0 inside and ``(distance outside / half-width)^2`` outside; a yes/no target
``(2 x the share of patients that miss it)^2``; an endpoint most patients never reach counts
as 2 half-widths out (4). The loss is their sum.

**Uncertainty.** Profiles: for each parameter, the lowest loss of the trials in each of
ten bins of its range (``fit.png``), and the range of the trials within 1 of the best loss
(``fit.json``: with the loss a sum of squared standardised deviations, a rise of 1 is the
usual approximate 68% profile interval of one parameter). Few trials give coarse profiles;
the trials table has every value.

Outputs: ``DIR/trials.csv`` (one row per trial: values, loss, each target's median, loss
and verdict; rewritten as trials finish), ``DIR/runs.csv`` (one row per run),
``DIR/fit.json`` (the best trial, the ranges, the ``--set`` lines that apply the fit) and
``DIR/fit.png``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from immunesim import io
from immunesim.cohort import patient_seed
from immunesim.report import Target, load_targets
from immunesim.scenario import Scenario, ScenarioError, load_scenario
from immunesim.sections import Section
from immunesim.sweep import Parameter, _client, _override, _run_one, read_spec

#: Loss of a target whose endpoint most patients did not reach.
UNREACHED = 4.0


class FitSpec(Section):
    """A fit file."""

    scenario: str = Field(description="Scenario file, relative to the fit file.")
    set: list[str] = Field([], description="Overrides applied to every run (key.path=value).")
    seed: int = Field(1, ge=0, lt=2**63, description="Cohort seed of the virtual patients.")
    patients: int = Field(4, ge=1, le=1000, description="Virtual patients per trial.")
    trials: int = Field(24, ge=2, le=100_000, description="Trials (parameter sets) in all.")
    batch: int | None = Field(
        None, ge=1, description="Trials proposed at once (default: the number of workers)."
    )
    sampler_seed: int = Field(0, ge=0, lt=2**32, description="Seed of the TPE sampler.")
    targets: list[str] = Field(min_length=1, description="Published targets to meet.")
    parameter: list[Parameter] = Field(min_length=1, description="The parameters fitted.")

    @model_validator(mode="after")
    def _ranges(self) -> FitSpec:
        from immunesim.sweep import _Keyed

        for i, p in enumerate(self.parameter):
            where = f"parameter.{i}"
            if p.low is None or p.high is None:
                raise _Keyed(f"{where}.low", "low and high (the range searched)")
            if not p.low < p.high:
                raise _Keyed(f"{where}.high", f"a value above low = {p.low} (got {p.high})")
            if p.log and p.low <= 0:
                raise _Keyed(f"{where}.low", f"a value above 0 with log = true (got {p.low})")
        keys = [p.key for p in self.parameter]
        if len(set(keys)) < len(keys):
            raise _Keyed("parameter", f"each key once (got {keys})")
        return self


@dataclass(frozen=True)
class Fit:
    """A fit file, read and checked."""

    spec: FitSpec
    scenario: Scenario
    targets: list[Target]
    file: str

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.spec.parameter]


def read_fit(path: str | os.PathLike[str]) -> Fit:
    """Read and check a fit file: its keys, the scenario, the targets, and that the lowest
    and highest value of every parameter are accepted by the scenario.

    Raises:
        ScenarioError: naming the fit file, the key and what was expected.
    """
    file = str(path)
    spec, base = read_spec(FitSpec, path, "fit")
    known = {t.name: t for t in load_targets()}
    targets = []
    for i, name in enumerate(spec.targets):
        if name not in known:
            names = ", ".join(known)
            raise ScenarioError(
                file, f"targets.{i}", f"a published target: one of {names} (got {name!r})"
            )
        targets.append(known[name])
    for i, p in enumerate(spec.parameter):
        for v in (p.low, p.high):
            try:
                load_scenario(base, [_override(p.key, float(v))])
            except ScenarioError as exc:
                raise ScenarioError(
                    file, f"parameter.{i}", f"{exc.key or p.key} = {v:g}: {exc.expected}"
                ) from None
    return Fit(spec, base, targets, file)


def target_loss(t: Target, values: list[Any]) -> tuple[float, float | None, bool | None]:
    """A target's loss, the cohort's median (or share meeting a yes/no target) and whether
    that meets the target (see the module's documentation)."""
    if t.expected is not None:
        hits = [bool(v) == t.expected if v is not None else False for v in values]
        share = sum(hits) / len(hits)
        return (2.0 * (1.0 - share)) ** 2, share, share >= 0.5
    if t.low is None or t.high is None:
        raise ValueError(f"target {t.name!r}: needs low and high, or expected")
    reached = [float(v) for v in values if v is not None and not _nan(v)]
    if len(reached) * 2 <= len(values):
        return UNREACHED, None, False
    m = float(np.median(reached))
    half = (t.high - t.low) / 2.0
    met = t.low <= m <= t.high
    if t.point is not None and t.low < t.point < t.high:
        return ((m - t.point) / half) ** 2, m, met
    outside = max(t.low - m, m - t.high, 0.0)
    return (outside / half) ** 2, m, met


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def trial_row(fit: Fit, number: int, values: dict[str, float], runs: list[dict]) -> dict:
    """A trial's row: its values, loss and each target's median, loss and verdict."""
    row: dict[str, Any] = {"trial": number, **{f"param:{k}": v for k, v in values.items()}}
    ok = [r for r in runs if r.get("status") == "ok"]
    row["runs_failed"] = len(runs) - len(ok)
    total = 0.0
    for t in fit.targets:
        if ok:
            loss, value, met = target_loss(t, [r.get(t.endpoint) for r in ok])
        else:
            loss, value, met = UNREACHED, None, False
        row[f"{t.name}:value"], row[f"{t.name}:loss"], row[f"{t.name}:met"] = value, loss, met
        total += loss
    row["loss"] = total
    row["targets_met"] = sum(bool(row[f"{t.name}:met"]) for t in fit.targets)
    return row


def profiles(
    trials: pd.DataFrame, keys: list[str], logs: list[bool] | None = None, bins: int = 10
) -> dict[str, pd.DataFrame]:
    """For each parameter, the lowest loss of the trials in each of ``bins`` bins of the
    values tried (bins of equal width in the log for a parameter searched in the log)."""
    out = {}
    for k, log in zip(keys, logs or [False] * len(keys), strict=True):
        col = trials[f"param:{k}"]
        if log:
            edges = np.geomspace(col.min(), col.max(), bins + 1)
        else:
            edges = np.linspace(col.min(), col.max(), bins + 1)
        which = np.clip(np.digitize(col, edges) - 1, 0, bins - 1)
        g = trials.assign(bin=which).groupby("bin")["loss"].min()
        out[k] = pd.DataFrame(
            {"low": edges[g.index], "high": edges[g.index + 1], "min_loss": g.to_numpy()}
        )
    return out


def summarise_fit(fit: Fit, trials: pd.DataFrame) -> dict[str, Any]:
    """The best trial, each parameter's range within 1 of the best loss, the ``--set``
    lines that apply the fit."""
    best = trials.loc[trials["loss"].idxmin()]
    near = trials[trials["loss"] <= best["loss"] + 1.0]
    values = {k: float(best[f"param:{k}"]) for k in fit.keys}
    return {
        "best_trial": int(best["trial"]),
        "loss": float(best["loss"]),
        "values": values,
        "ranges_within_1": {
            k: [float(near[f"param:{k}"].min()), float(near[f"param:{k}"].max())] for k in fit.keys
        },
        "trials_within_1": len(near),
        "targets": {
            t.name: {
                "endpoint": t.endpoint,
                "published": t.published,
                "tolerance": t.tolerance,
                "source": t.source,
                "value": _plain(best[f"{t.name}:value"]),
                "loss": float(best[f"{t.name}:loss"]),
                "met": bool(best[f"{t.name}:met"]),
            }
            for t in fit.targets
        },
        "set": [_override(k, v) for k, v in values.items()],
        "trials": len(trials),
        "patients": fit.spec.patients,
        "seed": fit.spec.seed,
    }


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def plot_fit(fit: Fit, trials: pd.DataFrame, out: Path) -> Path:
    """One panel per parameter: every trial's loss against its value, the profile, the
    best trial and the line 1 above its loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = fit.keys
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    best = trials.loc[trials["loss"].idxmin()]
    prof = profiles(trials, keys, [p.log for p in fit.spec.parameter])
    for ax, k, p in zip(axes[0], keys, fit.spec.parameter, strict=True):
        x = trials[f"param:{k}"]
        ax.scatter(x, trials["loss"], s=14, color="#0072B2", alpha=0.6, label="trials")
        pr = prof[k]
        centre = np.sqrt(pr["low"] * pr["high"]) if p.log else (pr["low"] + pr["high"]) / 2
        ax.step(centre, pr["min_loss"], where="mid", color="#000000", lw=1.2,
                label="profile (lowest loss per bin)")  # fmt: skip
        ax.axhline(best["loss"] + 1.0, color="#D55E00", ls="--", lw=1, label="best + 1")
        ax.scatter([best[f"param:{k}"]], [best["loss"]], marker="*", s=120, color="#D55E00",
                   zorder=3, label="best")  # fmt: skip
        if p.log:
            ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel(k)
        ax.grid(alpha=0.25)
    axes[0][0].set_ylabel("loss (sum over targets)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        f"fit of {len(keys)} parameters to {len(fit.targets)} targets, {len(trials)} trials"
    )
    fig.tight_layout()
    io.save_figure(fig, out, dpi=100)
    plt.close(fig)
    return out


def run_fit(
    fit: Fit | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    overwrite: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run a fit into ``out``; returns the trials table and the summary (see the module's
    documentation). ``progress`` is called with (trials done, trials in all, best loss).

    Raises:
        ScenarioError: for a bad fit file, scenario or directory (before any run).
    """
    import optuna

    from immunesim.runner import prepare_out

    f = fit if isinstance(fit, Fit) else read_fit(fit)
    root = prepare_out(out, overwrite)
    spec = f.spec
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed, multivariate=True)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    dump = f.scenario.model_dump(mode="json")
    trial_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    with _client(scheduler, workers) if client is None else nullcontext(client) as c:
        n_workers = max(1, len(c.scheduler_info().get("workers", {})) or 1)
        batch = spec.batch or n_workers
        while len(trial_rows) < spec.trials:
            asked = [study.ask() for _ in range(min(batch, spec.trials - len(trial_rows)))]
            proposals = []
            for trial in asked:
                values = {
                    p.key: trial.suggest_float(
                        p.key, cast(float, p.low), cast(float, p.high), log=p.log
                    )
                    for p in spec.parameter
                }
                proposals.append((trial, values))
            futures: list[Any] = []
            for trial, values in proposals:
                for patient in range(spec.patients):
                    design = {
                        "run": len(run_rows) + len(futures),
                        "trial": trial.number,
                        "cohort_seed": spec.seed,
                        "patient": patient,
                        "seed": patient_seed(spec.seed, patient),
                        **{f"param:{k}": v for k, v in values.items()},
                    }
                    futures.append(c.submit(_run_one, dump, design, f.keys, pure=False))
            results = [fut.result()[0] for fut in futures]
            run_rows += results
            for trial, values in proposals:
                mine = [r for r in results if r["trial"] == trial.number]
                row = trial_row(f, trial.number, values, mine)
                study.tell(trial, row["loss"])
                trial_rows.append(row)
            table = pd.DataFrame(trial_rows)
            io.atomic_write(root / "trials.csv", lambda p, t=table: t.to_csv(p, index=False))
            if progress:
                progress(len(trial_rows), spec.trials, float(table["loss"].min()))
    trials = pd.DataFrame(trial_rows)
    runs = pd.DataFrame(run_rows)
    summary = summarise_fit(f, trials)
    summary["fit_file"] = f.file
    io.atomic_write(root / "runs.csv", lambda p: runs.to_csv(p, index=False))
    io.write_json(root / "fit.json", summary)
    plot_fit(f, trials, root / "fit.png")
    return trials, summary


def read_summary(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary a fit wrote."""
    return json.loads((Path(out) / "fit.json").read_text())


__all__ = [
    "Fit",
    "FitSpec",
    "profiles",
    "read_fit",
    "read_summary",
    "run_fit",
    "summarise_fit",
    "target_loss",
    "trial_row",
]

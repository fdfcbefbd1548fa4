"""Therapies compared on the same virtual patients.

``immunesim compare A.toml B.toml ... --patients N --out DIR`` runs patient ``p`` of every
scenario with the same seed and the same drawn values outside ``[[therapy]]`` (the first
scenario's ``[[variability]]`` draws them; each scenario draws its own therapy values), so
every patient enters each therapy from the same state: the cached run-in of
:mod:`immunesim.runin`, computed once per patient. Scenarios whose patients would differ
before their therapies (another disease, another lattice) are refused: that is a sweep's
work, not a comparison.

``DIR/<scenario>/patient_NNN/`` holds each run; ``DIR/compare.csv`` one row per patient and
scenario (drawn values and endpoints); ``DIR/paired.csv`` one row per patient, endpoint and
scenario after the first: its value, the first scenario's and their difference; and
``DIR/compare_summary.json`` the median and 90% interval of each paired difference.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from immunesim import io, runin
from immunesim.cohort import (
    PatientTask,
    patient_scenario,
    patient_seed,
    patient_values,
    run_patients,
)
from immunesim.scenario import Scenario, ScenarioError


def labels(scenarios: list[Scenario]) -> list[str]:
    """Directory-safe, distinct labels: each scenario's name, numbered when repeated."""
    out: list[str] = []
    for i, s in enumerate(scenarios):
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", s.name) or f"scenario{i + 1}"
        name, k = base, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


def _is_therapy_key(key: str) -> bool:
    return key.split(".", 1)[0] == "therapy"


def patient_draws(scenarios: list[Scenario], seed: int, patient: int) -> list[dict[str, float]]:
    """A patient's values in each scenario: the first scenario's draws outside the therapy
    list, each scenario's own draws for its therapies."""
    shared = {
        k: v
        for k, v in patient_values(scenarios[0], seed, patient).items()
        if not _is_therapy_key(k)
    }
    out = []
    for s in scenarios:
        own = {k: v for k, v in patient_values(s, seed, patient).items() if _is_therapy_key(k)}
        out.append({**shared, **own})
    return out


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Key paths where two dumped scenario contents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [path]


def check_same_patients(
    scenarios: list[Scenario], files: list[str], seed: int, patients: int
) -> None:
    """Refuse scenarios whose patients would differ before their therapies.

    Raises:
        ScenarioError: naming the file and the first keys that differ.
    """
    for p in range(patients):
        draws = patient_draws(scenarios, seed, p)
        made = [patient_scenario(s, d) for s, d in zip(scenarios, draws, strict=True)]
        first = runin.key(made[0])
        for f, ps in zip(files[1:], made[1:], strict=True):
            if runin.key(ps) == first:
                continue
            a, b = runin.content(made[0]), runin.content(ps)
            keys = _differences(a, b)
            raise ScenarioError(
                f,
                keys[0],
                f"the same patients as {files[0]} before their therapies, to compare "
                f"therapies; it differs in {', '.join(keys[:5])}"
                + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                + " (use a sweep to compare other changes)",
            )


def paired(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Long table of paired differences: each scenario after the first against the first,
    for every numeric endpoint, patient by patient."""
    skip = {"patient", "seed", "scenario", "baseline_day", "last_day"}  # settings, not outcomes
    ref = table[table["scenario"] == names[0]].set_index("patient")
    rows = []
    for name in names[1:]:
        other = table[table["scenario"] == name].set_index("patient")
        for col in table.columns:
            if col in skip or col.startswith("param:"):
                continue
            a = pd.to_numeric(ref[col], errors="coerce")
            b = pd.to_numeric(other[col], errors="coerce")
            if a.isna().all() and b.isna().all():
                continue
            for patient in ref.index:
                va, vb = a.get(patient), b.get(patient)
                va = None if va is None or pd.isna(va) else float(va)
                vb = None if vb is None or pd.isna(vb) else float(vb)
                rows.append(
                    {
                        "patient": int(patient),
                        "endpoint": col,
                        "scenario": name,
                        "value": vb,
                        "reference": va,
                        "difference": None if va is None or vb is None else vb - va,
                    }
                )
    return pd.DataFrame(
        rows, columns=["patient", "endpoint", "scenario", "value", "reference", "difference"]
    )


def summarise_paired(pairs: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario and endpoint: median and 5-95% of the paired differences, with the
    patients in which both values exist."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (name, endpoint), g in pairs.groupby(["scenario", "endpoint"], sort=False):
        d = g["difference"].dropna().to_numpy(float)
        out.setdefault(str(name), {})[str(endpoint)] = {
            "n": int(d.size),
            "of": int(len(g)),
            "median": float(np.median(d)) if d.size else None,
            "p5": float(np.quantile(d, 0.05)) if d.size else None,
            "p95": float(np.quantile(d, 0.95)) if d.size else None,
            "reference_median": _median(g["reference"]),
            "median_value": _median(g["value"]),
        }
    return out


def _median(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.median()) if len(v) else None


def compare(
    scenarios: list[Scenario],
    patients: int,
    out: str | os.PathLike[str],
    *,
    files: list[str] | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    backend: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    cache: bool | None = None,
    scheduler: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Run the same ``patients`` through each scenario; returns the per-run table, the
    paired differences and their summary (see the module's documentation).

    Raises:
        ScenarioError: fewer than two scenarios, or scenarios whose patients differ before
            their therapies, or a bad ``out``.
    """
    from immunesim.runner import prepare_out

    files = files or [s.name for s in scenarios]
    if len(scenarios) < 2:
        raise ScenarioError(files[0] if files else "compare", "", "at least two scenarios")
    if patients < 1:
        raise ScenarioError("--patients", "", "at least one patient")
    seed = int(scenarios[0].run.seed if seed is None else seed)
    check_same_patients(scenarios, files, seed, patients)
    root = prepare_out(out, overwrite)
    names = labels(scenarios)
    dumps = [s.model_dump(mode="json") for s in scenarios]
    draws = [patient_draws(scenarios, seed, p) for p in range(patients)]
    # scenario after scenario: the first one's runs fill the run-in cache for the others
    tasks = [
        PatientTask(dumps[i], seed, p, str(root / names[i]), backend, cache, draws[p][i], names[i])
        for i in range(len(scenarios))
        for p in range(patients)
    ]
    rows = run_patients(tasks, jobs, progress, scheduler)
    table = pd.DataFrame(rows)
    table.insert(1, "scenario", table.pop("scenario"))
    pairs = paired(table, names)
    summary = {
        "scenarios": dict(zip(names, files, strict=True)),
        "reference": names[0],
        "seed": seed,
        "patients": patients,
        "patient_seeds": [patient_seed(seed, p) for p in range(patients)],
        "paired_differences": summarise_paired(pairs),
    }
    io.atomic_write(root / "compare.csv", lambda p: table.to_csv(p, index=False))
    io.atomic_write(root / "paired.csv", lambda p: pairs.to_csv(p, index=False))
    io.write_json(root / "compare_summary.json", summary)
    return table, pairs, summary


def read_summary(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary a comparison wrote."""
    return json.loads((Path(out) / "compare_summary.json").read_text())


__all__ = [
    "check_same_patients",
    "compare",
    "labels",
    "paired",
    "patient_draws",
    "read_summary",
    "summarise_paired",
]

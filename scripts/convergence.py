"""Convergence study: cohort medians of every endpoint at several lattice sizes and time steps.

Runs one cohort of virtual patients (the scenario's ``[[variability]]``, the same patient
seeds in every setting) per (lattice size, time step) and writes, under ``--out``:

- ``L{size}_dt{hours}/``: each cohort (``cohort.csv``, ``cohort_summary.json``, the runs);
- ``convergence.csv``: one row per setting and endpoint (median, 5th and 95th percentiles,
  patients reaching it, relative difference of the median from the reference setting);
- ``convergence.md``: the same as a table, endpoints down, settings across.

A setting whose ``cohort.csv`` exists is not run again, so a stopped study goes on where it
stopped. ``--sizes`` and ``--dt`` give every combination; ``--settings`` names chosen ones.
The study in docs/validation/convergence.md (about 75 minutes on 2 cores, half of it at L400)::

    python scripts/convergence.py scenarios/sle_cd19_cart.toml \\
        --settings 200:1 200:2 100:2 100:1 100:0.5 400:2 --reference 200:1 \\
        --patients 6 --jobs 2 --out runs/convergence
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from immunesim.cohort import run_cohort
from immunesim.scenario import load_scenario

#: Endpoints compared as medians (days and relative levels) and as counts (yes/no, grades).
MEDIANS = (
    "b_cell_depletion_day",
    "b_cell_reconstitution_day",
    "returning_b_naive_fraction",
    "car_t_peak_day",
    "car_t_peak_fold",
    "anti_dsdna_day90_relative",
    "protective_titre_month3_relative",
    "protective_titre_month12_relative",
    "remission_day",
    "relapse_day",
)


def setting_dir(out: Path, size: int, dt: float) -> Path:
    return out / f"L{size}_dt{dt:g}"


def run_setting(scenario: Path, size: int, dt: float, args: argparse.Namespace) -> pd.DataFrame:
    d = setting_dir(args.out, size, dt)
    if (d / "cohort.csv").exists():
        return pd.read_csv(d / "cohort.csv")
    overrides = [f"lattice.size={size}", f"time.dt_hours={dt}", *args.set]
    s = load_scenario(scenario, overrides)
    print(f"L={size} dt={dt:g} h: {args.patients} patients", file=sys.stderr, flush=True)
    table, _ = run_cohort(s, args.patients, d, seed=args.seed, jobs=args.jobs, overwrite=True)
    return table


def summary_rows(tables: dict[tuple[int, float], pd.DataFrame], ref: tuple[int, float]):
    rows = []
    for (size, dt), table in tables.items():
        for col in table.columns:
            if col in ("patient", "seed") or col.startswith("param:"):
                continue
            values = pd.to_numeric(table[col], errors="coerce")
            numeric = col in MEDIANS or (
                pd.api.types.is_numeric_dtype(table[col]) and table[col].dtype != bool
            )
            row = {"size": size, "dt_hours": dt, "endpoint": col, "patients": len(table)}
            if numeric and values.notna().any():
                reached = values.dropna()
                row.update(
                    reached=int(reached.size),
                    median=float(reached.median()),
                    p5=float(reached.quantile(0.05)),
                    p95=float(reached.quantile(0.95)),
                )
            else:
                words = table[col].dropna().astype(str)
                row.update(
                    reached=int((words != "False").sum()),
                    mode=words.mode().iloc[0] if len(words) else None,
                )
            rows.append(row)
    df = pd.DataFrame(rows)
    ref_median = df[(df["size"] == ref[0]) & (df["dt_hours"] == ref[1])].set_index("endpoint")
    if "median" in df:
        df["relative_to_reference"] = [
            (r["median"] / ref_median.loc[r["endpoint"], "median"] - 1.0)
            if r["endpoint"] in ref_median.index
            and pd.notna(r.get("median"))
            and pd.notna(ref_median.loc[r["endpoint"], "median"])
            and ref_median.loc[r["endpoint"], "median"] != 0
            else None
            for _, r in df.iterrows()
        ]
    return df


def markdown(df: pd.DataFrame, ref: tuple[int, float], patients: int) -> str:
    settings = sorted({(int(s), float(d)) for s, d in zip(df["size"], df["dt_hours"], strict=True)})
    head = "| endpoint | " + " | ".join(f"L{s} dt{d:g}h" for s, d in settings) + " |"
    lines = [
        f"Cohort medians ({patients} virtual patients per setting; 5-95% range in brackets; "
        f"n = patients reaching the endpoint). Reference setting: L{ref[0]} dt{ref[1]:g}h.",
        "",
        head,
        "|" + "---|" * (len(settings) + 1),
    ]
    for ep in dict.fromkeys(df["endpoint"]):
        cells = []
        for s, d in settings:
            r = df[(df["size"] == s) & (df["dt_hours"] == d) & (df["endpoint"] == ep)]
            if r.empty:
                cells.append("")
                continue
            r = r.iloc[0]
            if pd.notna(r.get("median")):
                rel = r.get("relative_to_reference")
                rel_s = f" ({rel:+.0%})" if pd.notna(rel) and (s, d) != ref else ""
                cells.append(
                    f"{r['median']:.3g}{rel_s} [{r['p5']:.3g}-{r['p95']:.3g}] n={r['reached']}"
                )
            else:
                cells.append(f"{r.get('mode')} ({r['reached']}/{r['patients']})")
        lines.append(f"| {ep} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--dt", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    ap.add_argument(
        "--settings",
        nargs="*",
        default=None,
        help="explicit SIZE:DT pairs instead of the full grid of --sizes x --dt",
    )
    ap.add_argument("--reference", default="200:1", help="SIZE:DT of the reference setting")
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra override KEY=VALUE")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.settings:
        grid = [(int(a), float(b)) for a, b in (x.split(":") for x in args.settings)]
    else:
        grid = [(s, d) for s in args.sizes for d in args.dt]
    ref_s, ref_d = args.reference.split(":")
    ref = (int(ref_s), float(ref_d))
    args.out.mkdir(parents=True, exist_ok=True)
    tables = {(s, d): run_setting(args.scenario, s, d, args) for s, d in grid}
    df = summary_rows(tables, ref)
    df.to_csv(args.out / "convergence.csv", index=False)
    (args.out / "convergence.md").write_text(markdown(df, ref, args.patients))
    (args.out / "convergence.json").write_text(
        json.dumps(
            {
                "scenario": str(args.scenario),
                "settings": grid,
                "reference": ref,
                "patients": args.patients,
                "overrides": args.set,
            },
            indent=1,
        )
    )
    print((args.out / "convergence.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

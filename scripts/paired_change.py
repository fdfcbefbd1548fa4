"""What a change of the model (or of a setting) did to the same virtual patients.

Each argument is a cohort directory written by ``immunesim run --patients N`` (its
``cohort.csv``) or an arm of ``immunesim compare`` (a directory of ``patient_NNN`` runs with
``endpoints.json``); the first is the reference. Patients are paired by index. For each
endpoint, a markdown row per later directory: the median in each, the median of the
per-patient differences (later minus reference; with ``--ratio``, of the ratios) with
its sign-test interval (the order statistics that cover the median with at least
``--level`` probability), how many patients moved up and down, and the Wilcoxon
signed-rank p of the differences (scipy; zero differences dropped). Besides the
endpoints, ``b_cells_day<D>_relative`` (blood B cells on day D over their baseline) and
``cd4_day<D>_per_ul`` are read from the time series.

    python scripts/paired_change.py runs/pre_cd4/cohort20_L100 runs/cohort20_L100 \\
        b_cell_reconstitution_day car_t_fold_expansion b_cells_day365_relative
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

#: The values read from a run's time series rather than its endpoints.
SERIES = re.compile(r"(b_cells|cd4)_day([\d.]+)_(relative|per_ul)")


def _patients(path: Path) -> list[Path]:
    runs = sorted(path.glob("patient_*"))
    if not runs:
        raise SystemExit(f"{path}: no patient_* run directories")
    return runs


def _from_series(run: Path, name: str) -> float:
    """``b_cells_day<D>_relative`` or ``cd4_day<D>_per_ul`` of one run."""
    m = SERIES.fullmatch(name)
    assert m is not None
    manifest = json.loads((run / "manifest.json").read_text())
    base_day = manifest["scenario"]["endpoints"]["baseline_day"]
    col = "b_cells_per_ul" if m[1] == "b_cells" else "cd4_per_ul"
    ts = pd.read_parquet(run / "timeseries.parquet", columns=["day", col]).set_index("day")[col]
    value = float(ts[ts.index <= float(m[2]) + 1e-9].iloc[-1])
    if m[3] == "relative":
        value /= float(ts[ts.index <= base_day + 1e-9].iloc[-1])
    return value


def values(path: Path, names: list[str]) -> pd.DataFrame:
    """One row per patient, one column per name."""
    runs = _patients(path)
    rows = []
    for run in runs:
        e = json.loads((run / "endpoints.json").read_text())
        rows.append({n: (_from_series(run, n) if SERIES.fullmatch(n) else e.get(n)) for n in names})
    return pd.DataFrame(rows, index=[r.name for r in runs], dtype=float)


def sign_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """The narrowest symmetric pair of order statistics of ``d`` that covers its median with
    at least ``level`` probability (the sign test's interval)."""
    x, n = np.sort(d), len(d)
    k = int(stats.binom.ppf((1 - level) / 2, n, 0.5))
    while k > 0 and 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) < level:
        k -= 1
    k = max(k, 1)
    if 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) < level:
        return -np.inf, np.inf
    return float(x[k - 1]), float(x[n - k])


def _fmt(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{v:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="reference directory, later directories, endpoints")
    ap.add_argument("--level", type=float, default=0.95, help="sign-test interval coverage")
    ap.add_argument(
        "--ratio",
        action="store_true",
        help="per-patient ratios (later over reference), not differences",
    )
    a = ap.parse_args()
    dirs = [Path(r) for r in a.runs if Path(r).is_dir()]
    names = [r for r in a.runs if not Path(r).is_dir()]
    if len(dirs) < 2 or not names:
        raise SystemExit("give a reference directory, at least one more, and endpoint names")
    tables = {d: values(d, names) for d in dirs}
    ref = tables[dirs[0]]
    print(f"Reference: {dirs[0]}; interval: sign test, coverage >= {a.level:g}\n")
    print("| endpoint | directory | median (reference) | median | median change "
          "[interval] | up / down | Wilcoxon p |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for d in dirs[1:]:
            both = pd.concat([ref[name], tables[d][name]], axis=1, keys=["a", "b"]).dropna()
            diff = (both["b"] - both["a"]).to_numpy()
            if len(diff) == 0:
                print(f"| {name} | {d} | - | - | - | - | - |")
                continue
            change = (both["b"] / both["a"]).to_numpy() if a.ratio else diff
            lo, hi = sign_interval(change, a.level)
            p = stats.wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
            mid = f"{np.median(change):.3g}" if a.ratio else f"{np.median(change):+.3g}"
            print(
                f"| {name} | {d} | {_fmt(ref[name].median())} | {_fmt(tables[d][name].median())} "
                f"| {mid} [{_fmt(lo)}, {_fmt(hi)}] | {int((diff > 0).sum())} / "
                f"{int((diff < 0).sum())} (of {len(diff)}) | {p:.2g} |"
            )


if __name__ == "__main__":
    main()

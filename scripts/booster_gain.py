"""What a booster leaves, per patient, from `immunesim compare` runs.

Each directory is a comparison `immunesim compare BOOSTER.toml REFERENCE.toml --out DIR` (the
same patients with and without the booster). Titres are relative to the patient's baseline
(the last sample at or before day -7, as the endpoints read it). Per directory, the median
[5%, 95%] over patients of:

- peak rise: the booster arm's highest titre within 8 weeks of the booster, minus its titre
  on the booster's day;
- gain: on ``--day``, the booster arm's titre minus the reference arm's;
- kept: the gain over the peak rise;
- other: for ``--other`` (measles), the booster arm minus the reference arm on ``--day``,
  and the reference arm's own titre then.

Then every directory against the first: the gains' mean ratio, a paired Wilcoxon test (the
same patients at another setting) and a Welch t-test.

    python scripts/booster_gain.py runs/niche20_L100 runs/niche20_L200 --day 540
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def _titres(path: Path, columns: list[str], baseline_day: float) -> pd.DataFrame:
    """A run's titre columns relative to their values on the baseline day."""
    df = pd.read_parquet(path / "timeseries.parquet", columns=["day", *columns])
    df = df.set_index("day")
    return df / df[df.index <= baseline_day + 1e-9].iloc[-1]


def per_patient(run: Path, a: argparse.Namespace) -> pd.DataFrame:
    """One row per patient of a comparison directory."""
    patients = sorted((run / a.booster).glob("patient_*"))
    if not patients:
        raise SystemExit(f"{run / a.booster}: no patient_* run directories")
    rows = []
    for p in patients:
        cols = [a.antibody, a.other]
        booster = _titres(p, cols, a.baseline_day)
        reference = _titres(run / a.reference / p.name, cols, a.baseline_day)
        tb, tr = booster[a.antibody], reference[a.antibody]
        ob, orf = booster[a.other], reference[a.other]
        window = tb[(tb.index > a.booster_day) & (tb.index <= a.booster_day + 56)]
        rise = window.max() - tb[tb.index <= a.booster_day].iloc[-1]
        gain = tb.loc[a.day] - tr.loc[a.day]
        rows.append({
            "patient": p.name, "peak_rise": rise, "gain": gain, "kept": gain / rise,
            "other_difference": ob.loc[a.day] - orf.loc[a.day], "other_reference": orf.loc[a.day],
        })  # fmt: skip
    return pd.DataFrame(rows)


def _summary(v: pd.Series, signed: bool = False) -> str:
    lo, med, hi = np.percentile(v, [5, 50, 95])
    f = "{:+.3f}" if signed else "{:.2f}"
    return f"{f.format(med)} [{f.format(lo)}, {f.format(hi)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="compare directories (first: reference)")
    ap.add_argument("--booster", default="sle_revaccination", help="the booster arm's name")
    ap.add_argument("--reference", default="sle_cd19_cart", help="the arm without the booster")
    ap.add_argument("--antibody", default="antibody_tetanus", help="the booster's titre column")
    ap.add_argument("--other", default="antibody_measles", help="another titre column")
    ap.add_argument("--booster-day", type=float, default=270.0, help="day of the booster")
    ap.add_argument("--day", type=float, default=540.0, help="day the gain is read")
    ap.add_argument("--baseline-day", type=float, default=-7.0, help="baseline day")
    a = ap.parse_args()
    tables = {r: per_patient(r, a) for r in a.runs}
    print(f"| run | patients | peak rise | gain on day {a.day:g} | kept | {a.other}: booster "
          f"minus none | {a.other} without booster |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r, t in tables.items():
        print(f"| {r} | {len(t)} | {_summary(t.peak_rise)} | {_summary(t.gain, True)} | "
              f"{_summary(t.kept)} | {_summary(t.other_difference, True)} | "
              f"{_summary(t.other_reference)} |")  # fmt: skip
    first, ref = a.runs[0], tables[a.runs[0]].gain.to_numpy()
    for r in a.runs[1:]:
        v = tables[r].gain.to_numpy()
        paired = stats.wilcoxon(ref, v).pvalue if len(v) == len(ref) else float("nan")
        welch = stats.ttest_ind(ref, v, equal_var=False).pvalue
        print(f"{r} vs {first}: mean gain {v.mean():+.4f} against {ref.mean():+.4f} (ratio "
              f"{v.mean() / ref.mean():.2f}), paired Wilcoxon p = {paired:.2g}, "
              f"Welch p = {welch:.2g}")  # fmt: skip


if __name__ == "__main__":
    main()

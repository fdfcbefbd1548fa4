"""Fit the CRS proxy's grade cut-offs to the published share of patients at each grade.

The CRS proxy grades a run by a value over days 0-28 after infusion: the peak of CAR-T
cells per microlitre of blood (``crs_proxy_car_t_peak_per_ul``, the default,
``endpoints.crs_grade_car_t_per_ul``) or the rise of the tissue cytokine
(``crs_proxy_cytokine_rise``, ``endpoints.crs_grade_cytokine``). This script pools that
value over the cohorts given (the same virtual patients at several lattice sizes and time
steps) and puts each cut-off where the pooled share of runs at or above it is the published
share: ``--grade1 K/N`` runs at grade 1 or above (default 11/15: CRS in 11 of 15 patients
after CD19 CAR-T, Müller et al., NEJM 2024) and ``--grade2 K/N`` at grade 2 or above
(default 1/15, the same series), each rounded to ``--digits`` decimals; grade 3, which no
lupus patient had, is not fitted (``--grade3``; default ten times grade 1). Then it
prints, for each cohort and for each ``--check DIR=K/N[,K2/N2]`` (runs not used in the fit,
against their own published shares), the runs at each grade and Fisher's exact p against
the published counts.

    python scripts/fit_crs_cutoff.py runs/cohort20_L100 runs/cohort20_L100_dt1 \\
        runs/cohort20_L200 runs/cohort20_L200_dt1 \\
        --check runs/compare_sle/sle_bcma_cd19_cart=13/15,0/15

Values are read from each run's ``endpoints.json`` (they do not depend on the cut-offs), so
the fit needs no new runs; ``immunesim rescore DIR --set endpoints.crs_grade_...=[...]``
then writes the grades (and, for runs made before an endpoint existed, computes it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


def share(text: str) -> tuple[int, int]:
    k, n = (int(x) for x in text.split("/"))
    if not 0 <= k <= n or n == 0:
        raise argparse.ArgumentTypeError(f"{text}: K/N with 0 <= K <= N, N > 0")
    return k, n


def values(path: Path, endpoint: str) -> np.ndarray:
    """The stored value of ``endpoint`` in every patient run under ``path``."""
    runs = sorted(path.glob("patient_*"))
    if not runs:
        raise SystemExit(f"{path}: no patient_* run directories")
    got = [json.loads((r / "endpoints.json").read_text()).get(endpoint) for r in runs]
    if any(v is None for v in got):
        raise SystemExit(f"{path}: {endpoint} missing in some runs (immunesim rescore {path})")
    return np.array(got, dtype=float)


def cut_for_share(v: np.ndarray, fraction: float, digits: int) -> float:
    """The cut-off halfway between the runs just in and just out of the top ``fraction``,
    rounded."""
    r = np.sort(v)
    above = int(round(fraction * r.size))  # runs at or above the cut-off
    if above >= r.size:
        return round(float(r[0]), digits)
    if above <= 0:
        return round(float(r[-1]) + 10.0**-digits, digits)
    i = r.size - above
    return round(0.5 * (float(r[i - 1]) + float(r[i])), digits)


def _fisher(m: int, n: int, k: int, big_n: int) -> str:
    return f"{stats.fisher_exact([[m, n - m], [k, big_n - k]]).pvalue:.2g}"


def row(label: str, v: np.ndarray, cuts: list[float], published: list[tuple[int, int]]) -> str:
    grades = (v[:, None] >= np.array(cuts)[None, :]).sum(axis=1)
    counts = "/".join(str(int((grades == g).sum())) for g in range(len(cuts) + 1))
    cells = []
    for g, (k, n) in enumerate(published, start=1):
        m = int((grades >= g).sum())
        cells.append(f"{m} of {v.size} vs {k} of {n} (p {_fisher(m, v.size, k, n)})")
    cells += ["-"] * (2 - len(published))  # a check with no grade-2 share
    return (
        f"| {label} | {counts} | {' | '.join(cells)} |"
        f" {np.median(v):.3g} ({np.min(v):.3g}-{np.max(v):.3g}) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cohorts", nargs="+", type=Path, help="cohort directories to fit to")
    ap.add_argument("--endpoint", default="crs_proxy_car_t_peak_per_ul")
    ap.add_argument("--grade1", type=share, default=(11, 15), help="published K/N at grade >= 1")
    ap.add_argument("--grade2", type=share, default=(1, 15), help="published K/N at grade >= 2")
    ap.add_argument(
        "--grade3",
        type=float,
        default=None,
        help="grade-3 cut-off (not fitted; default 10x grade 1)",
    )
    ap.add_argument("--digits", type=int, default=1, help="decimals of the cut-offs")
    ap.add_argument("--check", action="append", default=[], help="DIR=K/N[,K2/N2], not fitted")
    args = ap.parse_args()
    data = {str(c): values(c, args.endpoint) for c in args.cohorts}
    pooled = np.concatenate(list(data.values()))
    published = [args.grade1, args.grade2]
    cuts = [cut_for_share(pooled, k / n, args.digits) for k, n in published]
    # grade 3: no lupus patient had it, so it is not fitted (default: ten times grade 1)
    full = [*cuts, args.grade3 if args.grade3 is not None else round(10 * cuts[0], args.digits)]
    print(f"{args.endpoint}: fitted cut-offs {cuts} over {pooled.size} runs")
    print(f"--set 'endpoints.<cut-offs>=[{', '.join(f'{c:g}' for c in full)}]'")
    print()
    print(
        "| runs | grades 0/1/2/3 | grade >= 1 vs published (Fisher p) | grade >= 2 vs published "
        f"(Fisher p) | {args.endpoint}, median (range) |"
    )
    print("|---|---|---|---|---|")
    for label, v in data.items():
        print(row(label, v, full, published))
    print(row("pooled (fitted)", pooled, full, published))
    for spec in args.check:
        path, shares = spec.rsplit("=", 1)
        print(row(f"{path} (not fitted)", values(Path(path), args.endpoint), full,
                  [share(s) for s in shares.split(",")]))  # fmt: skip


if __name__ == "__main__":
    main()

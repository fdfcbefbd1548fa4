"""What the run-in cache saves: a run, the app's first model and a cohort, each started from
scratch and from the cache, in one process (so the ratios share the machine's state).

    python benchmarks/runin_cache.py [--patients 20] [--jobs 2] [--out results/runin_cache.json]

Each pair runs the same thing twice against an empty temporary cache: the first computes
the run-in (and saves it), the second starts from it. The cohort's second pass changes the
CAR-T dose, which leaves the run-ins valid: the case of a dose comparison or a sweep over
therapy values. Kernels are compiled before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "scenarios" / "sle_cd19_cart.toml"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "runin_cache.json")
    args = ap.parse_args()
    cache_dir = tempfile.mkdtemp(prefix="immunesim-runin-bench-")
    os.environ["IMMUNESIM_CACHE_DIR"] = cache_dir  # before the workers start

    import immunesim
    from immunesim import io
    from immunesim.cohort import run_cohort
    from immunesim.engine import warm_up
    from immunesim.viz.live import LiveRun, Settings, load_app_scenario

    s = immunesim.load_scenario(SCENARIO)
    warm_up("numba", (16, s.lattice.size))
    work = Path(tempfile.mkdtemp(prefix="immunesim-runin-bench-out-"))
    figures: dict[str, float] = {}
    for label in ("scratch", "cached"):
        figures[f"run_{label}_s"] = _timed(lambda: immunesim.run(s, 1))
    app = load_app_scenario()
    for label in ("scratch", "cached"):
        figures[f"app_first_model_{label}_s"] = _timed(
            lambda: LiveRun(app, Settings.from_scenario(app))
        )
    dose = immunesim.load_scenario(s, ["therapy.2.dose_per_kg=5e5"])
    for label, scenario in (("scratch", s), ("cached", dose)):
        figures[f"cohort{args.patients}_{label}_s"] = _timed(
            lambda sc=scenario, lab=label: run_cohort(
                sc, args.patients, work / lab, seed=1, jobs=args.jobs
            )
        )
    result = {
        "benchmark": "runin_cache",
        "scenario": str(SCENARIO.name),
        "patients": args.patients,
        "jobs": args.jobs,
        "figures": {k: round(v, 2) for k, v in figures.items()},
        "hardware": io.hardware(),
        "versions": io.versions(),
        "git_revision": io.git_revision(),
    }
    for k, v in result["figures"].items():
        print(f"{k:>28}: {v:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Make the teaching set of immune-reset animations and the stills of the gallery.

    python visualizations/make_teaching_set.py [--size 100] [--out visualizations/output]

Runs four scenarios with daily lattice snapshots from day -30 and writes:

- reset.mp4 / reset.html / reset.gif: the CD19 CAR-T immune reset (the MP4 with a title
  and explainer cards);
- reset_vs_rituximab.mp4: the reset and anti-CD20 (rituximab) side by side;
- bcma_cd19_titres.mp4: BCMA+CD19 CAR-T and the loss of the vaccine titres;
- failed_reset.mp4: a reset that fails (slow autoantigen clearance and a flare trigger on
  day 200) and relapses;
- stills (PNG) at the key moments, used by visualizations/README.md.

The shipped scenarios are one anatomical unit (100 x 100 sites), the default --size: each
site is 4-5 pixels on a 1280 x 720 frame, cells a class can see. --size 200 shows four
units with the same course (docs/validation/convergence.md) in finer pictures; a smaller
--size runs faster. Every run directory is
kept under --out/runs, so frames can be re-rendered with
`immunesim animate RUNDIR --out FILE` without running again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import immunesim
from immunesim.scenario import read_toml
from immunesim.viz.animate import animate, animate_side_by_side, still

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = {
    "reset": "sle_cd19_cart",
    "rituximab": "sle_rituximab",
    "bcma_cd19": "sle_bcma_cd19_cart",
    "failed_reset": "sle_failed_reset",
}
STILLS = {
    "reset": (-10, 9, 40, 150, 400),
    "rituximab": (150,),
    "failed_reset": (450,),
    "bcma_cd19": (200,),
}
#: The failed-reset film's trigger: on fixed days after the B cells' return, so that the
#: relapse falls inside the film whatever the seed (the scenario's patients meet theirs at
#: random, some only near the end of the follow-up).
FAILED_RESET_TRIGGER = {
    "type": "trigger",
    "label": "flare trigger (an infection)",
    "days": [200.0, 201.0, 202.0],
    "autoantigen_per_site": 50.0,
}


def _until(therapy: list[dict], last_day: float) -> list[dict]:
    """The therapy entries with their days up to ``last_day`` (a shortened run may not
    schedule a therapy after its end)."""
    kept = []
    for t in therapy:
        if "days" in t:
            t = {**t, "days": [d for d in t["days"] if d <= last_day]}
            if t["days"]:
                kept.append(t)
        elif t.get("day", 0.0) <= last_day:
            kept.append(t)
    return kept


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100, help="lattice size (sites per side)")
    ap.add_argument("--out", type=Path, default=REPO / "visualizations" / "output")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fps", type=float, default=12.0, help="frames per second of the films")
    ap.add_argument("--last-day", type=float, default=540.0)
    ap.add_argument(
        "--run-in-days",
        type=float,
        default=None,
        help="shorter run-in (default: the scenario's, 240 days)",
    )
    args = ap.parse_args(argv)

    runs = {}
    for key, name in SCENARIOS.items():
        run_dir = args.out / "runs" / name
        print(f"running {name} ({args.size}x{args.size}) ...", flush=True)
        data = read_toml(REPO / "scenarios" / f"{name}.toml")
        if key == "failed_reset":
            data["therapy"] = [t for t in data["therapy"] if t["type"] != "flare_triggers"]
            data["therapy"].append(FAILED_RESET_TRIGGER)
        data["therapy"] = _until(data.get("therapy", []), args.last_day)
        immunesim.run(
            data,
            seed=args.seed,
            out=run_dir,
            overwrite=True,
            overrides=[
                f"lattice.size={args.size}",
                # a size that is not whole 1-mm units shows one scaled-down unit
                *([f"lattice.zones.unit_um={args.size * 10}"] if args.size % 100 else []),
                f"time.follow_up_days={args.last_day:g}",
                "output.snapshot_every_hours=24",
                "output.snapshot_from_day=-30",
            ]
            + ([f"time.run_in_days={args.run_in_days:g}"] if args.run_in_days is not None else []),
        )
        runs[key] = run_dir

    print("rendering ...", flush=True)
    reset = "The immune reset: anti-CD19 CAR-T in lupus"
    animate(
        runs["reset"], args.out / "reset.mp4", fps=args.fps, pace="auto", title=reset, explain=True
    )
    animate(runs["reset"], args.out / "reset.html", fps=args.fps, pace="auto", title=reset)
    animate(runs["reset"], args.out / "reset.gif", fps=8, width=640, pace="auto")
    animate_side_by_side(
        [runs["reset"], runs["rituximab"]],
        args.out / "reset_vs_rituximab.mp4",
        fps=args.fps,
        pace="auto",
        titles=["anti-CD19 CAR-T", "rituximab"],
    )
    animate(runs["bcma_cd19"], args.out / "bcma_cd19_titres.mp4", fps=args.fps, pace="auto",
            title="CD19 + BCMA CAR-T: the plasma cells go too")  # fmt: skip
    animate(runs["failed_reset"], args.out / "failed_reset.mp4", fps=args.fps, pace="auto",
            title="A reset that fails: slow clearance and a flare trigger")  # fmt: skip
    for key, days in STILLS.items():
        for day in days:
            still(runs[key], day, args.out / f"still_{key}_day{day:+04d}.png")
    print(f"wrote the teaching set to {args.out}")


if __name__ == "__main__":
    main()

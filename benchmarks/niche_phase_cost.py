"""What competition for marrow niches costs a step: the default scenario on a large lattice
with ``activation.niche_displacement_per_day`` 0 (the phase is skipped) and 1, stepped in
one process, alternating, best of several rounds.

    python benchmarks/niche_phase_cost.py [--size 500] [--steps 24] [--rounds 3]

Prints the seconds per step of each and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from immunesim.engine import Simulation
from immunesim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "sle_cd19_cart.toml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    sims = {}
    for rate in (0.0, 1.0):
        s = load_scenario(
            SCENARIO,
            [
                f"lattice.size={a.size}",
                f"activation.niche_displacement_per_day={rate}",
                "time.run_in_days=60",
            ],
        )
        sim = Simulation(s, seed=1)
        sim.run(until_step=30 * 12)  # a month of the untreated disease: plasmablasts in marrow
        sims[rate] = sim
    best = dict.fromkeys(sims, float("inf"))
    for _ in range(a.rounds):
        for rate, sim in sims.items():
            t0 = time.perf_counter()
            for _ in range(a.steps):
                sim.step()
            best[rate] = min(best[rate], (time.perf_counter() - t0) / a.steps)
    cells = sims[1.0].state.n
    print(
        f"lattice {a.size}^2, {cells} cells: {best[0.0] * 1e3:.1f} ms/step without "
        f"competition, {best[1.0] * 1e3:.1f} ms/step with it, ratio {best[1.0] / best[0.0]:.3f}"
    )


if __name__ == "__main__":
    main()

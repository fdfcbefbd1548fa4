"""Two simulations in one process: one after the other, then in two Python threads at once
(as the app steps its browser tabs), each with one numba thread; the ratio of the times.

    python benchmarks/threads_in_one_process.py [--lattice 100] [--steps 120] [--rounds 3]
                                                [--out results/threads_in_one_process.json]

The CPU backend's serial loops release the GIL, so on two idle cores the two threads take
about the time of one simulation (ratio near 2); if they held it, the threads would take
turns (ratio near 1). Both simulations start from the same state (the run-in's first
``--warm`` steps, untimed) and the best of ``--rounds`` is kept (other processes on the
machine only add time). Writes ``--out`` with the hardware and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lattice", type=int, default=100)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--warm", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "threads_in_one_process.json")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")

    import numba

    import immunesim
    from immunesim import io
    from immunesim.engine import Simulation

    numba.set_num_threads(1)
    s = immunesim.load_scenario(
        HERE.parent / "scenarios" / "sle_cd19_cart.toml",
        [f"lattice.size={args.lattice}", f"lattice.zones.unit_um={args.lattice * 10}"],
    )

    def fresh() -> Simulation:
        sim = Simulation(s, seed=1, backend="numba")
        sim.run(until_step=args.warm)
        return sim

    def steps(sim: Simulation) -> None:
        numba.set_num_threads(1)  # per thread
        for _ in range(args.steps):
            sim.step()

    serial, threaded = [], []
    for _ in range(args.rounds):
        a, b = fresh(), fresh()
        t0 = time.perf_counter()
        steps(a)
        steps(b)
        serial.append(time.perf_counter() - t0)
        a, b = fresh(), fresh()
        threads = [threading.Thread(target=steps, args=(x,)) for x in (a, b)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        threaded.append(time.perf_counter() - t0)
    result = {
        "benchmark": "threads_in_one_process",
        "date": date.today().isoformat(),
        "lattice": args.lattice,
        "steps_each": args.steps,
        "one_after_the_other_s": min(serial),
        "in_two_threads_s": min(threaded),
        "ratio": min(serial) / min(threaded),
        "hardware": io.hardware(),
        "versions": io.versions(),
        "load_average_after": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"two simulations of {args.steps} steps at {args.lattice} x {args.lattice}: one after "
        f"the other {result['one_after_the_other_s']:.2f} s, in two threads "
        f"{result['in_two_threads_s']:.2f} s (x{result['ratio']:.2f})"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

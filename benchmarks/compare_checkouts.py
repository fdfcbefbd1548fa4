"""Throughput of two source trees of immunesim measured in one run, as ratios.

    git worktree add /tmp/old <revision>
    python benchmarks/compare_checkouts.py /tmp/old . [--rounds 3] [--sizes 56,170,540]

Each round runs :func:`immunesim.bench.run_bench` (the ``immunesim bench`` measurement, without
the Mesa comparison) of the first tree, then of the second, in fresh processes (each tree
with its own numba cache, warmed up and excluded from the timing); the best of the rounds is
kept per configuration (other processes on the machine only add time), and the table gives
the second tree's cell-updates per second over the first's. A ratio above 1 means the second
tree is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, sys
from immunesim.bench import run_bench
res = run_bench(tuple(int(v) for v in sys.argv[1].split(",")), steps=int(sys.argv[2]),
                backends=("numba",), mesa=False)
print(json.dumps([(r["lattice"], r["threads"], r["cell_updates_per_second"])
                  for r in res["results"]]))
"""


def measure(tree: Path, sizes: str, steps: int) -> dict[tuple[int, int], float]:
    """Cell-updates/s per (lattice, threads) of the immunesim in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, sizes, str(steps)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {(lat, thr): rate for lat, thr, rate in json.loads(out.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path, help="source tree measured first (e.g. the old one)")
    ap.add_argument("second", type=Path, help="source tree compared with it")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="56,170,540")
    ap.add_argument("--steps", type=int, default=48)
    a = ap.parse_args(argv)
    best: list[dict[tuple[int, int], float]] = [{}, {}]
    for r in range(a.rounds):
        for i, tree in enumerate((a.first, a.second)):
            for key, rate in measure(tree, a.sizes, a.steps).items():
                best[i][key] = max(best[i].get(key, 0.0), rate)
        print(f"round {r + 1} of {a.rounds} done", file=sys.stderr)
    print(f"| lattice | threads | {a.first} (updates/s) | {a.second} (updates/s) | ratio |")
    print("|---|---|---|---|---|")
    for key in sorted(best[0]):
        old, new = best[0][key], best[1][key]
        print(f"| {key[0]}^2 | {key[1]} | {old:.3g} | {new:.3g} | {new / old:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

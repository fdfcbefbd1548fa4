"""Run the throughput benchmark and record the results with the hardware.

    python benchmarks/run_benchmarks.py [--quick] [--steps 48] [--sizes 1700,5400]
                                        [--backend numba --backend cuda]

On a GPU machine, ``--backend numba --backend cuda --sizes 1700,5400`` measures both backends
at about 10^6 and 10^7 cells in one run, so the GPU's speed-up over the machine's cores is a
ratio measured in that run.

Writes benchmarks/results/<date>-<machine>.json (hardware, versions, every configuration,
the comparison with the Mesa reference) and prints the Markdown tables that
benchmarks/README.md shows. The same measurement is `immunesim bench [--quick]`.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

from immunesim.bench import (
    COMPARISON_COLUMNS,
    FULL_SIZES,
    QUICK_SIZES,
    comparison_rows,
    run_bench,
)
from immunesim.io import write_json

HERE = Path(__file__).resolve().parent


def markdown(res: dict) -> str:
    hw = res["hardware"]
    lines = [
        f"{hw['cpu']}, {hw['cpu_count']} logical cores; numba {res['versions'].get('numba')}; "
        f"JIT warm-up {res['jit_warm_up_seconds']:.1f} s (excluded)",
        "",
        "| lattice | cells | backend | threads | cell-updates/s | full step / floor "
        "| bytes per (site + cell) | STREAM GB/s | step / roofline | slowest phase |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["results"]:
        slow = max(r["phase_fraction"], key=r["phase_fraction"].get)
        where = r["threads"] if r["backend"] == "numba" else r["device"]
        lines.append(
            f"| {r['lattice']}^2 | {r['cells']:,} | {r['backend']} | {where} | "
            f"{r['cell_updates_per_second']:.3g} | {r['cost_vs_floor']:.1f} | "
            f"{r['bytes_per_site_plus_cell']:.0f} | "
            f"{r['stream_bytes_per_second'] / 1e9:.1f} | {r['step_vs_roofline']:.1f} | {slow} "
            f"({100 * r['phase_fraction'][slow]:.0f}%) |"
        )
    cmp = res.get("mesa_comparison")
    if cmp:
        lines += [
            "",
            f"Speed-up over the Mesa reference (mesa {res['versions'].get('mesa')}; "
            f"{cmp['mesa']['steps']} reference and {cmp['fast'][0]['steps']} fast steps "
            "from the same state):",
            "",
            "| " + " | ".join(COMPARISON_COLUMNS) + " |",
            "|" + "---|" * len(COMPARISON_COLUMNS),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(cmp)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--steps", type=int, default=48, help="timed steps per configuration")
    ap.add_argument("--out", type=Path, default=None, help="results file (JSON)")
    ap.add_argument(
        "--sizes",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=None,
        help="lattice sides, comma-separated",
    )
    ap.add_argument(
        "--backend",
        action="append",
        choices=("numba", "cuda"),
        default=None,
        help="backend to measure (repeatable; default numba)",
    )
    args = ap.parse_args(argv)
    backends = tuple(dict.fromkeys(args.backend or ["numba"]))
    res = run_bench(
        args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES),
        steps=args.steps,
        backends=backends,
        mesa="numba" in backends,
    )
    stamp = datetime.date.today().isoformat()
    out = args.out or HERE / "results" / f"{stamp}-{platform.node() or 'machine'}.json"
    write_json(out, res)
    print(markdown(res))
    print(f"\nwrote {out}")
    return res


if __name__ == "__main__":
    main()

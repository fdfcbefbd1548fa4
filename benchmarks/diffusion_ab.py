"""The CPU's diffusion in blocks of rows against the site map of the same rule, in one run.

    python benchmarks/diffusion_ab.py [--sizes 56,170,540,1700] [--threads 1,2] [--out FILE]

For each lattice size and thread count, two simulations of the benchmark scenario step in
alternation from the same seed: one diffuses with the backend's row blocks
(:func:`immunesim.backends.numba_cpu.diffuse`, what a step runs), the other with the site
map of :func:`immunesim.kernels.molecules.diffuse` (what the step ran before). Their states
must stay equal bit for bit (checked at the end). Reported: the step's minimum and median
time for each, the diffusion sub-step alone for each, and the ratios old / new (above 1:
the row blocks are faster). Alternating in one process puts both under the same load, so
the ratios hold on a noisy machine where absolute figures do not.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numba as nb
import numpy as np

from immunesim.backends import numba_cpu
from immunesim.bench import _scenario
from immunesim.engine import Simulation
from immunesim.kernels import molecules

ROW_BLOCKS = numba_cpu.diffuse


def site_map(t, c, s, p, layers):
    """The diffusion sub-step as the site map of the per-site rule."""
    return numba_cpu.for_sites(molecules.diffuse, layers, t, c, s, p, layers)


def _timed(f, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return out


def measure(size: int, threads: int, steps: int) -> dict:
    nb.set_num_threads(threads)
    impl = {"site map": site_map, "row blocks": ROW_BLOCKS}
    sims = {k: Simulation(_scenario(size, 2.0), seed=1, backend="numba") for k in impl}
    step: dict[str, list[float]] = {k: [] for k in impl}
    try:
        for k, sim in sims.items():  # compile, and leave the first steps out
            numba_cpu.diffuse = impl[k]
            for _ in range(3):
                sim.step()
        for _ in range(steps):
            for k, sim in sims.items():
                numba_cpu.diffuse = impl[k]
                step[k].extend(_timed(sim.step, 1))
        same = bool(np.array_equal(sims["site map"].state.mol, sims["row blocks"].state.mol))
        sub: dict[str, list[float]] = {k: [] for k in impl}
        st, p = sims["row blocks"].state, sims["row blocks"].params
        n = st.mol.shape[0]
        none = np.zeros(n, np.int64)
        t = molecules.Transport(st.L, p.diffusion, st.mol_next, none, none, 1)
        for _ in range(steps):
            for k, f in impl.items():
                sub[k].extend(_timed(lambda f=f: f(t, st.cells, st.sites, p.k, n), 1))
    finally:
        numba_cpu.diffuse = ROW_BLOCKS
    row = {"lattice": size, "threads": threads, "cells": int(st.n), "same_bits": same}
    for k in impl:
        row[f"step_ms_{k}"] = [1e3 * min(step[k]), 1e3 * float(np.median(step[k]))]
        row[f"diffusion_ms_{k}"] = [1e3 * min(sub[k]), 1e3 * float(np.median(sub[k]))]
    row["step_ratio_min"] = row["step_ms_site map"][0] / row["step_ms_row blocks"][0]
    row["step_ratio_median"] = row["step_ms_site map"][1] / row["step_ms_row blocks"][1]
    row["diffusion_ratio_min"] = row["diffusion_ms_site map"][0] / row["diffusion_ms_row blocks"][0]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="56,170,540,1700")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=0, help="steps per size (default: by size)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    a = ap.parse_args()
    rows = []
    print(
        "| lattice | cells | threads | step ms, site map (min / median) | step ms, row blocks "
        "| step ratio (min / median) | diffusion sub-step ms, site map / row blocks "
        "(min) | ratio | same bits |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in (int(v) for v in a.sizes.split(",")):
        for threads in (int(v) for v in a.threads.split(",")):
            steps = a.steps or max(10, min(300, int(3e6 / size**2)))
            r = measure(size, threads, steps)
            rows.append(r)
            sm, rb = r["step_ms_site map"], r["step_ms_row blocks"]
            print(
                f"| {size}^2 | {r['cells']:,} | {threads} | {sm[0]:.3g} / {sm[1]:.3g} | "
                f"{rb[0]:.3g} / {rb[1]:.3g} | {r['step_ratio_min']:.2f} / "
                f"{r['step_ratio_median']:.2f} | {r['diffusion_ms_site map'][0]:.3g} / "
                f"{r['diffusion_ms_row blocks'][0]:.3g} | {r['diffusion_ratio_min']:.2f} | "
                f"{'yes' if r['same_bits'] else 'NO'} |",
                flush=True,
            )
    if a.out:
        meta = {
            "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numba": nb.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }
        a.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

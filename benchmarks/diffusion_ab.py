"""The CPU's diffusion in place, in blocks of rows, against two copies of the layers, in one run.

    python benchmarks/diffusion_ab.py [--sizes 56,170,540,1700] [--threads 1,2] [--out FILE]

For each lattice size and thread count, three simulations of the benchmark scenario step in
alternation from the same seed, each diffusing its own way:

- **in place**: the backend's blocks of rows written into the layers they read
  (:func:`immunesim.backends.numba_cpu.diffuse` with ``spare_mol`` the state's own layers,
  what a step runs);
- **row blocks, two copies**: the same blocks written into a second copy of the layers,
  swapped in after each sub-step (what a step ran before the in-place diffusion);
- **site map, two copies**: the per-site rule :func:`immunesim.kernels.molecules.diffuse`
  mapped over every site into a second copy (what the CUDA backend runs, and the CPU before
  the row blocks);
- **in place, 64-bit products**: the in-place blocks of rows with every product a full
  64-bit one (``molecules.portion``), as before the 32-bit products of
  ``molecules.portion_u32`` (the same source, compiled here with ``portion`` in its place).

Their states must stay equal bit for bit (checked at the end). Reported: the step's minimum
and median time for each, the diffusion sub-step alone for each, and the ratios of each to
the in-place one (above 1: in place is faster). Alternating in one process puts all three
under the same load, so the ratios hold on a noisy machine where absolute figures do not.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import types
from pathlib import Path

import numba as nb
import numpy as np

from immunesim.backends import numba_cpu
from immunesim.bench import _scenario
from immunesim.engine import Simulation
from immunesim.kernels import molecules

IN_PLACE = (numba_cpu.diffuse, numba_cpu.spare_mol)


def _second_copy(st):
    if "mol_next" not in st.aux:
        st.aux["mol_next"] = np.empty_like(st.mol)
    return st.aux["mol_next"]


def site_map(t, c, s, p, layers, scratch=None):
    """The diffusion sub-step as the site map of the per-site rule."""
    return numba_cpu.for_sites(molecules.diffuse, layers, t, c, s, p, layers)


def _recompiled(rule, replace: dict, **options):
    """``rule`` compiled again from its source with the globals in ``replace`` swapped, under
    a name of its own (so that numba's disk cache keeps it apart)."""
    src = rule.py_func
    env = {**src.__globals__, **replace}
    func = types.FunctionType(src.__code__, env, src.__name__, src.__defaults__, src.__closure__)
    func.__qualname__ = f"{src.__qualname__}_64bit"
    func.__module__ = __name__
    return nb.njit(cache=False, **options)(func)


_times = nb.njit(inline="always")(lambda a, b: a * b)
_row_portions_64 = _recompiled(
    molecules._row_portions, {"portion_u32": molecules.portion}, inline="always"
)
_ROWS_64 = {"_row_portions": _row_portions_64}
_rows_halo_64 = _recompiled(molecules.rows_halo, _ROWS_64, nogil=True)
_diffuse_rows_64 = _recompiled(
    molecules.diffuse_rows,
    {**_ROWS_64, "portion_u32": molecules.portion, "_product_i32": _times},
    nogil=True,
)


def in_place_64bit(t, c, s, p, layers, scratch=None):
    """:func:`immunesim.backends.numba_cpu.diffuse` with the 64-bit products."""
    halo = np.empty(numba_cpu._buffer_shape(layers, t.L), np.int32)
    tasks = halo.shape[0]
    blocks = tasks // layers
    gifts = np.empty(tasks, np.int64)
    serial = layers * t.L * t.L <= numba_cpu.CHUNK or nb.get_num_threads() == 1
    factory = numba_cpu._rows_serial if serial else numba_cpu._rows_parallel
    numba_cpu._direct(factory, _rows_halo_64)(tasks, blocks, t, s, p, halo, gifts)
    numba_cpu._direct(factory, _diffuse_rows_64)(tasks, blocks, t, s, p, halo, gifts)
    return gifts.reshape(layers, blocks).sum(axis=1)


#: name -> (the backend's ``diffuse``, its ``spare_mol``)
IMPLEMENTATIONS = {
    "in place": IN_PLACE,
    "row blocks, two copies": (numba_cpu.diffuse, _second_copy),
    "site map, two copies": (site_map, _second_copy),
    "in place, 64-bit products": (in_place_64bit, numba_cpu.spare_mol),
}


def _use(name: str) -> None:
    numba_cpu.diffuse, numba_cpu.spare_mol = IMPLEMENTATIONS[name]


def _timed(f, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return out


def _sub_step(sim: Simulation, n: int) -> None:
    """One diffusion sub-step of ``sim``'s layers, the way the current implementation does it
    (the last of a step: decay and the gift to the circulation included)."""
    st, p = sim.state, sim.params
    none = np.zeros(n, np.int64)
    t = molecules.Transport(st.L, p.diffusion, numba_cpu.spare_mol(st), none, none, 1)
    numba_cpu.diffuse(t, st.cells, st.sites, p.k, n)


def measure(size: int, threads: int, steps: int) -> dict:
    nb.set_num_threads(threads)
    sims = {k: Simulation(_scenario(size, 2.0), seed=1, backend="numba") for k in IMPLEMENTATIONS}
    step: dict[str, list[float]] = {k: [] for k in IMPLEMENTATIONS}
    sub: dict[str, list[float]] = {k: [] for k in IMPLEMENTATIONS}
    try:
        for k, sim in sims.items():  # compile, and leave the first steps out
            _use(k)
            for _ in range(3):
                sim.step()
        for _ in range(steps):
            for k, sim in sims.items():
                _use(k)
                step[k].extend(_timed(sim.step, 1))
        mols = [sim.state.mol for sim in sims.values()]
        same = all(np.array_equal(mols[0], m) for m in mols[1:])
        # the sub-step alone, on copies of one state (each diffuses its own)
        n = mols[0].shape[0]
        for _ in range(steps):
            for k, sim in sims.items():
                _use(k)
                sub[k].extend(_timed(lambda sim=sim: _sub_step(sim, n), 1))
    finally:
        _use("in place")
    row = {
        "lattice": size,
        "threads": threads,
        "cells": int(sims["in place"].state.n),
        "same_bits": same,
    }
    for k in IMPLEMENTATIONS:
        row[f"step_ms_{k}"] = [1e3 * min(step[k]), 1e3 * float(np.median(step[k]))]
        row[f"diffusion_ms_{k}"] = [1e3 * min(sub[k]), 1e3 * float(np.median(sub[k]))]
        mine, ours = row[f"step_ms_{k}"], row["step_ms_in place"]
        row[f"step_ratio_{k}"] = [mine[0] / ours[0], mine[1] / ours[1]]
        row[f"diffusion_ratio_{k}"] = row[f"diffusion_ms_{k}"][0] / row["diffusion_ms_in place"][0]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="56,170,540,1700")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=0, help="steps per size (default: by size)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    a = ap.parse_args()
    rows = []
    others = [k for k in IMPLEMENTATIONS if k != "in place"]
    print(
        "| lattice | cells | threads | step ms, in place (min / median) | "
        + " | ".join(f"step ratio, {k} (min / median)" for k in others)
        + " | diffusion sub-step ms (min), "
        + " / ".join(IMPLEMENTATIONS)
        + " | same bits |"
    )
    print("|---" * (5 + len(others)) + "|")
    for size in (int(v) for v in a.sizes.split(",")):
        for threads in (int(v) for v in a.threads.split(",")):
            steps = a.steps or max(10, min(300, int(3e6 / size**2)))
            r = measure(size, threads, steps)
            rows.append(r)
            ip = r["step_ms_in place"]
            ratios = " | ".join(
                f"{r[f'step_ratio_{k}'][0]:.2f} / {r[f'step_ratio_{k}'][1]:.2f}" for k in others
            )
            subs = " / ".join(f"{r[f'diffusion_ms_{k}'][0]:.3g}" for k in IMPLEMENTATIONS)
            print(
                f"| {size}^2 | {r['cells']:,} | {threads} | {ip[0]:.3g} / {ip[1]:.3g} | {ratios} | "
                f"{subs} | {'yes' if r['same_bits'] else 'NO'} |",
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

"""Same seed, same bits: across runs, processes and numba thread counts; seeds matter."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SCENARIOS, immunesim_cmd

SMALL = [
    "--set",
    "lattice.size=40",
    "--set",
    "lattice.zones.unit_um=400",
    "--set",
    "time.run_in_days=12",
    "--set",
    "time.follow_up_days=15",
    "--set",
    "therapy.2.dose_per_kg=4e6",
]
DATA_FILES = ("timeseries.csv", "timeseries.parquet", "endpoints.json", "events.json")


def run_cli(out: Path, seed: int, threads: int, cache: bool) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    proc = subprocess.run(
        [
            *immunesim_cmd(),
            "run",
            str(SCENARIOS / "sle_cd19_cart.toml"),
            "--out",
            str(out),
            "--seed",
            str(seed),
            "--quiet",
            *SMALL,
            *([] if cache else ["--no-cache"]),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("repro")
    # whole runs, except b, which may start from the run-in cache: the same bits either way
    spec = {
        "a": (5, 2, False),
        "b": (5, 2, True),
        "one_thread": (5, 1, False),
        "other_seed": (6, 2, False),
    }
    out = {}
    for name, (seed, threads, cache) in spec.items():
        out[name] = base / name
        manifest = run_cli(out[name], seed, threads, cache)
        assert manifest["hardware"]["numba_threads"] == threads
        assert manifest["status"] == "complete"
    return out


def _without_timing(manifest: dict) -> dict:
    m = dict(manifest)
    for key in ("timing", "command", "hardware", "process", "run_in"):  # run_in: how it started
        m.pop(key)
    return m


@pytest.mark.parametrize("name", DATA_FILES)
def test_same_seed_gives_identical_bytes(runs, name):
    assert (runs["a"] / name).read_bytes() == (runs["b"] / name).read_bytes()


@pytest.mark.parametrize("name", DATA_FILES)
def test_one_and_two_threads_give_identical_bytes(runs, name):
    assert (runs["a"] / name).read_bytes() == (runs["one_thread"] / name).read_bytes()


def test_manifests_differ_only_in_timing(runs):
    ma = json.loads((runs["a"] / "manifest.json").read_text())
    mb = json.loads((runs["b"] / "manifest.json").read_text())
    assert _without_timing(ma) == _without_timing(mb)
    assert ma["timing"]["wall_seconds"] > 0


def test_different_seeds_differ(runs):
    a = (runs["a"] / "timeseries.csv").read_text()
    c = (runs["other_seed"] / "timeseries.csv").read_text()
    assert a != c
    # the difference is in the biology, not only in a label
    import pandas as pd

    da = pd.read_csv(runs["a"] / "timeseries.csv")
    dc = pd.read_csv(runs["other_seed"] / "timeseries.csv")
    assert (da["b_cells"] != dc["b_cells"]).any()


def test_serial_and_parallel_maps_give_the_same_bits(monkeypatch):
    """A cell map runs serially up to SERIAL_CELLS cells and in parallel chunks above; the
    chunks' tallies are summed in chunk order, so either launch gives the same bits. Here
    every cell map of a small run (from the end of standard of care through conditioning
    and CAR-T expansion) is forced parallel on 2 threads and compared with the same run's
    serial maps."""
    import numba

    import immunesim
    from immunesim.backends import numba_cpu

    assert numba.config.NUMBA_NUM_THREADS >= 2, "needs 2 cores"
    # a short run (most of this test's time in CI, 45-50 s, is compiling the parallel
    # launches of the maps that the warm-up runs serially)
    short = ["time.run_in_days=6", "time.follow_up_days=3", "time.dt_hours=2"]
    s = immunesim.load_scenario(
        SCENARIOS / "sle_cd19_cart.toml", [x for x in SMALL if x != "--set"] + short
    )
    numba.set_num_threads(2)
    serial = immunesim.run(s, 5, cache=False).timeseries  # whole runs, not forked
    monkeypatch.setattr(numba_cpu, "SERIAL_CELLS", 0)
    parallel = immunesim.run(s, 5, cache=False).timeseries
    assert serial.equals(parallel)
    assert serial["car_t"].max() > 0  # the maps had CAR-T to kill with


def test_simulations_stepped_in_threads_of_one_process_keep_their_bits():
    """Two simulations stepped at once in two threads of one process (the app's browser
    tabs) end with the bits of one run alone: no scratch buffer of the CPU backend is
    shared between threads. Python is made to switch threads every microsecond, so that
    the threads' kernel calls interleave at every step (with a shared tally buffer, every
    such run came out different)."""
    import sys
    import threading

    import numpy as np

    import immunesim
    from immunesim.engine import Simulation
    from tests.conftest import small_cart

    s = immunesim.load_scenario(small_cart(size=32, run_in=8, follow_up=10))

    def run(out: dict, k: int) -> None:
        sim = Simulation(s, seed=5, backend="numba")
        sim.run()
        out[k] = (sim.state.mol.copy(), sim.rows)

    alone: dict = {}
    run(alone, 0)
    together: dict = {}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=(together, k)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    for k in range(2):
        assert np.array_equal(together[k][0], alone[0][0])
        assert together[k][1] == alone[0][1]

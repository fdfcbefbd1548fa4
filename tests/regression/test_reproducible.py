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
    every cell map of a small run is forced parallel on 2 threads and compared with the
    same run's serial maps."""
    import numba

    import immunesim
    from immunesim.backends import numba_cpu

    assert numba.config.NUMBA_NUM_THREADS >= 2, "needs 2 cores"
    s = immunesim.load_scenario(
        SCENARIOS / "sle_cd19_cart.toml", [x for x in SMALL if x != "--set"]
    )
    numba.set_num_threads(2)
    serial = immunesim.run(s, 5, cache=False).timeseries  # whole runs, not forked
    monkeypatch.setattr(numba_cpu, "SERIAL_CELLS", 0)
    parallel = immunesim.run(s, 5, cache=False).timeseries
    assert serial.equals(parallel)
    assert serial["car_t"].max() > 0  # the maps had CAR-T to kill with

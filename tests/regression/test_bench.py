"""The benchmark measures what it says (structure only: tests never assert timings)."""

from __future__ import annotations

import runpy

import numba

from immunesim.bench import bench_one
from immunesim.engine import PHASES
from tests.conftest import REPO


def test_bench_one_reports_every_phase_and_the_state_size():
    r = bench_one(size=24, threads=1, steps=3, run_in_days=2.0)
    assert r["threads"] == 1 and r["steps"] == 3 and r["sites"] == 576
    assert 0 < r["cells"] <= 576
    assert set(r["phase_fraction"]) == set(PHASES)
    assert sum(r["phase_fraction"].values()) <= 1.0 + 1e-6  # phases lie inside the step
    assert r["bytes_per_site_plus_cell"] > 100  # int64 molecular layers, double-buffered
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_benchmark_script_writes_results(tmp_path, monkeypatch):
    import immunesim.bench as bench

    monkeypatch.setattr(bench, "QUICK_SIZES", (16,))
    script = runpy.run_path(str(REPO / "benchmarks" / "run_benchmarks.py"))
    out = tmp_path / "r.json"
    res = script["main"](["--quick", "--steps", "2", "--out", str(out)])
    assert out.is_file()
    assert {r["lattice"] for r in res["results"]} == {16}
    assert "| 16^2 |" in script["markdown"](res)

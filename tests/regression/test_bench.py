"""The benchmark measures what it says (structure only: tests never assert timings)."""

from __future__ import annotations

import runpy

import numba
import numpy as np
import pytest

from immunesim.bench import bench_one, comparison_rows, mesa_comparison
from immunesim.engine import PHASES
from tests.conftest import REPO


def test_bench_one_reports_every_phase_and_the_state_size():
    r = bench_one(size=24, threads=1, steps=3, run_in_days=2.0)
    assert r["threads"] == 1 and r["steps"] == 3 and r["sites"] == 576
    assert 0 < r["cells"] <= 576
    assert set(r["phase_fraction"]) == set(PHASES)
    assert sum(r["phase_fraction"].values()) <= 1.0 + 1e-6  # phases lie inside the step
    # int32 molecular layers, one copy of them on the CPU (172 with two int64 copies)
    assert 64 < r["bytes_per_site_plus_cell"] < 90
    # the roofline: the whole state read and written once, at the bandwidth measured here
    assert r["bytes_per_step"] == 2 * r["state_bytes"]
    assert r["state_bytes"] == pytest.approx(
        r["bytes_per_site_plus_cell"] * (576 + r["cells"]),
        rel=1e-3,  # cells: a mean, rounded
    )
    assert r["floor_step_seconds"] == pytest.approx(
        r["bytes_per_step"] / r["stream_bytes_per_second"]
    )
    assert r["step_vs_roofline"] == pytest.approx(
        r["wall_seconds"] / r["steps"] / r["floor_step_seconds"]
    )
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_stream_bandwidth_moves_the_bytes_it_counts(monkeypatch):
    """The triad computes ``b + 3 c`` over every element (a wrong sum is refused), and the
    bandwidth is the bytes it counts over the best time: timing it with a clock that
    advances one second per reading gives exactly 24 bytes an element per second."""
    import immunesim.bench as bench

    a = np.zeros(1000)
    bench._triad(a, np.ones(1000), np.full(1000, 2.0), 3.0)
    assert (a == 7.0).all()
    ticks = iter(range(1000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(ticks)))
    assert bench.stream_bandwidth(n=1000, repeats=3) == pytest.approx(24 * 1000)


def test_bench_measures_the_cuda_backend_on_the_same_cells():
    """On the CUDA backend (here in numba's simulator) the same scenario runs: the same
    cells as on the CPU after the run-in (the backends compute the same bits), and the
    configuration says which backend and device it measured."""
    cpu = bench_one(size=12, threads=1, steps=2, run_in_days=1.0, backend="numba")
    gpu = bench_one(size=12, threads=1, steps=2, run_in_days=1.0, backend="cuda")
    assert (cpu["backend"], gpu["backend"]) == ("numba", "cuda")
    assert gpu["device"] and gpu["device"] != cpu["device"]
    assert gpu["cells"] == cpu["cells"] and gpu["sites"] == cpu["sites"] == 144
    assert set(gpu["phase_fraction"]) == set(PHASES)
    # the GPU state holds the compaction's spare cell arrays and diffusion's second copy of
    # the layers as well
    assert gpu["bytes_per_site_plus_cell"] > cpu["bytes_per_site_plus_cell"]
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_benchmark_script_writes_results(tmp_path, monkeypatch):
    import immunesim.bench as bench

    monkeypatch.setattr(bench, "QUICK_SIZES", (16,))
    monkeypatch.setattr(bench, "MESA_SIZE", 20)
    monkeypatch.setattr(bench, "MESA_STEPS", 2)
    script = runpy.run_path(str(REPO / "benchmarks" / "run_benchmarks.py"))
    out = tmp_path / "r.json"
    res = script["main"](["--quick", "--steps", "2", "--out", str(out)])
    assert out.is_file()
    assert {r["lattice"] for r in res["results"]} == {16}
    assert res["mesa_comparison"]["lattice"] == 20
    text = script["markdown"](res)
    assert "| 16^2 |" in text and "| 20^2 |" in text and "Mesa reference" in text


def test_mesa_comparison_times_both_engines_on_the_same_cells():
    r = mesa_comparison(size=24, threads=[1], steps=4, mesa_steps=3, run_in_days=2.0, repeats=2)
    mesa, (fast,) = r["mesa"], r["fast"]
    assert r["lattice"] == 24 and r["sites"] == 576
    assert mesa["steps"] == 3 and fast["steps"] == 4 and fast["threads"] == 1
    assert mesa["repeats"] == fast["repeats"] == 2
    assert mesa["wall_seconds"] > 0 and mesa["setup_seconds"] > 0
    # both start from the fast engine's state after its run-in: the same cells, give or
    # take what a few steps change
    assert 0 < mesa["cells"] <= 576 and abs(mesa["cells"] - fast["cells"]) < 0.2 * fast["cells"]
    for e in (mesa, fast):
        assert e["cell_updates_per_second"] == pytest.approx(
            e["cells"] * e["steps"] / e["wall_seconds"], rel=0.05
        )
    assert fast["speedup_over_mesa"] == pytest.approx(
        fast["cell_updates_per_second"] / mesa["cell_updates_per_second"]
    )
    rows = comparison_rows(r)
    assert [row[2] for row in rows] == ["Mesa reference", "immunesim (numba)"]
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize(("backend", "size"), [("numba", 20), ("numba", 60), ("cuda", 20)])
def test_memory_estimate_is_the_bytes_a_simulation_allocates(backend, size):
    """The dry-run estimate (no allocation) equals the state's own byte count, on the CPU and
    on the CUDA backend (here in numba's simulator, whose arrays are counted the same way),
    spare compaction buffers included. Both keep a quarter more cell slots than cells (at
    least 1024 more, at most one per site: at 60^2 fewer slots than sites); the GPU as
    many spare ones. Both diffuse the molecular layers in place, each with its own buffer
    (the rows around each block of rows)."""
    from immunesim.bench import _scenario, memory_estimate
    from immunesim.engine import Simulation
    from immunesim.state import slots_for

    sim = Simulation(_scenario(size, 1.0), seed=1, backend=backend)
    st = sim.state
    est = memory_estimate(size, backend, slots=st.capacity)
    assert est["state_bytes"] == st.nbytes()
    assert est["sites"] == size * size
    assert st.capacity == slots_for(st.n, size) == min(size * size, st.n + 1024)
    assert (st.capacity < size * size) == (size == 60)
    sim.step()  # both diffuse in place, with a buffer of a few rows per block of rows
    assert memory_estimate(size, backend, slots=sim.state.capacity)["state_bytes"] == (
        sim.state.nbytes()
    )
    arrays = sim.state.arrays()
    assert arrays["mol"].nbytes == 4 * sim.state.mol.size and "aux.mol_next" not in arrays
    assert arrays["aux.halo"].nbytes < arrays["mol"].nbytes
    if backend == "cuda":
        assert est["state_bytes"] > memory_estimate(size, "numba")["state_bytes"]

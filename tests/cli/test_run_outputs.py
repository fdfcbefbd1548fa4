"""`immunesim run` as a user types it: outputs, interruption, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd

from tests.conftest import SCENARIOS, immunesim_cmd


def test_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            *immunesim_cmd(),
            "run",
            str(SCENARIOS / "sle_untreated.toml"),
            "--out",
            str(out),
            "--set",
            "lattice.size=32",
            "--set",
            "time.run_in_days=10",
            "--set",
            "time.follow_up_days=5",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out / "timeseries.csv")
    pq = pd.read_parquet(out / "timeseries.parquet")
    assert list(df.columns) == list(pq.columns)
    assert len(df) == 16  # day -10 .. day 5, one row a day
    assert df["day"].iloc[0] == -10 and df["day"].iloc[-1] == 5
    for col in ("b_cells", "car_t", "anti_dsdna", "antibody_tetanus", "disease_score"):
        assert col in df
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["scenario"]["lattice"]["size"] == 32  # the override is recorded
    assert manifest["steps_done"] == manifest["steps_total"] == 15 * 24
    assert "numba" in manifest["versions"]
    ends = json.loads((out / "endpoints.json").read_text())
    assert ends["baseline_day"] == -7.0
    assert "endpoints" in proc.stdout.lower()

    # the course plot of that run
    plot = subprocess.run(
        [*immunesim_cmd(), "plot", str(out), "--out", str(out / "c.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plot.returncode == 0, plot.stderr
    png = (out / "c.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (990, 990)  # 9 x 9 inches at 110 dpi


def test_plot_refuses_a_directory_that_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [*immunesim_cmd(), "plot", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr and "timeseries.csv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_leaves_a_usable_partial_run(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *immunesim_cmd(),
            "run",
            str(SCENARIOS / "sle_cd19_cart.toml"),
            "--out",
            str(out),
            "--set",
            "lattice.size=120",
            "--quiet",
            "--flush-seconds",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and the
        # child would inherit that: give it the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (out / "timeseries.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the whole run takes tens of seconds at this size
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert 0 < manifest["steps_done"] < manifest["steps_total"]
    df = pd.read_csv(out / "timeseries.csv")
    assert len(df) >= 2
    assert df["step"].iloc[-1] <= manifest["steps_done"]
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]

"""`immunesim run` as a user types it: outputs, interruption, exit codes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

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
            "lattice.zones.unit_um=320",
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
    steps = 15 * 24 / manifest["scenario"]["time"]["dt_hours"]  # 15 days of time steps
    assert manifest["steps_done"] == manifest["steps_total"] == steps
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


def test_a_saturated_layer_is_one_warning_line_and_an_event(tmp_path):
    """A run whose plasma cells secrete 2000 times the default fills their antibody layers
    past the int32 cap: the run finishes (exit 0), stderr has one ``warning:`` line naming
    the layers (no Python warning location), and events.json has the ``saturation`` event."""
    out = tmp_path / "run"
    small = ["lattice.size=24", "lattice.zones.unit_um=240", "time.run_in_days=5"]
    args = [f"--set={o}" for o in [*small, "time.follow_up_days=2"]]
    proc = subprocess.run(
        [
            *immunesim_cmd(),
            "run",
            str(SCENARIOS / "sle_cd19_cart.toml"),
            "--out",
            str(out),
            *args,
            "--set=molecules.llpc_secretion_per_day=2e5",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "reached the most a site" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: molecular layer(s) antibody_self")
    assert "simulation.py" not in proc.stderr
    events = json.loads((out / "events.json").read_text())["events"]
    saturation = [e for e in events if e["kind"] == "saturation"]
    assert len(saturation) == 1 and "antibody_self" in saturation[0]["detail"]["layers"]


def test_plot_refuses_a_directory_that_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [*immunesim_cmd(), "plot", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr and "timeseries.csv" in proc.stderr
    assert "Traceback" not in proc.stderr


#: A run of about 2,000 steps that takes a few seconds: long enough to stop in its middle.
MEDIUM = ["--set", "lattice.size=48", "--set", "lattice.zones.unit_um=480",
          "--set", "time.dt_hours=1",
          "--set", "time.run_in_days=30", "--set", "time.follow_up_days=60",
          "--set", "output.snapshot_every_hours=48",
          "--set", "output.snapshot_from_day=-20"]  # fmt: skip
OUTPUTS = ("timeseries.csv", "endpoints.json", "events.json")


def _start(out, *extra):
    return subprocess.Popen(
        [*immunesim_cmd(), "run", str(SCENARIOS / "sle_cd19_cart.toml"), "--out", str(out),
         *MEDIUM, "--quiet", "--flush-seconds", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and the
        # child would inherit that: give it the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _wait_for_step(out, step: int, proc, timeout: float = 300) -> None:
    """Wait until the run's manifest says it has done ``step`` steps."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped"
        try:
            if json.loads((out / "manifest.json").read_text())["steps_done"] >= step:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = subprocess.run(
        [*immunesim_cmd(), "run", str(SCENARIOS / "sle_cd19_cart.toml"), "--out", str(out),
         *MEDIUM, "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not (out / "checkpoint.npz").exists()  # removed when the run completes
    return out


def _resume(out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*immunesim_cmd(), "resume", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                        (signal.SIGHUP, 129)])  # fmt: skip
def test_a_stop_signal_leaves_a_usable_resumable_run(tmp_path, uninterrupted, sig, status):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_step(out, 700, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "immunesim resume" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert 0 < manifest["steps_done"] < manifest["steps_total"]
    assert manifest["checkpoint"] == "checkpoint.npz"
    df = pd.read_csv(out / "timeseries.csv")
    assert len(df) >= 2 and df["step"].iloc[-1] <= manifest["steps_done"]
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    # resumed from the step it stopped at, it ends as the run that was never stopped
    done = _resume(out)
    assert done.returncode == 0, done.stderr
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["checkpoint"] is None
    assert len(manifest["resumed_at_steps"]) == 1


def test_sigkill_then_resume_gives_the_same_bytes(tmp_path, uninterrupted):
    out = tmp_path / "run"
    rng = random.Random(os.getpid())
    proc = _start(out, "--checkpoint-every-days", "5", "--no-cache")
    # somewhere after the first checkpoint (day 5 of the run-in, step 120; the run starts
    # at step 0, not from the run-in the uninterrupted run left in the cache)
    _wait_for_step(out, rng.randrange(150, 1800), proc)
    proc.kill()
    proc.communicate(timeout=60)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"  # nobody could write otherwise...
    assert (out / "checkpoint.npz").exists()
    done = _resume(out)  # ...but its process is gone, so it reads as stale and resumes
    assert done.returncode == 0, done.stderr
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    # the lattice snapshots too: the same frames, each holding the same picture
    frames = sorted(p.name for p in (uninterrupted / "snapshots").glob("frame_*.npz"))
    assert len(frames) == 41  # days -20, -18, ..., 60
    assert sorted(p.name for p in (out / "snapshots").glob("frame_*.npz")) == frames
    for name in frames:
        with (
            np.load(out / "snapshots" / name) as a,
            np.load(uninterrupted / "snapshots" / name) as b,
        ):
            for key in ("cells", "damage", "day"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def test_resume_refuses_what_it_cannot_resume(tmp_path, uninterrupted):
    complete = _resume(uninterrupted)
    assert complete.returncode == 2 and "complete" in complete.stderr
    missing = _resume(tmp_path / "nothing")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_an_earlier_run_is_not_overwritten_unless_asked(tmp_path, uninterrupted):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "stale_snapshot.npz").write_bytes(b"old")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    args = [*immunesim_cmd(), "run", str(SCENARIOS / "sle_untreated.toml"), "--out", str(out),
            "--set", "lattice.size=16", "--set", "lattice.zones.unit_um=160",
            "--set", "time.run_in_days=2",
            "--set", "time.follow_up_days=1", "--quiet"]  # fmt: skip
    refused = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    replaced = subprocess.run([*args, "--overwrite"], capture_output=True, text=True, timeout=600)
    assert replaced.returncode == 0, replaced.stderr
    assert not (out / "stale_snapshot.npz").exists()  # no stale file survives
    assert json.loads((out / "manifest.json").read_text())["scenario_name"] == "sle_untreated"


def test_overwrite_leaves_a_directory_that_is_not_a_run_alone(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    proc = subprocess.run(
        [*immunesim_cmd(), "run", str(SCENARIOS / "sle_untreated.toml"), "--out",
         str(tmp_path), "--overwrite", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2 and "left as it is" in proc.stderr
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_sigterm_to_a_cohort_stops_its_workers_too(tmp_path):
    out = tmp_path / "cohort"
    proc = subprocess.Popen(
        [*immunesim_cmd(), "run", str(SCENARIOS / "sle_cd19_cart.toml"), "--out", str(out),
         *MEDIUM[:6], "--patients", "2", "--jobs", "2", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 300
    workers: list[int] = []
    # both workers past their warm-up (a signal during compilation stops a worker before
    # it has written anything, and a cold numba cache makes that warm-up long)
    manifests = [out / p / "manifest.json" for p in ("patient_000", "patient_001")]
    while time.time() < deadline and not all(m.exists() for m in manifests):
        time.sleep(0.2)
    children = subprocess.run(["ps", "-ww", "--ppid", str(proc.pid), "-o", "pid=,args="],
                              capture_output=True, text=True).stdout  # fmt: skip
    workers = [int(line.split()[0]) for line in children.splitlines() if "spawn_main" in line]
    assert len(workers) == 2, children
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    time.sleep(1)
    for pid in workers:  # no worker outlives its cohort
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()
    for patient in ("patient_000", "patient_001"):
        manifest = json.loads((out / patient / "manifest.json").read_text())
        assert manifest["status"] in ("interrupted", "complete"), manifest["status"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 KiB tmpfs: room for a run's first outputs, not for its checkpoint."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root: this test runs in CI, which is root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_intact_outputs(tiny_disk):
    out = tiny_disk / "run"
    proc = subprocess.run(
        [*immunesim_cmd(), "run", str(SCENARIOS / "sle_cd19_cart.toml"), "--out", str(out),
         *MEDIUM[:6], "--checkpoint-every-days", "5", "--flush-seconds", "0", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 74, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    # what was written before is whole: readable, and says the run failed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    df = pd.read_csv(out / "timeseries.csv")
    assert len(df) >= 1 and list(df.columns) == list(pd.read_parquet(out / "timeseries.parquet"))
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]

"""Bad input ends with exit status 2 and one line naming the file, the key path and what
was expected; no traceback, and nothing already written is touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import SCENARIOS
from tests.regression.test_reproducible import immunesim_cmd

CART = (SCENARIOS / "sle_cd19_cart.toml").read_text()

CASES = {
    # name: (file contents or None for a missing file, key path expected in the message,
    #        words expected in the message)
    "not_toml": ("lattice = [size = 3\n", "", "valid TOML"),
    "empty": ("   \n", "", "empty"),
    "unknown_key": ("[lattice]\nsise = 200\n", "lattice.sise", "unknown key"),
    "wrong_type": ('[lattice]\nsize = "big"\n', "lattice.size", "integer"),
    "negative_rate": ("[cells.naive_b]\nlifespan_days = -4\nmove_rate_per_day = 1\n"
                      'home = "lymphoid"\n', "cells.naive_b.lifespan_days", "greater than 0"),
    "negative_dose": (CART.replace("dose_per_kg = 1.0e6", "dose_per_kg = -1.0e6"),
                      "therapy.2.dose_per_kg", "greater than or equal to 0"),
    "too_large": ("[lattice]\nsize = 99000\n", "lattice.size", "fits in memory"),
    "missing_file": (None, "", "not found"),
    "bad_marker": (CART.replace('targets = ["CD19"]', 'targets = ["CD99"]'),
                   "therapy.2.targets.0", "CD99"),
    "bad_zone_fractions": ("[lattice.zones]\nmarrow = 0.5\nlymphoid = 0.5\ntissue = 0.5\n",
                           "lattice.zones", "add up to 1"),
}


def _write(tmp_path: Path, name: str) -> Path:
    content = CASES[name][0]
    path = tmp_path / f"{name}.toml"
    if content is not None:
        path.write_text(content)
    return path


def _check(proc: subprocess.CompletedProcess, path: Path, key: str, words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())  # the console may wrap long lines
    assert str(path) in err.replace(" ", "") or path.name in err
    if key:
        assert f": {key}:" in err
    assert words.lower() in err.lower()
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_reports_bad_input(tmp_path, name):
    path = _write(tmp_path, name)
    proc = subprocess.run([*immunesim_cmd(), "validate", str(path)], capture_output=True,
                          text=True, timeout=120)
    _check(proc, path, CASES[name][1], CASES[name][2])


@pytest.mark.parametrize("name", ["unknown_key", "negative_dose", "missing_file", "empty"])
def test_run_reports_bad_input_and_leaves_outputs_alone(tmp_path, name):
    path = _write(tmp_path, name)
    out = tmp_path / "out"
    out.mkdir()
    sentinel = out / "timeseries.csv"
    sentinel.write_text("an earlier run's data\n")
    proc = subprocess.run([*immunesim_cmd(), "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    _check(proc, path, CASES[name][1], CASES[name][2])
    assert sentinel.read_text() == "an earlier run's data\n"
    assert sorted(p.name for p in out.iterdir()) == ["timeseries.csv"]


@pytest.mark.parametrize("override,key,words", [
    ("lattice.size=abc", "lattice.size", "integer"),
    ("nonsense", "nonsense", "key.path=value"),
    ("therapy.9.day=1", "therapy.9", "index below 3"),
    ("time.dt_hours=-1", "time.dt_hours", "greater than 0"),
])
def test_bad_overrides(tmp_path, override, key, words):
    path = SCENARIOS / "sle_cd19_cart.toml"
    proc = subprocess.run([*immunesim_cmd(), "validate", str(path), "--set", override],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert key in err and words in err
    assert "Traceback" not in proc.stderr


def test_unknown_backend_is_bad_input(tmp_path):
    proc = subprocess.run([*immunesim_cmd(), "run", str(SCENARIOS / "sle_untreated.toml"),
                           "--out", str(tmp_path / "o"), "--backend", "cuda",
                           "--set", "lattice.size=16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--backend" in proc.stderr and "cuda" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_good_override_changes_the_value():
    from immunesim.scenario import load_scenario

    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml",
                      ["therapy.2.dose_per_kg=5e5", "therapy.2.targets=['CD19', 'BCMA']",
                       "lattice.size=64"])
    assert s.therapy[2].dose_per_kg == 5e5
    assert s.therapy[2].targets == ["CD19", "BCMA"]
    assert s.lattice.size == 64


def test_validate_accepts_every_shipped_scenario():
    files = sorted(SCENARIOS.glob("*.toml"))
    proc = subprocess.run([*immunesim_cmd(), "validate", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok  ") == len(files)


def test_info_lists_backend_and_threads():
    proc = subprocess.run([*immunesim_cmd(), "info"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert "numba available" in proc.stdout
    assert "numba threads" in proc.stdout

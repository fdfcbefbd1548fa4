"""``immunesim validate scenarios/*.toml`` accepts every shipped scenario; ``immunesim info``
reports the numba backend and its thread count."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"


def test_validate_accepts_every_shipped_scenario(cli):
    files = sorted(SCENARIOS.glob("*.toml"))
    assert SCENARIOS / "sle_cd19_cart.toml" in files  # found the shipped scenarios
    rel = [f.relative_to(REPO).as_posix() for f in files]  # as typed: scenarios/x.toml
    proc = cli("validate", *rel, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    oks = [line for line in proc.stdout.splitlines() if line.startswith("ok")]
    assert len(oks) == len(files), proc.stdout
    for f, r in zip(files, rel, strict=True):
        name = tomllib.loads(f.read_text())["name"]
        pattern = rf"^ok  {re.escape(r)}  \({re.escape(name)}: \d+x\d+ sites"
        assert re.search(pattern, proc.stdout, re.M), f"no ok line for {r}:\n{proc.stdout}"


def test_info_lists_numba_backend_and_threads(cli):
    proc = cli("info", env={"NUMBA_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert re.search(
        r"^\s*backend: numba available \(CPU, 1 numba threads\)$", proc.stdout, re.M
    ), proc.stdout
    # NUMBA_NUM_THREADS is honoured (the default is the number of cores).
    assert re.search(r"^\s*threads: 1 numba threads\b", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\s*numba: \d+\.\d+", proc.stdout, re.M), proc.stdout

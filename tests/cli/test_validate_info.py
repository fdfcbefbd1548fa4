"""``immunesim validate scenarios/*.toml`` accepts every shipped scenario; ``immunesim info``
reports the numba backend and its thread count; ``immunesim bench --dry-run`` the memory of
each configuration."""

from __future__ import annotations

import json
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


def test_dry_run_prints_the_memory_of_sizes_this_machine_could_not_hold(cli, tmp_path):
    """``immunesim bench --dry-run`` allocates nothing: it writes the estimate of each size
    and backend, 10^8 cells included, even where no such state fits here (and where the
    CUDA backend is not available)."""
    from immunesim.bench import memory_estimate

    out = tmp_path / "dry.json"
    proc = cli("bench", "--dry-run", "--sizes", "100,19700", "--backend", "cuda", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["dry_run"]
    assert rows == [memory_estimate(100, "cuda"), memory_estimate(19700, "cuda")]
    assert rows[1]["cells"] > 1e8
    assert "19700^2" in proc.stdout

"""Shared fixtures: small scenarios that run in seconds."""

from __future__ import annotations

import os

# The CUDA backend's tests run its kernels in numba's CUDA simulator unless told otherwise
# (``NUMBA_ENABLE_CUDASIM=0 pytest tests/backends`` on a machine with a GPU runs them there).
# numba reads this when it is first imported, so it is set before anything imports numba.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# Under pytest-xdist with several workers, each worker runs its kernels on one numba thread
# (pytest_runtest_setup below) and the programs the tests start let idle OpenMP threads sleep rather
# than spin: numba's OpenMP threads spin while they wait, and two processes of two spinning
# threads each on the 2-core machine ran a simulation 3.7 times slower than one thread each
# (38 s against 10 s for the same run, two at a time).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import tempfile  # noqa: E402

# Runs share one run-in cache per test session (all of pytest-xdist's workers: they have
# the same test-run id), away from the user's own cache; it goes at the end of the session.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
RUNIN_CACHE = os.path.join(tempfile.gettempdir(), f"immunesim-test-runin-{_RUN_ID}")
os.environ["IMMUNESIM_CACHE_DIR"] = RUNIN_CACHE

import copy  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"

#: A small valid scenario file (conditioning and CAR-T) for tests to break or extend.
SMALL_SCENARIO_TOML = """\
name = "small"

[lattice]
size = 32

[lattice.zones]
unit_um = 320

[time]
run_in_days = 5
follow_up_days = 5

[[therapy]]
type = "lymphodepletion"
days = [-5, -4, -3]

[[therapy]]
type = "car_t"
day = 0
dose_per_kg = 1.0e6
targets = ["CD19"]
"""


def immunesim_cmd() -> list[str]:
    """The installed console script, or ``python -m immunesim.cli`` when it is not on PATH."""
    exe = shutil.which("immunesim")
    return [exe] if exe else [sys.executable, "-m", "immunesim.cli"]


def small_cart(
    size: int = 40, run_in: float = 20.0, follow_up: float = 30.0, targets: list[str] | None = None
) -> dict[str, Any]:
    """A CD19 CAR-T scenario shrunk to a few seconds: conditioning on days -5..-3, infusion
    on day 0, a vaccination and an anti-CD20 course, so every phase and therapy runs (those
    after the end of a shorter follow-up are left out: a scenario may not schedule them)."""
    therapy = [
        {"type": "standard_of_care", "activation_factor": 0.7, "stop_day": -6},
        {"type": "lymphodepletion", "days": [-5, -4, -3]},
        {"type": "car_t", "day": 0, "dose_per_kg": 4e6, "targets": targets or ["CD19"]},
        {"type": "vaccination", "day": 5, "antigen": "tetanus"},
        {"type": "anti_cd20", "days": [10]},
    ]
    return {
        "name": "small_cart",
        "lattice": {"size": size, "zones": {"unit_um": size * 10.0}},
        "time": {"run_in_days": run_in, "follow_up_days": follow_up},
        "therapy": [t for t in therapy if max(t.get("days", [t.get("day", 0)])) <= follow_up],
    }


@pytest.fixture
def small_cart_scenario() -> dict[str, Any]:
    return copy.deepcopy(small_cart())


def pytest_runtest_setup(item):
    """One numba thread per test under several xdist workers (the cores are theirs to share;
    a test that needs more threads sets them itself), set before the test's fixtures run.
    Results do not depend on it: a run gives the same bits on any number of threads."""
    if WORKERS > 1:
        import numba

        numba.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


#: The longest test files (measured with --durations: seconds in one worker on the 2-core
#: machine, from a fresh numba cache), first: pytest-xdist hands out whole files
#: (--dist loadfile) in collection order (--no-loadscope-reorder; by default it would order
#: them by their number of tests), so the last files to finish are short ones.
LONGEST_FIRST = (
    "tests/reference/test_equivalence.py",  # 280
    "tests/extension/test_toy_extension.py",  # 140
    "tests/app/test_browser.py",  # 140
    "tests/cli/test_run_outputs.py",  # 130
    "tests/backends/test_cuda_parity.py",  # 120
    "tests/statistical/test_hypotheses.py",  # 100
    "tests/cli/test_sweep.py",  # 80
    "tests/statistical/test_clinical_course.py",  # 75
    "tests/unit/test_static_checks.py",  # 50
    "tests/regression/test_reproducible.py",  # 50
    "tests/statistical/test_anti_car.py",  # 50
    "tests/integration/test_runin_cache.py",  # 45
    "tests/cli/test_results.py",  # 45
    "tests/cli/test_bad_input.py",  # 45
    "tests/statistical/test_resolution.py",  # 35
    "tests/regression/test_examples.py",  # 35
    "tests/regression/test_bench.py",  # 25
)


def pytest_sessionstart(session):
    """Compile the CPU kernels once, before pytest-xdist starts its workers (its own
    ``pytest_sessionstart`` runs last): on a fresh checkout every process that runs a
    simulation before the first has written numba's cache compiles them too (55 s each on
    the 2-core machine; the workers, the reference's pool and the sweep's cluster all start
    within seconds of each other). Two processes share the work, the serial launches and
    the parallel ones (43 s); afterwards each process loads the kernels in 2 s."""
    if hasattr(session.config, "workerinput"):
        return
    code = "import sys; from immunesim.engine import warm_up; warm_up('numba', (int(sys.argv[1]),))"
    procs = [subprocess.Popen([sys.executable, "-c", code, size]) for size in ("16", "256")]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("compiling the kernels failed (see above)")


def pytest_sessionfinish(session, exitstatus):
    if not hasattr(session.config, "workerinput"):  # the controller, after every worker
        shutil.rmtree(RUNIN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))

"""The warm-up compiles what a run uses, so that a run's timings leave compilation out."""

from __future__ import annotations

import gc

from numba.core.registry import CPUDispatcher

from immunesim.engine.simulation import Simulation, warm_up
from immunesim.scenario import load_scenario
from tests.conftest import SCENARIOS


def _signatures() -> dict[int, int]:
    return {id(o): len(o.signatures) for o in gc.get_objects() if isinstance(o, CPUDispatcher)}


def test_a_run_after_its_warm_up_compiles_nothing_more():
    """A map launches serially below one chunk of cells and in parallel above it, each
    launch compiled (or loaded from numba's cache) on first use; a warm-up at another
    lattice size once left the parallel launches of the default run to compile during it."""
    s = load_scenario(
        SCENARIOS / "sle_cd19_cart.toml", ["time.run_in_days=10", "time.follow_up_days=70"]
    )
    warm_up("numba", (16, s.lattice.size))  # as immunesim.run does
    before = _signatures()
    Simulation(s, seed=3, backend="numba").run()  # conditioning, infusion, anti-CAR immunity
    after = _signatures()
    grown = [k for k, n in after.items() if n > before.get(k, 0)]
    names = [
        o.py_func.__qualname__
        for o in gc.get_objects()
        if isinstance(o, CPUDispatcher) and id(o) in grown
    ]
    # numba's own min/max overloads for tuples may compile once; none of immunesim's
    assert not [n for n in names if "ol_min" not in n and "ol_max" not in n], names

"""Host immunity against the CAR is raised against each binder (each target marker of a
CAR): it clears the cells of every product that carries a recognised binder, and spares a
product against other markers only (the anti-Jo-1 myositis case: re-infused CD19 CAR-T
failed, BCMA CAR-T then took)."""

from __future__ import annotations

import math

import numpy as np

from immunesim.engine import Simulation
from immunesim.engine.therapies import car_binders
from immunesim.model.cells import Kind, marker_mask
from immunesim.rng import ONE53
from immunesim.scenario import load_scenario
from tests.conftest import SCENARIOS

SMALL = [
    "lattice.size=16",
    "lattice.zones.unit_um=160",
    "time.run_in_days=10",
    "time.follow_up_days=1",
    "therapy.2.dose_per_kg=5e7",
]


def _car_t(sim: Simulation) -> dict[int, int]:
    """Live CAR-T cells by the markers their CAR recognises."""
    st, host = sim.state, sim.backend.to_host
    n = st.n
    kind, alive, car = host(st.kind)[:n], host(st.alive)[:n], host(st.car_mask)[:n]
    live = (alive == 1) & (kind == Kind.CAR_T)
    return {int(m): int(((car == m) & live).sum()) for m in np.unique(car[live])}


def test_a_depletion_restricted_to_a_binder_spares_the_other_products():
    sim = Simulation(load_scenario(SCENARIOS / "sle_cd19_cart.toml", SMALL), seed=3)
    cd19, bcma, both = marker_mask(["CD19"]), marker_mask(["BCMA"]), marker_mask(["CD19", "BCMA"])
    for mask in (cd19, bcma, both):
        assert sim.infuse(1, 10, mask) == 10
    assert _car_t(sim) == {cd19: 10, bcma: 10, both: 10}
    certain = np.full(3, ONE53, np.uint64)
    killed = sim.deplete(2, marker_mask(["CAR"]), certain, car_mask=cd19)
    assert killed == 20  # the CD19 product and the bispecific one carry the CD19 binder
    assert _car_t(sim) == {bcma: 10}
    # without a binder, every cell bearing the CAR
    assert sim.deplete(3, marker_mask(["CAR"]), certain) == 10
    assert _car_t(sim) == {}


def test_each_binder_dates_from_the_first_infusion_that_carries_it():
    s = load_scenario(
        {
            "time": {"run_in_days": 5, "follow_up_days": 400},
            "therapy": [
                {"type": "car_t", "day": 0, "targets": ["CD19"]},
                {"type": "car_t", "day": 300, "targets": ["BCMA"]},
                {"type": "car_t", "day": 200, "targets": ["CD19"]},
                {"type": "car_t", "day": 350, "targets": ["CD19", "BCMA"]},
            ],
        }
    )
    assert car_binders(s.therapy) == {"CD19": (0.0, 200.0), "BCMA": (300.0, 350.0)}
    assert car_binders(s.therapy[:1]) == {"CD19": (0.0, math.inf)}  # a single infusion

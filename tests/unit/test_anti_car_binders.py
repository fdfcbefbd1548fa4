"""Host immunity against the CAR is raised against each binder (each target marker of a
CAR): it clears the cells of every product that carries a recognised binder, and spares a
product against other markers only (the anti-Jo-1 myositis case: re-infused CD19 CAR-T
failed, BCMA CAR-T then took)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from immunesim.engine import Simulation
from immunesim.engine.therapies import car_binders
from immunesim.model.cells import marker_mask
from immunesim.reference import ReferenceModel
from immunesim.rng import ONE53
from immunesim.scenario import ScenarioError, load_scenario, read_toml
from tests.conftest import SCENARIOS

SMALL = [
    "lattice.size=16",
    "lattice.zones.unit_um=160",
    "time.run_in_days=10",
    "time.follow_up_days=1",
    "therapy.2.dose_per_kg=5e7",
]


def test_a_depletion_restricted_to_a_binder_spares_the_other_products():
    sim = Simulation(load_scenario(SCENARIOS / "sle_cd19_cart.toml", SMALL), seed=3)
    cd19, bcma, both = marker_mask(["CD19"]), marker_mask(["BCMA"]), marker_mask(["CD19", "BCMA"])
    for mask in (cd19, bcma, both):
        assert sim.infuse(1, 10, mask) == 10
    assert sim.count_car_t() == {cd19: 10, bcma: 10, both: 10}
    certain = np.full(3, ONE53, np.uint64)
    killed = sim.deplete(2, marker_mask(["CAR"]), certain, car_mask=cd19)
    assert killed == 20  # the CD19 product and the bispecific one carry the CD19 binder
    assert sim.count_car_t() == {bcma: 10}
    # without a binder, every cell bearing the CAR
    assert sim.deplete(3, marker_mask(["CAR"]), certain) == 10
    assert sim.count_car_t() == {}


def test_the_reference_model_counts_each_products_car_t_as_the_engine_does():
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml", SMALL)
    fast = Simulation(s, seed=3)
    cd19, bcma = marker_mask(["CD19"]), marker_mask(["BCMA"])
    fast.infuse(1, 7, cd19)
    fast.infuse(1, 4, bcma)
    ref = ReferenceModel.from_simulation(fast)
    assert fast.count_car_t() == ref.count_car_t() == {cd19: 7, bcma: 4}


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
    t = s.therapy
    assert car_binders(t) == {"CD19": (0.0, 200.0, t[0]), "BCMA": (300.0, 350.0, t[1])}
    assert car_binders(t[:1]) == {"CD19": (0.0, math.inf, t[0])}  # a single infusion


def _cars(*entries: dict) -> dict:
    return {
        "time": {"run_in_days": 5, "follow_up_days": 400},
        "therapy": [{"type": "car_t", **e} for e in entries],
    }


def test_products_with_other_binders_may_have_their_own_immunity_against_the_car():
    # a fully human BCMA binder, seldom recognised, after a CD19 CAR with a murine binder
    s = load_scenario(
        _cars(
            {"day": 0, "targets": ["CD19"]},
            {"day": 200, "targets": ["CD19"]},
            {"day": 300, "targets": ["BCMA"], "anti_car_kill_rate_per_day": 0.0},
        )
    )
    binders = car_binders(s.therapy)
    assert binders["CD19"][2].anti_car_kill_rate_per_day == 0.2
    assert binders["BCMA"][2].anti_car_kill_rate_per_day == 0.0
    # entries that share a binder, directly or through another entry, must agree
    for entries in (
        [{"day": 0, "targets": ["CD19"]}, {"day": 200, "anti_car_onset_days": 30.0}],
        [
            {"day": 0, "targets": ["CD19"]},
            {"day": 300, "targets": ["BCMA"], "anti_car_rise_days": 10.0},
            {"day": 350, "targets": ["CD19", "BCMA"]},
        ],
    ):
        with pytest.raises(ScenarioError, match=r"therapy\.[12]\.anti_car_.*share a target"):
            load_scenario(_cars(*entries))
    # the cells' own kinetics stay one population's
    with pytest.raises(ScenarioError, match=r"therapy\.1\.memory_fraction"):
        load_scenario(_cars({"day": 0}, {"day": 300, "targets": ["BCMA"], "memory_fraction": 0.1}))


def test_an_override_of_immunity_sets_the_entries_that_share_the_binder():
    data = _cars(
        {"day": 0, "targets": ["CD19"]},
        {"day": 200, "targets": ["CD19"]},
        {"day": 300, "targets": ["BCMA"], "anti_car_kill_rate_per_day": 0.0},
    )
    s = load_scenario(
        data, ["therapy.0.anti_car_onset_days=90", "therapy.0.division_rate_per_day=2.0"]
    )
    onset = [t.anti_car_onset_days for t in s.therapy]
    assert onset == [90.0, 90.0, 60.0]  # the CD19 entries; the BCMA product keeps its own
    assert [t.division_rate_per_day for t in s.therapy] == [2.0, 2.0, 2.0]  # one population
    s = load_scenario(data, ["therapy.2.anti_car_kill_rate_per_day=0.05"])
    assert [t.anti_car_kill_rate_per_day for t in s.therapy] == [0.2, 0.2, 0.05]
    # an entry without targets carries the default binder (CD19)
    s = load_scenario(
        _cars({"day": 0}, {"day": 200, "targets": ["CD19"]}, {"day": 300, "targets": ["BCMA"]}),
        ["therapy.1.anti_car_rise_days=5"],
    )
    assert [t.anti_car_rise_days for t in s.therapy] == [5.0, 5.0, 30.0]


def test_a_product_whose_binder_is_not_recognised_outlives_one_whose_binder_is():
    # CD19 and BCMA products infused together; the immunity against the CD19 binder rises
    # within a day to a rate that clears its cells in hours, the BCMA binder raises none
    data = read_toml(SCENARIOS / "sle_cd19_cart.toml")
    data.pop("variability", None)
    cd19 = next(t for t in data["therapy"] if t["type"] == "car_t")
    cd19.update(anti_car_onset_days=1.0, anti_car_rise_days=0.1, anti_car_kill_rate_per_day=50.0)
    bcma = {**cd19, "targets": ["BCMA"], "anti_car_kill_rate_per_day": 0.0, "dose_per_kg": 5e7}
    data["therapy"].append(bcma)
    small = [*SMALL[:3], "time.follow_up_days=4", "therapy.2.dose_per_kg=5e7"]
    sim = Simulation(load_scenario(data, small), seed=5)
    cd19_mask, bcma_mask = marker_mask(["CD19"]), marker_mask(["BCMA"])
    while sim.day < 1.0:
        sim.step()
    at_onset = sim.count_car_t()
    assert at_onset.get(cd19_mask, 0) > 0 and at_onset.get(bcma_mask, 0) > 0
    while not sim.finished:
        sim.step()
    end = sim.count_car_t()
    assert end.get(cd19_mask, 0) == 0  # cleared: each cell dies at 50 a day for 3 days
    assert end.get(bcma_mask, 0) > 0

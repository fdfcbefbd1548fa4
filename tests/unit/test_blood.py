"""Blood: the cells crossing it (quasi-steady state with the lattice), the blood counts a
clinic reads and the kill in transit of a drug that acts in blood."""

from __future__ import annotations

import numpy as np
import pytest

from immunesim.model import blood
from immunesim.model.cells import N_KINDS, Kind, marker_mask
from immunesim.model.params import ZONE_CODE
from immunesim.observe import endpoints
from immunesim.scenario import ScenarioError, load_scenario
from tests.unit.test_endpoints import DAYS, _series

RITUXIMAB = {"therapy": [{"type": "anti_cd20", "days": [0, 14]}]}


def test_the_old_blood_fraction_key_is_refused_with_what_replaced_it():
    with pytest.raises(ScenarioError) as err:
        load_scenario({"scale": {"blood_fraction": 0.02}})
    assert "scale" in str(err.value) and "blood_egress_per_day" in str(err.value)


def test_cells_in_blood_follow_where_they_are_and_the_drug():
    """A naive B cell outside its home zone crosses the blood 100 times as often as one in a
    lymph-node follicle; long-lived plasma cells never do; anti-CD20 empties the blood of
    CD20+ cells only, by the factor 1 + kappa * transit."""
    s = load_scenario(RITUXIMAB)
    counts = np.zeros((N_KINDS, 3))
    counts[Kind.NAIVE_B, ZONE_CODE["marrow"]] = 100
    counts[Kind.NAIVE_B, ZONE_CODE["lymphoid"]] = 100
    counts[Kind.PLASMABLAST, ZONE_CODE["lymphoid"]] = 100
    counts[Kind.LLPC, ZONE_CODE["marrow"]] = 100
    tau = s.blood.transit_hours / 24
    before = blood.blood_cells(counts, s, blood.kill_rates(s, -1.0, {}))
    assert before[Kind.NAIVE_B] == pytest.approx(100 * (2.0 + 0.02) * tau)
    assert before[Kind.LLPC] == 0
    kappa = blood.kill_rates(s, 0.0, {})  # 1 g of drug on its first day
    assert kappa[Kind.NAIVE_B] == pytest.approx(1000.0)
    assert kappa[Kind.PLASMABLAST] == 0  # CD20-negative
    during = blood.blood_cells(counts, s, kappa)
    assert during[Kind.NAIVE_B] == pytest.approx(before[Kind.NAIVE_B] / (1 + 1000 * tau))
    assert during[Kind.PLASMABLAST] == before[Kind.PLASMABLAST]


def test_each_car_product_in_blood_kills_only_the_cells_bearing_its_own_targets():
    """BCMA CAR-T infused after CD19 CAR-T: each product's cells in blood kill the cells
    bearing one of its own targets, so once the CD19 product is gone, B cells (CD19+, and
    BCMA-negative outside germinal centres) cross the blood unharmed."""
    s = load_scenario(
        {
            "therapy": [
                {"type": "car_t", "day": 0, "targets": ["CD19"]},
                {"type": "car_t", "day": 30, "targets": ["BCMA"]},
            ]
        }
    )
    cd19, bcma = marker_mask(["CD19"]), marker_mask(["BCMA"])
    rate = s.therapy[0].blood_kill_per_car_t_per_ul

    def unread() -> dict[int, int]:
        raise AssertionError("the cells were read although one receptor was given")

    # one product so far: the lattice's count of CAR-T, without reading the cells
    assert blood.car_t_in_blood(s, -1.0, 0, unread) == {}
    assert blood.car_t_in_blood(s, 10.0, 50, unread) == {cd19: blood.car_t_per_ul(s, 50)}
    # the CD19 product's cells are gone, the BCMA product's remain
    ul = blood.car_t_in_blood(s, 40.0, 50, lambda: {bcma: 50})
    assert ul == {cd19: 0.0, bcma: blood.car_t_per_ul(s, 50)}
    kappa = blood.kill_rates(s, 40.0, ul)
    assert kappa[Kind.NAIVE_B] == kappa[Kind.MEMORY_B] == kappa[Kind.T_HELPER] == 0
    for k in (Kind.ACTIVATED_B, Kind.PLASMABLAST, Kind.LLPC):
        assert kappa[k] == pytest.approx(rate * ul[bcma])
    # both products' cells: a cell bearing both targets meets both
    ul = blood.car_t_in_blood(s, 40.0, 50, lambda: {cd19: 20, bcma: 30})
    kappa = blood.kill_rates(s, 40.0, ul)
    assert kappa[Kind.NAIVE_B] == pytest.approx(rate * ul[cd19])
    assert kappa[Kind.PLASMABLAST] == pytest.approx(rate * (ul[cd19] + ul[bcma]))
    assert kappa[Kind.LLPC] == pytest.approx(rate * ul[bcma])


def test_b_cell_depletion_and_return_are_read_in_blood():
    """The B cells of the whole lattice stay up (the lymph nodes keep theirs) while the blood
    is emptied from day 5 to day 120: depletion and return are the blood's days."""
    per_ul = np.where((DAYS >= 5) & (DAYS < 120), 0.5, 100.0)
    ln = np.where(DAYS >= 5, 700.0, 800.0)
    e = endpoints(_series(DAYS, b_cells_per_ul=per_ul, lymph_node_b_cells=ln), load_scenario({}))
    assert e["b_cell_depletion_day"] == 5.0
    assert e["b_cell_reconstitution_day"] == 120.0
    assert e["blood_b_cells_lowest_relative"] == pytest.approx(0.005)
    assert e["lymph_node_b_cells_lowest_relative"] == pytest.approx(700 / 800)

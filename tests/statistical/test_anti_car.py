"""Host immunity against the CAR: it clears CAR-T cells, and cells infused again once it has
risen fail to take (the anti-Jo-1 myositis case: re-infused CAR-T did not expand and T cells
against the CAR were found)."""

from __future__ import annotations

import pytest

import immunesim
from immunesim.scenario import read_toml
from tests.conftest import SCENARIOS

pytestmark = pytest.mark.slow

#: One anatomical unit at a 2-hour step, a short run-in: the course after day 0 is what counts.
BASE = ["lattice.size=100", "time.dt_hours=2", "time.run_in_days=15", "time.follow_up_days=92"]
REINFUSION_DAY = 70.0


def _run(rate: float, seed: int):
    data = read_toml(SCENARIOS / "sle_cd19_cart.toml")
    data.pop("variability", None)
    first = next(t for t in data["therapy"] if t["type"] == "car_t")
    first.update(anti_car_kill_rate_per_day=rate, anti_car_onset_days=14, anti_car_rise_days=7)
    data["therapy"].append({**first, "day": REINFUSION_DAY, "label": "re-infusion"})
    s = immunesim.load_scenario(data, BASE)
    r = immunesim.run(s, seed=seed)
    dose = round(s.car_t_agents(s.therapy[-1]))
    return r.timeseries.set_index("day"), dose


def test_reinfused_car_t_fail_once_anti_car_immunity_has_risen():
    """At 2 per day (full from about day 35) the immunity kills each re-infused cell at 2 a
    day: an unstimulated cell has e^-8 of a chance to live four days, and even a cell that
    finds B cells and divides (at most 1.6 a day, while stimulated) loses ground. Without
    it, most survive four days (effector lifespan 6.2 days) and the first infusion's cells
    are still there. Seeds 1 and 2 (one runs here): 0 and 2 of 18 re-infused cells four days
    on, none ten days on (before the last model change seed 1 kept 3: a few that find
    returning B cells divide); without the immunity, 168 or more CAR-T cells throughout.
    The bands: a quarter and a tenth of the dose with the immunity, half of it without."""
    strong, dose = _run(2.0, seed=1)
    none, _ = _run(0.0, seed=1)
    assert dose >= 10
    four_days_on = REINFUSION_DAY + 4
    assert strong.loc[four_days_on, "car_t"] < 0.25 * dose
    assert strong.loc[REINFUSION_DAY + 10, "car_t"] < 0.1 * dose
    assert none.loc[four_days_on, "car_t"] > 0.5 * dose
    # the immunity cleared the first infusion's cells too, and the B cells that came back
    # are not depleted again by the re-infusion
    assert strong.loc[REINFUSION_DAY - 1, "car_t"] == 0
    b_before = strong.loc[REINFUSION_DAY - 1, "b_cells"]
    assert b_before > 0 and strong.loc[REINFUSION_DAY + 20, "b_cells"] >= 0.5 * b_before


def test_the_recalled_immunity_stops_a_cd19_re_infusion_and_spares_a_bcma_car():
    """The anti-Jo-1 myositis case (scenarios/myositis_reinfusion.toml, no patient
    variability, to day 360; conditioning before the re-infusion, as reported): CD19 CAR-T
    infused again on day 300 meet the immunity against their binder recalled at 10 times
    its primary rate and do not expand (seeds 1-3, 2026-12-03, with host immunity against
    the CAR following the CD4 pool: 0.78-0.89-fold in four weeks; without the recall more
    than 10-fold). BCMA CAR-T on day 330 carry another binder and expand on the
    germinal-centre B cells, plasmablasts and plasma cells. In seeds 2 and 3 (36- and
    48-fold) the autoreactive long-lived plasma cells (BCMA+, CD19-) are gone by day 345
    and the autoreactive germinal-centre B cells at 9-20% of their day-329 number on day
    360; in seed 1 the BCMA CAR-T expand only 10-fold and leave 33 of 34 plasma cells, as
    patient 003 of the six-patient study (13-fold, no lasting remission). So the test asks
    it of 2 of the 3 seeds, with the bands: above 5-fold, and half of the day-329 count for
    the germinal-centre B cells and the plasma cells. The re-infusion must stay below
    5-fold and the naive B cells crossing the blood above half their day-329 number on day
    345 (the BCMA product kills only what bears BCMA) in every seed."""
    path = SCENARIOS / "myositis_reinfusion.toml"
    base = ["time.follow_up_days=360"]
    rescued = 0
    for seed in (1, 2, 3):
        run = immunesim.run(path, seed=seed, overrides=base)
        ends, ts = run.endpoints, run.timeseries.set_index("day")
        assert ends["car_t_day300_fold_expansion"] < 5.0
        assert ts.loc[345.0, "naive_b_per_ul"] > 0.5 * ts.loc[329.0, "naive_b_per_ul"]
        rescued += bool(
            ends["car_t_day330_fold_expansion"] > 5.0
            and ts.loc[360.0, "activated_b_self"] < 0.5 * ts.loc[329.0, "activated_b_self"]
            and ts.loc[360.0, "llpc_self"] < 0.5 * ts.loc[329.0, "llpc_self"]
        )
    assert rescued >= 2
    none = immunesim.run(path, seed=1, overrides=[*base, "therapy.2.anti_car_recall_factor=1"])
    assert none.endpoints["car_t_day300_fold_expansion"] > 10.0

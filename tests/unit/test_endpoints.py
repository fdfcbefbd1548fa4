"""Endpoints computed from hand-made time series: what each one measures, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from immunesim.observe import endpoints
from immunesim.scenario import load_scenario


def _series(days, **cols) -> pd.DataFrame:
    n = len(days)
    base = {
        "day": np.asarray(days, float),
        "b_cells": np.full(n, 1000.0),
        "b_cells_per_ul": np.full(n, 100.0),
        "naive_fraction": np.full(n, 0.8),
        "car_t": np.zeros(n),
        "car_t_per_ul": np.zeros(n),
        "anti_dsdna": np.full(n, 10.0),
        "antibody_tetanus": np.full(n, 5.0),
        "antibody_measles": np.full(n, 5.0),
        "cytokine": np.full(n, 1.0),
    }
    base.update({k: np.asarray(v, float) for k, v in cols.items()})
    return pd.DataFrame(base)


DAYS = np.arange(-10, 400, 1.0)


def test_car_t_detection_uses_the_blood_detection_limit():
    s = load_scenario({"endpoints": {"car_t_detection_per_ul": 2.0}})
    per_ul = np.where(DAYS < 0, 0.0, np.maximum(0.0, 50.0 - 0.5 * DAYS))  # 2/uL on day 96
    e = endpoints(_series(DAYS, car_t=per_ul * 100, car_t_per_ul=per_ul), s, infused_car_t=50)
    assert e["car_t_last_detected_day"] == 96.0
    assert e["car_t_detected_at_end"] is False
    # a few agents left below the limit still count as persisting, not as detected
    tail = np.where(DAYS > 300, 0.5, per_ul)
    e = endpoints(_series(DAYS, car_t=tail * 100, car_t_per_ul=tail), s, infused_car_t=50)
    assert e["car_t_persisting_at_end"] is True and e["car_t_detected_at_end"] is False


@pytest.mark.parametrize("baseline", [0.1, 1.0, 20.0])
def test_crs_grade_by_cytokine_is_absolute_whatever_the_disease_cytokine(baseline):
    """The same rise over baseline gets the same grade for a mild and a severe disease (the
    grade of a relative scale fell as the disease's own cytokine rose)."""
    s = load_scenario({"endpoints": {"crs_grade_by": "cytokine"}})
    g1, g2, _ = s.endpoints.crs_grade_cytokine
    for rise, grade in ((0.5 * g1, 0), (0.5 * (g1 + g2), 1), (g2 * 1.01, 2)):
        burst = np.where((DAYS >= 5) & (DAYS <= 9), baseline + rise, baseline)
        e = endpoints(_series(DAYS, cytokine=burst), s)
        assert e["crs_proxy_cytokine_rise"] == pytest.approx(rise)
        assert e["crs_proxy_grade"] == grade


def test_crs_grade_follows_the_car_t_peak_in_blood_over_the_first_four_weeks():
    """By default the CAR-T peak per microlitre of blood on days 0-28 grades the CRS proxy;
    a larger peak after day 28 (a later infusion) does not count, nor does the cytokine."""
    s = load_scenario({})
    assert s.endpoints.crs_grade_by == "car_t"
    g1, g2, g3 = s.endpoints.crs_grade_car_t_per_ul
    for peak, grade in ((0.5 * g1, 0), (0.5 * (g1 + g2), 1), (g2, 2), (0.5 * (g2 + g3), 2)):
        per_ul = np.where((DAYS >= 6) & (DAYS <= 10), peak, np.where(DAYS >= 0, 1.0, 0.0))
        per_ul = np.where((DAYS >= 40) & (DAYS <= 45), 10 * g3, per_ul)  # after the window
        cyto = np.where(
            (DAYS >= 5) & (DAYS <= 9), 1.0 + 10 * s.endpoints.crs_grade_cytokine[2], 1.0
        )
        e = endpoints(_series(DAYS, car_t_per_ul=per_ul, car_t=per_ul, cytokine=cyto), s, 1)
        assert e["crs_proxy_car_t_peak_per_ul"] == peak
        assert e["crs_proxy_grade"] == grade


def test_crs_grades_must_ascend():
    from immunesim.scenario import ScenarioError

    for key in ("crs_grade_cytokine", "crs_grade_car_t_per_ul"):
        with pytest.raises(ScenarioError) as info:
            load_scenario({"endpoints": {key: [1.0, 0.5, 3.0]}})
        assert info.value.key == f"endpoints.{key}"


def test_every_autoantibody_is_judged_against_its_own_baseline():
    """anti-dsDNA falls to 5% and anti-Sm to 40% of baseline: one of the two seronegative."""
    s = load_scenario({"specificities": {"autoantibodies": ["sm"]}})
    ds = np.where(DAYS < 0, 10.0, 0.5)
    sm = np.where(DAYS < 0, 30.0, np.where(DAYS < 200, 12.0, 3.0))
    e = endpoints(_series(DAYS, anti_dsdna=ds, anti_sm=sm), s)
    assert e["anti_dsdna_month12_relative"] == pytest.approx(0.05)
    assert e["anti_sm_month3_relative"] == pytest.approx(0.4)
    assert e["anti_sm_seronegative_month3"] is False
    assert e["anti_sm_month12_relative"] == pytest.approx(0.1)
    assert e["anti_sm_seronegative_month12"] is True
    assert e["autoantibodies_seronegative_month12_fraction"] == 1.0
    e = endpoints(_series(DAYS, anti_dsdna=ds, anti_sm=np.where(DAYS < 0, 30.0, 12.0)), s)
    assert e["autoantibodies_seronegative_month12_fraction"] == 0.5


def test_a_response_is_a_fall_of_response_points_and_is_lost_in_a_flare():
    """Score 13 at baseline, 8 from day 30 (a response of 5 points, not a remission), back
    to 11 from day 200 (within 4 points of baseline: the response is lost)."""
    s = load_scenario({})
    score = np.where(DAYS < 30, 13.0, np.where(DAYS < 200, 8.0, 11.0))
    e = endpoints(_series(DAYS, disease_score=score), s)
    assert e["response_day"] == 30.0 and e["response_lost_day"] == 200.0
    assert e["remission_day"] is None
    e = endpoints(_series(DAYS, disease_score=np.where(DAYS < 30, 13.0, 9.5)), s)
    assert e["response_day"] is None and e["response_lost_day"] is None
    # a flare of 3 days (days 100-102) is not a lost response; one that lasts a week is
    blip = np.where((DAYS >= 100) & (DAYS <= 102), 11.0, score)
    e = endpoints(_series(DAYS, disease_score=blip), s)
    assert e["response_day"] == 30.0 and e["response_lost_day"] == 200.0
    s0 = load_scenario({"endpoints": {"relapse_min_days": 0}})
    assert endpoints(_series(DAYS, disease_score=blip), s0)["response_lost_day"] == 100.0


def test_total_igg_is_judged_against_its_baseline_when_it_is_recorded():
    s = load_scenario({})
    igg = np.where(DAYS < 0, 200.0, np.where(DAYS < 200, 150.0, 180.0))
    e = endpoints(_series(DAYS, total_igg=igg), s)
    assert e["total_igg_month3_relative"] == pytest.approx(0.75)
    assert e["total_igg_month12_relative"] == pytest.approx(0.9)
    assert "total_igg_month3_relative" not in endpoints(_series(DAYS), s)  # older outputs


def test_a_vaccination_is_judged_by_the_fold_rise_of_its_titre_over_eight_weeks():
    s = load_scenario(
        {
            "time": {"follow_up_days": 400},
            "therapy": [{"type": "vaccination", "day": 270, "antigen": "tetanus"}],
        }
    )
    titre = np.where(DAYS <= 270, 4.0, 4.0 + 8.0 * np.exp(-(((DAYS - 290) / 10) ** 2)))
    titre = np.where(DAYS > 330, 40.0, titre)  # after the 8 weeks: not counted
    e = endpoints(_series(DAYS, antibody_tetanus=titre), s)
    assert e["vaccine_tetanus_day270_fold_rise"] == pytest.approx(3.0)
    short = _series(DAYS[DAYS < 300], antibody_tetanus=titre[DAYS < 300])
    assert endpoints(short, s)["vaccine_tetanus_day270_fold_rise"] is None  # ended too soon


def test_a_later_car_t_infusion_is_judged_by_the_expansion_of_its_cells():
    """Two products after the first: 10 cells left on day 299, a re-infusion on day 300 of
    ``n`` agents that peaks at 5 (n + 10) within four weeks, and another on day 340 whose cells
    only dwindle (fold expansion 1: the count just after the infusion)."""
    s = load_scenario(
        {
            "time": {"follow_up_days": 400},
            "therapy": [
                {"type": "car_t", "day": 0},
                {"type": "car_t", "day": 300},
                {"type": "car_t", "day": 340, "targets": ["BCMA"]},
            ],
        }
    )
    n = round(s.car_t_agents(s.therapy[1]))
    car = np.where(DAYS < 300, 10.0, 0.0)
    car = np.where(
        (DAYS >= 300) & (DAYS < 340), 5.0 * (n + 10) * np.exp(-(((DAYS - 312) / 4) ** 2)), car
    )
    car = np.where(DAYS >= 340, (n + 5.0) * np.exp(-(DAYS - 340) / 5.0), car)
    car[DAYS == 299] = 10.0
    car[DAYS == 339] = 5.0
    e = endpoints(_series(DAYS, car_t=car), s, infused_car_t=50)
    assert e["car_t_day300_fold_expansion"] == pytest.approx(5.0)
    assert e["car_t_day340_fold_expansion"] == pytest.approx(1.0)
    assert "car_t_day0_fold_expansion" not in e  # the first infusion: car_t_fold_expansion
    # ... whose peak is its own, before the re-infusion (here 10 cells throughout)
    assert e["car_t_peak_day"] < 300 and e["car_t_fold_expansion"] == pytest.approx(10 / n)
    short = _series(DAYS[DAYS < 360], car_t=car[DAYS < 360])
    assert endpoints(short, s, infused_car_t=50)["car_t_day340_fold_expansion"] is None


def _score(stretches) -> np.ndarray:
    """A disease score of 12 before treatment, 1 from day 40 (remission), and 6 on the days
    of each ``(first, last)`` stretch."""
    score = np.where(DAYS < 40, 12.0, 1.0)
    for first, last in stretches:
        score[(DAYS >= first) & (DAYS <= last)] = 6.0
    return score


@pytest.mark.parametrize(
    ("stretches", "min_days", "relapse"),
    [
        # blips of 2 and 6 days above the threshold, then 21 days: the 21 days relapse
        ([(150, 151), (200, 205), (300, 320)], 7, 300.0),
        ([(150, 151), (200, 205), (300, 320)], 3, 200.0),
        ([(150, 151), (200, 205), (300, 320)], 0, 150.0),
        # exactly 7 days above (days 200-206) is one
        ([(200, 206)], 7, 200.0),
        # a stretch cut by the end of the run counts only once it lasted long enough
        ([(150, 151), (394, 399)], 7, None),
        ([(150, 151), (390, 399)], 7, 390.0),
    ],
)
def test_a_relapse_is_the_first_stretch_above_remission_that_lasts(stretches, min_days, relapse):
    s = load_scenario({"endpoints": {"relapse_min_days": min_days}})
    e = endpoints(_series(DAYS, disease_score=_score(stretches)), s)
    assert e["remission_day"] == 40.0
    assert e["relapse_day"] == relapse
    assert e["remission_durable"] is (relapse is None)
    last = 399.0 if relapse is None else relapse
    assert e["remission_duration_days"] == last - 40.0


def test_cd4_nadir_and_recovery_are_read_after_the_baseline_day():
    s = load_scenario({"endpoints": {"cd4_recovered_per_ul": 200.0}})
    # conditioning on day -5 (after the baseline day -7): 800 -> 100, then +2/uL a day
    cd4 = np.where(DAYS < -5, 800.0, 100.0 + 2.0 * np.maximum(0.0, DAYS + 5))
    e = endpoints(_series(DAYS, cd4_per_ul=cd4), s)
    assert e["cd4_lowest_per_ul"] == 100.0
    assert e["cd4_recovery_day"] == 45.0  # 100 + 2 * 50 = 200 on day 45
    # a count that never falls below the threshold has no recovery day
    e = endpoints(_series(DAYS, cd4_per_ul=np.full(DAYS.size, 500.0)), s)
    assert e["cd4_lowest_per_ul"] == 500.0 and e["cd4_recovery_day"] is None

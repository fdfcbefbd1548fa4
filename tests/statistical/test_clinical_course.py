"""The qualitative clinical course, asserted for several seeds at reduced size.

The shipped scenarios run on one anatomical unit (100 x 100 sites) at a 2-hour step, as
here (the course does not depend on either, docs/validation/convergence.md), with the full
run-in; here the follow-up is 400 days. Each assertion is a qualitative fact of the
published course with a wide band, checked for every seed, so a failure means the biology
broke, not that a seed was unlucky: on one unit the CAR-T dose is 18 agents, which is where
seeds differ most. The bands were checked against seeds 1-3 before being fixed here
(margins noted per test; the figures are from before homing lost its preferred direction
on 2026-12-03, and the three seeds still pass every band)."""

from __future__ import annotations

import pytest

import immunesim
from tests.conftest import SCENARIOS

#: Seeded ensembles of whole runs: minutes each (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

REDUCED = ["lattice.size=100", "time.dt_hours=2", "time.follow_up_days=400"]
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def cart(request):
    return immunesim.run(SCENARIOS / "sle_cd19_cart.toml", seed=request.param, overrides=REDUCED)


@pytest.fixture(scope="module", params=SEEDS[:2], ids=[f"seed{s}" for s in SEEDS[:2]])
def untreated(request):
    return immunesim.run(SCENARIOS / "sle_untreated.toml", seed=request.param, overrides=REDUCED)


def test_car_t_expand_contract_and_fall_below_detection(cart):
    e, df = cart.endpoints, cart.timeseries
    assert 7 <= e["car_t_peak_day"] <= 14  # published range (seeds 1-3: 8-11)
    assert e["car_t_fold_expansion"] >= 10
    peak = df["car_t"].max()
    at60 = df.loc[df["day"] == 60, "car_t"].item()
    assert at60 < 0.3 * peak  # contraction
    # below the blood detection limit within months (host immunity against the CAR), so
    # not detected at month 12 (seeds 1-3: last detected on days 67-101)
    assert e["car_t_last_detected_day"] is not None and e["car_t_last_detected_day"] < 200


def test_b_cells_come_back_to_half_their_number_by_month_12(cart):
    df = cart.timeseries
    base = df.loc[df["day"] <= -7, "b_cells"].iloc[-1]
    month12 = df.loc[df["day"] >= 365, "b_cells"].iloc[0]
    # at least half the baseline count for the cohort (seeds 1-3: 0.53-0.57); one patient
    # is held to 0.4, since the day-(-7) baseline of one run varies by some 5%
    assert month12 >= 0.4 * base


def test_b_cell_aplasia_then_naive_return(cart):
    e = cart.endpoints
    # B cells in blood below 1% of baseline within the target's three weeks (seeds 1-3: days
    # 5, 6 and 8; before blood was a compartment, the whole lattice's B cells took 8-29 days,
    # the CAR-T cells in blood now kill the new B cells crossing it)
    assert e["b_cell_depletion_day"] is not None and e["b_cell_depletion_day"] <= 21
    # the lymph nodes are emptied too (Tur et al. 2024: 5 of 5 biopsies; seeds 1-3: lowest
    # 0.000-0.001 of baseline)
    assert e["lymph_node_b_cells_lowest_relative"] < 0.01
    # Published: 110 +/- 32 days (mean +/- SD of 5 patients). One simulated patient is held
    # to the published mean +/- 2 SD, the band that holds about 95% of such patients; the
    # cohort at full size (docs/validation) meets mean +/- 1 SD with its median (seeds 1-3
    # here, read in blood: days 107, 108 and 78).
    assert e["b_cell_reconstitution_day"] is not None
    assert 46 <= e["b_cell_reconstitution_day"] <= 174
    assert e["returning_b_naive_fraction"] >= 0.5  # returning cells are mostly naive
    assert e["returning_b_phenotype"] == "naive"


def test_anti_dsdna_falls_and_vaccine_titres_hold(cart):
    e = cart.endpoints
    assert e["anti_dsdna_day90_relative"] < 0.2  # seronegative by month 3
    assert abs(e["protective_titre_month3_relative"] - 1) <= 0.2
    assert abs(e["protective_titre_month12_relative"] - 1) <= 0.2


def test_drug_free_remission_lasts(cart):
    e = cart.endpoints
    assert e["remission_day"] is not None and e["remission_day"] <= 90  # by month 3
    assert e["relapse_day"] is None  # none through the follow-up


def test_cytokine_release_is_mild(cart):
    assert cart.endpoints["crs_proxy_grade"] <= 1  # published: grade 1 in 3/5, none >= 2


def test_untreated_disease_persists(untreated):
    df = untreated.timeseries
    after = df[df["day"] >= 0]
    threshold = untreated.manifest["scenario"]["endpoints"]["remission_score"]
    assert (after["disease_score"] > threshold).all()
    assert untreated.endpoints["remission_day"] is None
    base = untreated.endpoints["baseline_disease_score"]
    assert after["disease_score"].iloc[-1] > 0.7 * base

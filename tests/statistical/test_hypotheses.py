"""The counterfactual scenarios differ from the reset as the literature reports.

Reduced size as in test_clinical_course (one anatomical unit at a 2-hour step, full
run-in). Seeds 1-3 were checked before fixing the bands below (all pass, with margins noted
per test); CI runs two.
"""

from __future__ import annotations

import pytest

import immunesim
from tests.conftest import SCENARIOS

#: Seeded ensembles of whole runs: minutes each (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

SEEDS = (1, 2)


def _run(name: str, seed: int, follow_up: int):
    return immunesim.run(
        SCENARIOS / f"{name}.toml",
        seed=seed,
        overrides=["lattice.size=100", "time.dt_hours=2", f"time.follow_up_days={follow_up}"],
    )


def _relative(res, col: str):
    df = res.timeseries
    base = df[df["day"] <= -7].iloc[-1][col]
    after = df[df["day"] >= 0]
    return after[col] / base, after


@pytest.mark.parametrize("seed", SEEDS)
def test_rituximab_lowers_anti_dsdna_only_partly_and_the_disease_returns(seed):
    res = _run("sle_rituximab", seed, 300)
    rel, after = _relative(res, "anti_dsdna")
    # seeds 1-3: lowest anti-dsDNA 0.41-0.46 of baseline (CAR-T: below 0.05)
    assert 0.2 < rel.min() < 0.8
    assert rel.iloc[-1] > 0.8  # back once the B cells are
    assert res.endpoints["remission_day"] is None  # seeds 1-3: lowest score 10.7-11.3
    assert after["disease_score"].iloc[-1] > 0.8 * res.endpoints["baseline_disease_score"]


@pytest.mark.parametrize("seed", SEEDS)
def test_bcma_cd19_car_t_loses_vaccine_titres_but_still_resets(seed):
    res = _run("sle_bcma_cd19_cart", seed, 400)
    e = res.endpoints
    assert e["protective_titre_month12_relative"] < 0.5  # seeds 1-3: 0.0
    assert res.timeseries["llpc"].iloc[-1] < 0.1 * res.timeseries["llpc"].iloc[0]
    assert e["remission_day"] is not None and e["relapse_day"] is None


@pytest.mark.parametrize("seed", SEEDS)
def test_failed_reset_relapses_after_b_cells_return(seed):
    res = _run("sle_failed_reset", seed, 540)
    e = res.endpoints
    assert e["remission_day"] is not None  # the reset first works ...
    assert e["relapse_day"] is not None  # ... then fails
    assert e["relapse_day"] > e["b_cell_reconstitution_day"]  # seeds 1-3: 56-294 days later
    assert e["final_disease_score"] > e["baseline_disease_score"] * 0.7

"""The counterfactual scenarios differ from the reset as the literature reports.

Reduced size as in test_clinical_course (one anatomical unit at a 2-hour step, full
run-in). Seeds 1-3 were checked before fixing the bands below (all pass, with margins noted
per test); CI runs two. After homing lost its preferred direction (2026-12-03) every test
here passed again for seeds 1-3, and again after competition for marrow niches was turned
on (the same day); the figures quoted per seed were measured before those changes unless a
docstring says otherwise.
"""

from __future__ import annotations

import tomllib

import pytest

import immunesim
from tests.conftest import SCENARIOS

#: Seeded ensembles of whole runs: minutes each (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

SEEDS = (1, 2)


def _run(name: str, seed: int, follow_up: int, extra: list[str] | None = None):
    return immunesim.run(
        SCENARIOS / f"{name}.toml",
        seed=seed,
        overrides=[
            "lattice.size=100",
            "time.dt_hours=2",
            f"time.follow_up_days={follow_up}",
            *(extra or []),
        ],
    )


def _relative(res, col: str):
    df = res.timeseries
    base = df[df["day"] <= -7].iloc[-1][col]
    after = df[df["day"] >= 0]
    return after[col] / base, after


@pytest.mark.parametrize("seed", SEEDS)
def test_rituximab_empties_the_blood_but_not_the_lymph_nodes(seed):
    """At the scenario's median follicular depth (0.035). Rituximab kills CD20+ cells as
    they cross the blood, so the new B cells leaving the marrow die there and the blood is
    emptied of them, while the B cells resident in lymph-node follicles are depleted only
    in part (Kamburova et al. 2013; Tur et al. 2024: lymph nodes depleted in 1 of 12
    patients after protein-based depleters, against 12 of 12 after CD19 CAR-T). The
    disease improves; whether the response lasts differs between seeds (seeds 1-3: lost on
    day 165, remission from day 160, remission from day 229)."""
    res = _run("sle_rituximab", seed, 300)
    e, df = res.endpoints, res.timeseries
    base = df[df["day"] <= -7].iloc[-1]
    at28 = df[df["day"] >= 28].iloc[0]
    # seeds 1-3: naive B in blood at day 28 at 0.0006-0.0009 of baseline
    assert at28["naive_b_per_ul"] < 0.01 * base["naive_b_per_ul"]
    # CD19+ cells in blood below 1% at their lowest: the CD20-negative plasmablasts are what
    # is left (seeds 1-3: 0.0044-0.0069)
    assert e["blood_b_cells_lowest_relative"] < 0.01
    assert at28["plasmablasts_per_ul"] > 0.5 * at28["b_cells_per_ul"]
    # lymph nodes not emptied (seeds 1-3: lowest 0.10-0.12; CD19 CAR-T: below 0.001)
    assert 0.03 < e["lymph_node_b_cells_lowest_relative"] < 0.5
    # B cells come back in blood after months (seeds 1-3: days 134-146)
    assert e["b_cell_reconstitution_day"] is not None
    assert 90 <= e["b_cell_reconstitution_day"] <= 220
    # a clinical response (SRI-4 style; seeds 1-3 on days 52-61), with anti-dsDNA lowered
    # (seeds 1-3: lowest 0.08-0.30 of baseline)
    assert e["response_day"] is not None and e["response_day"] <= 120
    rel, _ = _relative(res, "anti_dsdna")
    assert rel.min() < 0.6


@pytest.mark.parametrize("seed", SEEDS)
def test_bcma_cd19_car_t_loses_vaccine_titres_but_still_resets(seed):
    res = _run("sle_bcma_cd19_cart", seed, 400)
    e = res.endpoints
    assert e["protective_titre_month12_relative"] < 0.5  # seeds 1-3: 0.0
    assert res.timeseries["llpc"].iloc[-1] < 0.1 * res.timeseries["llpc"].iloc[0]
    assert e["remission_day"] is not None and e["relapse_day"] is None


def _two_hits(seed: int, half_life: float):
    """The failed-reset patient (``sle_failed_reset.toml``, no patient variability) with its
    random triggers replaced by one on days 200-202, after its B cells have returned."""
    raw = tomllib.loads((SCENARIOS / "sle_failed_reset.toml").read_text())
    raw.pop("variability")
    raw["therapy"] = [t for t in raw["therapy"] if t["type"] != "flare_triggers"]
    raw["therapy"].append({"type": "trigger", "days": [200, 201, 202], "autoantigen_per_site": 100})
    overrides = [
        "lattice.size=100",
        "time.dt_hours=2",
        "time.follow_up_days=330",
        f"molecules.autoantigen_half_life_days={half_life}",
    ]
    return immunesim.run(raw, seed=seed, overrides=overrides).endpoints


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_a_trigger_after_the_reset_relapses_only_a_patient_with_slow_autoantigen_clearance(seed):
    """Two hits (the failed-reset scenario): with autoantigen cleared at half the usual rate
    (half-life 3.5 days) the reset holds until a strong trigger after the B cells' return
    (100 units per tissue site on days 200-202), which restarts the disease; with the usual
    clearance (2 days) the same trigger wakes an autoreactive response that dies out.
    Seeds 1-3 (measured before the homing change): relapse on days 254, 259 and 254 at
    3.5 days (score 11.9-12.3 on day 330); none at 2 days (score 0.04-0.06 on day 330; a
    relapse was then the first day above 4, and is now the first of at least 7 days above
    4, which can only move it later). One seed runs here. (The scenario's
    own triggers are half as strong: one of them restarts the disease in some slow
    clearers only, docs/validation/failed_reset_sle.md.)"""
    slow, usual = _two_hits(seed, 3.5), _two_hits(seed, 2.0)
    for e in (slow, usual):
        assert e["remission_day"] is not None  # the reset first works in both
        assert e["b_cell_reconstitution_day"] < 200  # the trigger meets returned B cells
    assert slow["relapse_day"] is not None and slow["relapse_day"] > 200
    assert slow["final_disease_score"] > 0.7 * slow["baseline_disease_score"]
    assert usual["relapse_day"] is None


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_cd19_car_t_leaves_the_plasma_cell_made_autoantibody_and_bcma_removes_it(seed):
    """Patients with many anti-Sm long-lived plasma cells (``llpc_autoantibody_fraction``
    0.1): on day 180 (some 8.6 IgG half-lives on), CD19 CAR-T has cleared anti-dsDNA (made by
    plasmablasts) but left the plasma-cell part of anti-Sm; BCMA+CD19 has cleared both.
    Both therapies start from the same cached run-in. The bands hold seeds 1-3 with a
    margin of two or more; one seed runs here (a minute of the suite's time)."""
    extra = ["initial.llpc_autoantibody_fraction=0.1"]
    day180 = {}
    for name in ("sle_cd19_cart", "sle_bcma_cd19_cart"):
        res = _run(name, seed, 185, extra)
        rel_ds, after = _relative(res, "anti_dsdna")
        rel_sm, _ = _relative(res, "anti_sm")
        at = after["day"] >= 180
        day180[name] = (float(rel_ds[at].iloc[0]), float(rel_sm[at].iloc[0]))
    (cd19_ds, cd19_sm), (both_ds, both_sm) = day180.values()
    # seeds 1-3: anti-dsDNA 0.012-0.023 (CD19) and at most 0.002 (BCMA+CD19) of baseline
    assert cd19_ds < 0.05 and both_ds < 0.05
    # seeds 1-3: anti-Sm 0.31-0.38 (CD19) and 0.0025-0.016 (BCMA+CD19; what the marrow's new
    # anti-Sm B cells make after their return)
    assert cd19_sm > 0.15 and both_sm < 0.05


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_a_flare_trigger_after_the_reset_wakes_the_autoreactive_response(seed):
    """An autoantigen release (an infection) on day 200, after B cells have returned as
    naive cells: new autoreactive memory and anti-dsDNA appear within weeks (seeds 1 and 2:
    memory 0 -> 298 and 202 cells, anti-dsDNA 2.3 -> 92 and 1.2 -> 84 units). One seed runs
    here."""
    raw = tomllib.loads((SCENARIOS / "sle_cd19_cart.toml").read_text())
    raw["therapy"].append({"type": "trigger", "days": [200], "autoantigen_per_site": 300})
    overrides = ["lattice.size=100", "time.dt_hours=2", "time.follow_up_days=240"]
    res = immunesim.run(raw, seed=seed, overrides=overrides)
    df = res.timeseries
    before = df[(df["day"] > 180) & (df["day"] <= 200)]
    after = df[(df["day"] > 200) & (df["day"] <= 240)]
    assert before["memory_b_self"].max() < 0.2 * after["memory_b_self"].max()
    assert after["anti_dsdna"].max() > 5 * before["anti_dsdna"].max()


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_a_booster_after_the_reset_raises_its_titre_and_leaves_the_others(seed):
    """The naive B cells that return after CD19 CAR-T answer a tetanus booster on day 270
    (the CAR-T killed the tetanus memory: a primary response); the measles titre, made by
    surviving long-lived plasma cells, stays. One seed runs here; the bands hold seeds 1-3
    (fold rises 1.66, 1.81, 1.26) and the 10 patients of
    docs/validation/revaccination_sle.md (1.32-1.64). Untreated patients on standard of
    care given the same booster rise by 1.03-1.04 (seeds 1-3)."""
    res = _run("sle_revaccination", seed, 330)
    e = res.endpoints
    assert e["b_cell_reconstitution_day"] < 270  # the booster meets returned B cells
    assert e["vaccine_tetanus_day270_fold_rise"] > 1.1
    df = res.timeseries.set_index("day")
    measles = df.loc[270.0:326.0, "antibody_measles"]
    assert measles.max() / measles.iloc[0] < 1.02  # seeds 1-3: no rise at all


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_competition_for_niches_makes_the_booster_last(seed):
    """With competition for marrow niches (``activation.niche_displacement_per_day = 1``)
    the booster's plasmablasts displace resident plasma cells and settle: 270 days after
    it, the tetanus titre stays above the same patient's without the booster, while
    without competition the rise fades with its plasmablasts. Tolerance: at this lattice
    and time step, the 40 patients of docs/validation/niche_competition.md keep 0.017-0.147
    of baseline with competition (5-95%; 4 of 40 below 0.02, one below 0), and at most
    0.0002 without (10 patients); the test asks for a gain at least 0.02 larger with it,
    which a patient at the cohort's median (0.06) meets with room. Seeds 1-3 pass."""

    def gain(rate: float) -> float:
        extra = [f"activation.niche_displacement_per_day={rate}"]
        boosted = _run("sle_revaccination", seed, 540, extra).timeseries.set_index("day")
        plain = _run("sle_cd19_cart", seed, 540, extra).timeseries.set_index("day")
        col = "antibody_tetanus"
        return (boosted.loc[540.0, col] - plain.loc[540.0, col]) / boosted.loc[-7.0, col]

    without, with_competition = gain(0.0), gain(1.0)
    assert abs(without) < 0.02
    assert with_competition > without + 0.02

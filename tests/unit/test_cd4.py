"""The CD4 T-cell pool (:mod:`immunesim.model.cd4`): its closed form against the equation
it solves, the lymphodepletion's cut, and the follicles' T-helper production following it."""

from __future__ import annotations

import numpy as np
import pytest

from immunesim.engine import Simulation
from immunesim.engine.parameters import t_helper_threshold
from immunesim.model import cd4
from immunesim.scenario import load_scenario
from tests.conftest import small_cart


def _scenario(rate=0.02, thymic=0.1, kill=0.5, targets=("CD19", "CD3"), days=(-5, -4, -3), f=1.0):
    return load_scenario(
        {
            "cd4": {
                "homeostatic_rate_per_day": rate,
                "thymic_per_ul_per_day": thymic,
                "help_follows_pool": f,
            },
            "therapy": [
                {
                    "type": "lymphodepletion",
                    "days": list(days),
                    "targets": list(targets),
                    "kill_fraction_per_day": kill,
                }
            ],
        }
    )


def _rk4(b, r, theta, p0, days, h=0.01):
    """The pool's equation integrated numerically (classical Runge-Kutta, step h days)."""

    def f(p):
        return (theta + r * p) * (1.0 - p / b)

    p = p0
    for _ in range(int(round(days / h))):
        k1 = f(p)
        k2 = f(p + h / 2 * k1)
        k3 = f(p + h / 2 * k2)
        k4 = f(p + h * k3)
        p += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return p


@pytest.mark.parametrize(
    "rate,thymic", [(0.02, 0.1), (0.0, 2.0), (0.05, 0.0), (0.005, 5.0), (0.0, 0.0)]
)
@pytest.mark.parametrize("p0", [0.0, 13.0, 420.0])
def test_regrowth_is_the_solution_of_the_pool_equation(rate, thymic, p0):
    # RK4 at h = 0.01 day on a smooth one-dimensional equation is accurate to far better
    # than 1e-6 relative over a year; the closed form must agree to that
    s = _scenario(rate=rate, thymic=thymic)
    for days in (1.0, 30.0, 180.0, 365.0):
        exact = cd4.regrow(s, p0, days)
        numeric = _rk4(840.0, rate, thymic, p0, days)
        assert exact == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_without_lymphodepletion_the_pool_stays_at_its_baseline():
    s = load_scenario({"cd4": {"baseline_per_ul": 600.0}})
    for day in (-100.0, 0.0, 365.0):
        assert cd4.pool_per_ul(s, day) == 600.0
        assert cd4.help_factor(s, day) == 1.0  # exactly: T-helper production as before


def test_each_day_of_the_course_cuts_the_pool_by_its_kill_fraction():
    s = _scenario(kill=0.6)
    assert cd4.pool_per_ul(s, -5.000001) == 840.0
    assert cd4.pool_per_ul(s, -5.0) == pytest.approx(840.0 * 0.4)
    before_second = cd4.pool_per_ul(s, -4.0 - 1e-9)
    assert cd4.pool_per_ul(s, -4.0) == pytest.approx(before_second * 0.4)
    assert before_second > 840.0 * 0.4  # it regrew for a day in between


def test_the_pool_returns_toward_its_baseline_and_never_passes_it():
    s = _scenario()
    days = np.arange(-3.0, 3000.0, 1.0)
    pool = cd4.pool_series(s, days)
    assert np.all(np.diff(pool) >= 0)
    assert np.all(np.diff(pool[:365]) > 0)  # still rising through the first year
    assert pool.max() <= 840.0
    assert pool[-1] == pytest.approx(840.0, rel=1e-6)
    # a faster homeostatic rate gives a higher count on every day after the course
    faster = cd4.pool_series(_scenario(rate=0.04), days[1:400])
    assert np.all(faster > pool[1:400])


def test_a_course_that_spares_t_cells_leaves_the_pool():
    s = _scenario(targets=("CD19",))
    assert cd4.depletions(s) == []
    assert cd4.pool_per_ul(s, 10.0) == 840.0


def test_help_factor_scales_the_t_helper_target_by_how_far_it_follows_the_pool():
    day = 30.0
    ratio = cd4.pool_per_ul(_scenario(), day) / 840.0
    assert 0.0 < ratio < 0.5
    assert cd4.help_factor(_scenario(f=1.0), day) == pytest.approx(ratio)
    assert cd4.help_factor(_scenario(f=0.5), day) == pytest.approx(0.5 + 0.5 * ratio)
    assert cd4.help_factor(_scenario(f=0.0), day) == 1.0
    # with the pool low, a count the full target would still grow from gets no production
    s_on, s_off = _scenario(f=1.0), _scenario(f=0.0)
    n_sites, count = 1000, int(0.2 * 1000 * ratio) + 5
    assert t_helper_threshold(s_on, n_sites, count, day) == 0
    assert t_helper_threshold(s_off, n_sites, count, day) > 0


def _t_helpers_and_cd4(**cd4_keys) -> tuple[dict[float, int], dict[float, float]]:
    spec = small_cart(size=40, run_in=20.0, follow_up=40.0)
    spec["cd4"] = cd4_keys
    sim = Simulation(load_scenario(spec), seed=3).run()
    return (
        {r["day"]: r["t_helper"] for r in sim.rows},
        {r["day"]: r["cd4_per_ul"] for r in sim.rows},
    )


def test_follicular_helpers_come_back_with_the_pool_not_within_a_week():
    """40 x 40 sites, seed 3: about 100 T helpers at baseline. Day 30 is 33 days after the
    course; the pool is then below a quarter of its baseline, so helpers following it stay
    below 40% of theirs, while helpers on their own are back above 80% (they regrow at 0.05
    per free lymphoid site a day). The margins are several times the day-to-day noise of
    ~100 helpers (a few per cent)."""
    coupled, pool = _t_helpers_and_cd4(help_follows_pool=1.0)
    alone, pool_alone = _t_helpers_and_cd4(help_follows_pool=0.0)
    base = coupled[-7.0]
    assert base == alone[-7.0]  # the same run until the course
    assert pool[30.0] < 0.25 * 840.0
    assert coupled[30.0] < 0.4 * base
    assert alone[30.0] > 0.8 * base
    # the output is the pool in clinical units, whatever the lattice's helpers do
    assert pool == pool_alone
    assert pool[-7.0] == 840.0


def test_anti_car_factor_scales_host_immunity_by_how_far_it_follows_the_pool():
    day = 60.0
    ratio = cd4.pool_per_ul(_scenario(), day) / 840.0
    assert 0.0 < ratio < 0.6
    for f in (1.0, 0.25, 0.0):
        s = load_scenario(_scenario().model_dump(), [f"cd4.anti_car_follows_pool={f}"])
        assert cd4.anti_car_factor(s, day) == pytest.approx(1.0 - f + f * ratio)
    # the pool at its baseline (before any depletion) leaves the immunity as it was
    assert cd4.anti_car_factor(_scenario(), -10.0) == 1.0


def _car_t(spec: dict, **cd4_keys) -> dict[float, int]:
    spec = {**spec, "cd4": cd4_keys}
    sim = Simulation(load_scenario(spec), seed=5).run()
    return {r["day"]: r["car_t"] for r in sim.rows}


def _fast_immunity(conditioned: bool) -> dict:
    spec = small_cart(size=40, run_in=20.0, follow_up=40.0)
    car = next(t for t in spec["therapy"] if t["type"] == "car_t")
    car.update(anti_car_onset_days=5.0, anti_car_rise_days=1.0, anti_car_kill_rate_per_day=0.5)
    if not conditioned:
        spec["therapy"] = [t for t in spec["therapy"] if t["type"] != "lymphodepletion"]
    return spec


def test_host_immunity_against_the_car_is_weak_while_the_pool_is_low():
    """40 x 40 sites, seed 5, immunity from day 5 at 0.5 a day: after conditioning the pool
    is below a quarter of its baseline through day 30, so immunity that follows it clears
    at most a quarter as fast and leaves at least twice the CAR-T on day 30 (at the full
    rate, 0.5 a day for 24 days leaves e^-12 of the cells the expansion made; the
    margin is far above the run's noise)."""
    coupled = _car_t(_fast_immunity(True), anti_car_follows_pool=1.0)
    alone = _car_t(_fast_immunity(True), anti_car_follows_pool=0.0)
    assert coupled[4.0] == alone[4.0]  # the same run until the immunity's onset
    assert coupled[30.0] > 2 * alone[30.0] + 10


def test_without_lymphodepletion_the_immunity_is_what_it_was():
    """No conditioning: the pool stays at its baseline, the factor is exactly 1, and the
    run is the same bits whatever anti_car_follows_pool is."""
    a = _car_t(_fast_immunity(False), anti_car_follows_pool=1.0)
    b = _car_t(_fast_immunity(False), anti_car_follows_pool=0.0)
    assert a == b and a[30.0] < a[4.0]  # and the immunity does clear them

"""Flare triggers met at random (``type = "flare_triggers"``): a Poisson process per patient,
drawn from the run's seed, and the same on every backend and on resuming."""

from __future__ import annotations

import math

import numpy as np
import pytest

from immunesim.engine.course import Course
from immunesim.engine.therapies import EFFECTS, flare_starts
from immunesim.scenario import FlareTriggers, ScenarioError, load_scenario


def _entry(**kw) -> FlareTriggers:
    return FlareTriggers(type="flare_triggers", **kw)


def _scenario(**kw):
    return load_scenario(
        {
            "lattice": {"size": 20, "zones": {"unit_um": 200}},
            "time": {"run_in_days": 10, "follow_up_days": 100, "dt_hours": 2},
            "therapy": [{"type": "flare_triggers", **kw}],
        }
    )


def test_the_days_are_a_function_of_the_seed():
    t = _entry(rate_per_year=6.0)
    assert flare_starts(t, 11, 365) == flare_starts(t, 11, 365)
    assert flare_starts(t, 11, 365) != flare_starts(t, 12, 365)
    # a longer run meets the same triggers first, then more
    short, long = flare_starts(t, 11, 100), flare_starts(t, 11, 365)
    assert long[: len(short)] == short and len(long) > len(short)


def test_the_triggers_are_a_poisson_process_at_the_stated_rate():
    """2 000 patients at 2 a year over one year: the mean count is 2 with a standard error of
    sqrt(2 / 2000) = 0.032, so 0.15 is more than four standard errors; the share of patients
    with none is exp(-2) = 0.135 with a standard error of 0.008 (0.03: nearly four). Over 100
    years (no window cuts the gaps short), 200 patients' ~40 000 gaps are exponential with
    mean 182.6 days: standard error 0.9 (5 days: over five), and the share of gaps longer
    than the mean is exp(-1) = 0.368, standard error 0.0024 (0.012: five)."""
    t = _entry(rate_per_year=2.0, start_day=0.0)
    starts = [flare_starts(t, seed, 365.25) for seed in range(2000)]
    counts = np.array([len(s) for s in starts])
    assert abs(counts.mean() - 2.0) < 0.15
    assert abs((counts == 0).mean() - math.exp(-2.0)) < 0.03
    assert all(0.0 <= d < 365.25 for s in starts for d in s)
    mean = 365.25 / 2.0
    gaps = np.concatenate([np.diff([0.0, *flare_starts(t, seed, 36525.0)]) for seed in range(200)])
    assert abs(gaps.mean() - mean) < 5.0
    assert abs((gaps > mean).mean() - math.exp(-1.0)) < 0.012


def test_no_trigger_outside_its_window_or_at_rate_zero():
    t = _entry(rate_per_year=20.0, start_day=30.0, stop_day=60.0)
    for seed in range(50):
        assert all(30.0 <= d < 60.0 for d in flare_starts(t, seed, 1000))
    assert flare_starts(_entry(rate_per_year=0.0), 1, 1000) == []


def test_each_trigger_releases_autoantigen_on_each_of_its_days_in_the_course():
    s = _scenario(rate_per_year=10.0, duration_days=3)
    t = s.therapy[0]
    starts = flare_starts(t, 5, 100)
    assert starts  # 10 a year over 100 days: this seed meets some
    days = EFFECTS["flare_triggers"].drawn_event_days(t, s, 5)
    assert days == [d + i for d in starts for i in range(3) if d + i <= 100]
    course = Course(s, 5, lambda f: None)
    scheduled = sorted(step for step, ts in course._schedule.items() for _ in ts)
    assert scheduled == sorted(max(1, s.step_of_day(d)) for d in days)
    assert Course(s, 6, lambda f: None)._schedule != course._schedule


def test_a_start_outside_the_run_or_a_stop_before_the_start_is_refused():
    with pytest.raises(ScenarioError, match=r"therapy\.0\.start_day"):
        _scenario(start_day=200.0)
    with pytest.raises(ScenarioError, match=r"therapy\.0\.stop_day"):
        _scenario(start_day=50.0, stop_day=20.0)
    with pytest.raises(ScenarioError, match=r"therapy\.0\.duration_days"):
        _scenario(duration_days=0)

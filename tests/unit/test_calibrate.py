"""The calibration procedure picks the grid value closest to the target and interpolates
where the cohort median crosses it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import immunesim.calibrate as cal
from immunesim.scenario import ScenarioError, load_scenario
from tests.conftest import SCENARIOS


@pytest.fixture
def fake_cohorts(monkeypatch):
    """Cohort medians that fall linearly with the parameter: 200 - 100 * value."""
    seen = []

    def fake_run_cohort(s, patients, out, seed=None, jobs=None):
        v = s.therapy[2].memory_kill_factor
        seen.append(v)
        median = 200.0 - 100.0 * v
        table = pd.DataFrame({"patient": range(patients)})
        summary = {
            "endpoints": {
                "b_cell_reconstitution_day": {
                    "median": median,
                    "p5": median - 5,
                    "p95": median + 5,
                    "n": patients,
                    "of": patients,
                }
            }
        }
        return table, summary

    monkeypatch.setattr(cal, "run_cohort", fake_run_cohort)
    return seen


def test_fit_interpolates_between_bracketing_points(fake_cohorts, tmp_path):
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml")
    t = cal.find_target("b_cell_reconstitution_day")  # published 110
    res = cal.calibrate(s, "therapy.2.memory_kill_factor", [0.2, 0.6, 1.0], t, tmp_path)
    assert fake_cohorts == [0.2, 0.6, 1.0]  # the override reached the scenario
    assert res.best_grid_value == 1.0  # median 100, the closest to 110
    assert res.interpolated_value == pytest.approx(0.9)  # 200 - 100 v = 110
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["apply_with"] == "--set therapy.2.memory_kill_factor=0.9"
    assert (tmp_path / "calibration.png").stat().st_size > 5000


def test_unknown_target_and_bad_parameter_are_reported(fake_cohorts, tmp_path):
    with pytest.raises(KeyError, match="unknown target"):
        cal.find_target("no_such_target")
    with pytest.raises(KeyError, match="no published point"):
        cal.find_target("drug_free_remission_lasts")
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml")
    t = cal.find_target("b_cell_reconstitution_day")
    with pytest.raises(ScenarioError) as err:
        cal.calibrate(s, "therapy.2.memory_kill_factor", [2.0], t, tmp_path)
    assert err.value.key == "therapy.2.memory_kill_factor"

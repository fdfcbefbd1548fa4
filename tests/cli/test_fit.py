"""``immunesim fit``: several parameters against several published targets at once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from immunesim.cohort import run_cohort
from immunesim.fit import UNREACHED, target_loss
from immunesim.report import Target, load_targets
from immunesim.scenario import load_scenario
from tests.cli.conftest import run_immunesim
from tests.conftest import SCENARIOS

#: Three months after a two-week run-in on a 24 x 24 patch: a second a run.
SMALL = [
    "lattice.size=24", "lattice.zones.unit_um=240", "time.run_in_days=14",
    "time.follow_up_days=95", "therapy.2.dose_per_kg=2e7",
]  # fmt: skip

FIT = f"""
scenario = "{SCENARIOS / "sle_cd19_cart.toml"}"
set = {json.dumps(SMALL)}
patients = 2
seed = 3
trials = 4
targets = ["car_t_peak_day", "b_cell_depletion", "anti_dsdna_seronegative_month3",
           "remission_by_month3", "crs_mild"]

[[parameter]]
key = "variability.2.median"
low = 1.0
high = 2.5

[[parameter]]
key = "therapy.2.memory_fraction"
low = 0.005
high = 0.1
log = true
"""


def _target(name: str) -> Target:
    return next(t for t in load_targets() if t.name == name)


def test_a_measured_target_scores_the_median_against_its_value_and_spread():
    t = _target("b_cell_reconstitution_day")  # 110 +/- 32 days
    assert target_loss(t, [110.0, 100.0, 120.0])[0] == 0.0
    loss, median, met = target_loss(t, [142.0, 142.0, 150.0])
    assert (loss, median, met) == (pytest.approx(1.0), 142.0, True)
    loss, _, met = target_loss(t, [174.0, 174.0])
    assert loss == pytest.approx(4.0) and not met


def test_a_bound_scores_only_outside_and_a_yes_no_target_by_the_share_missing():
    t = _target("remission_by_month3")  # by day 90: 0 inside, (distance / 45)^2 outside
    assert target_loss(t, [10.0, 85.0, 60.0])[0] == 0.0
    assert target_loss(t, [120.0, 120.0, 120.0])[0] == pytest.approx((30 / 45) ** 2)
    # most patients never reach it: as if two half-widths out
    assert target_loss(t, [None, None, 40.0]) == (UNREACHED, None, False)
    durable = _target("drug_free_remission_lasts")
    assert target_loss(durable, [True, True, True, True])[0] == 0.0
    assert target_loss(durable, [True, False, True, True])[0] == pytest.approx(0.25)
    assert target_loss(durable, [False] * 4) == (4.0, 0.0, False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    (tmp / "fit.toml").write_text(FIT)
    done = run_immunesim("fit", tmp / "fit.toml", "--out", tmp / "out", "--workers", "2",
                         "--quiet", timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp / "out", done.stdout


def test_every_trial_is_scored_from_its_own_runs(fitted):
    out, _ = fitted
    trials = pd.read_csv(out / "trials.csv")
    runs = pd.read_csv(out / "runs.csv")
    assert len(trials) == 4 and len(runs) == 8 and (runs["status"] == "ok").all()
    names = ["car_t_peak_day", "b_cell_depletion", "anti_dsdna_seronegative_month3",
             "remission_by_month3", "crs_mild"]  # fmt: skip
    for _, tr in trials.iterrows():
        assert tr["loss"] == pytest.approx(sum(tr[f"{n}:loss"] for n in names))
        mine = runs[runs["trial"] == tr["trial"]]
        assert sorted(mine["patient"]) == [0, 1]  # the same patients in every trial
        for col in ("param:variability.2.median", "param:therapy.2.memory_fraction"):
            assert (mine[col] == tr[col]).all()
        peaks = mine["car_t_peak_day"].dropna()
        if len(peaks) == 2:
            assert tr["car_t_peak_day:value"] == pytest.approx(np.median(peaks))


def test_the_fit_is_the_best_trial_and_its_set_lines_reproduce_it(fitted):
    out, stdout = fitted
    trials = pd.read_csv(out / "trials.csv")
    summary = json.loads((out / "fit.json").read_text())
    best = trials.loc[trials["loss"].idxmin()]
    assert summary["best_trial"] == best["trial"]
    assert summary["loss"] == pytest.approx(best["loss"])
    low, high = summary["ranges_within_1"]["variability.2.median"]
    assert low <= summary["values"]["variability.2.median"] <= high
    assert "apply with: --set variability.2.median=" in stdout
    assert (out / "fit.png").stat().st_size > 10_000
    # the same patients as a cohort with the fitted values: the best trial's medians
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml", SMALL + summary["set"])
    table, _ = run_cohort(s, 2, out.parent / "check", seed=3, jobs=1)
    peaks = table["car_t_peak_day"].dropna()
    if len(peaks) == 2:
        assert summary["targets"]["car_t_peak_day"]["value"] == pytest.approx(peaks.median())
    got = table["anti_dsdna_day90_relative"].median()
    assert summary["targets"]["anti_dsdna_seronegative_month3"]["value"] == pytest.approx(got)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (FIT.replace('"crs_mild"', '"crs_severe"'), "targets.4"),
        (FIT.replace("low = 1.0\n", ""), "parameter.0.low"),
        (FIT.replace("high = 0.1", "high = 3.0"), "parameter.1"),  # not a fraction
        (FIT + "\nsamples = 3\n", "parameter.1.samples"),  # a key the schema lacks
    ],
)
def test_a_bad_fit_file_is_refused_with_its_key(tmp_path, body, key):
    (tmp_path / "fit.toml").write_text(body)
    done = run_immunesim("fit", tmp_path / "fit.toml", "--out", tmp_path / "out")
    assert done.returncode == 2
    assert f"fit.toml: {key}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

"""Virtual patients: per-patient values and seeds do not depend on cohort size or workers."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from immunesim.cohort import patient_seed, patient_values, run_cohort, summarise
from immunesim.scenario import ScenarioError, load_scenario
from tests.conftest import SCENARIOS, immunesim_cmd

SMALL = [
    "lattice.size=32",
    "lattice.zones.unit_um=320",
    "time.run_in_days=15",
    "time.follow_up_days=10",
]


def test_patient_draws_follow_the_declared_distribution():
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml")
    key = "molecules.autoantigen_source_per_day"
    draws = pd.Series([patient_values(s, 1, p)[key] for p in range(400)])
    # lognormal(median 0.5, sigma 0.3): the sample median of 400 draws has a standard error
    # of about 1.25 * 0.3 / 20 = 1.9% in log; allow 4 standard errors (8%).
    assert abs(draws.median() / 0.5 - 1) < 0.08
    assert abs(draws.apply("log").std() - 0.3) < 0.05
    assert patient_values(s, 1, 7) == patient_values(s, 1, 7)
    assert patient_seed(1, 0) != patient_seed(1, 1) != patient_seed(2, 1)


def test_patients_do_not_depend_on_cohort_size_or_workers(tmp_path):
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml", SMALL)
    a, _ = run_cohort(s, 3, tmp_path / "a", seed=5, jobs=1)
    b, summary = run_cohort(s, 2, tmp_path / "b", seed=5, jobs=2)
    cols = [c for c in a.columns if c.startswith("param:")] + ["seed", "car_t_peak_day"]
    pd.testing.assert_frame_equal(a.loc[:1, cols], b.loc[:1, cols])
    for p in (0, 1):
        name = f"patient_{p:03d}/timeseries.csv"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # patients differ from one another
    assert a["param:molecules.autoantigen_source_per_day"].nunique() == 3
    on_disk = json.loads((tmp_path / "b" / "cohort_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    peak = summary["endpoints"]["car_t_peak_day"]
    assert peak["median"] == pytest.approx(b["car_t_peak_day"].median())
    assert peak["n"] == 2 and peak["of"] == 2


def test_summary_counts_flags_and_skips_unreached():
    table = pd.DataFrame(
        {
            "patient": [0, 1, 2],
            "seed": [1, 2, 3],
            "relapse_day": [None, 300.0, 200.0],
            "remission_durable": [True, False, False],
            "returning_b_phenotype": ["naive", "naive", None],
        }
    )
    s = summarise(table)
    assert s["returning_b_phenotype"] == {
        "n": 2,
        "of": 3,
        "median": "naive",
        "p5": None,
        "p95": None,
    }
    assert s["relapse_day"] == {"n": 2, "of": 3, "median": 250.0, "p5": 205.0, "p95": 295.0}
    assert s["remission_durable"]["n"] == 1 and s["remission_durable"]["median"] is None


def test_bad_variability_key_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[variability]]\nkey = "molecules.no_such_rate"\n'
        'distribution = "lognormal"\nmedian = 1.0\nsigma = 0.1\n'
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert err.value.key == "variability.0.key"
    proc = subprocess.run(
        [*immunesim_cmd(), "validate", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "variability.0.key" in proc.stderr
    missing = tmp_path / "missing.toml"
    missing.write_text(
        '[[variability]]\nkey = "time.dt_hours"\ndistribution = "normal"\nmean = 1.0\n'
    )
    with pytest.raises(ScenarioError, match="needs mean and sd"):
        load_scenario(missing)


def test_patients_on_a_dask_cluster_are_the_patients_of_local_processes(tmp_path):
    from dask.distributed import LocalCluster

    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml", SMALL)
    local, _ = run_cohort(s, 2, tmp_path / "local", seed=5, jobs=1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:  # fmt: skip
        on_dask, _ = run_cohort(
            s, 2, tmp_path / "dask", seed=5, scheduler=cluster.scheduler_address
        )
    pd.testing.assert_frame_equal(local, on_dask)
    for p in (0, 1):
        name = f"patient_{p:03d}/timeseries.csv"
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()


def test_an_unreachable_scheduler_for_a_cohort_is_a_clear_error(tmp_path):
    from tests.cli.conftest import run_immunesim

    done = run_immunesim("run", SCENARIOS / "sle_cd19_cart.toml", "--patients", "2",
                         "--scheduler", "tcp://127.0.0.1:9", "--out", tmp_path / "c")  # fmt: skip
    assert done.returncode == 2 and "--scheduler" in done.stderr
    assert "Traceback" not in done.stderr
    alone = run_immunesim("run", SCENARIOS / "sle_cd19_cart.toml", "--scheduler", "tcp://x:1",
                          "--out", tmp_path / "d")  # fmt: skip
    assert alone.returncode == 2 and "--patients" in alone.stderr

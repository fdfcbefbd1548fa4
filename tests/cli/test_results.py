"""Outputs loaded back and looked at: ``immunesim.load_run``, ``plot`` and ``report`` of a
run, a cohort and a comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import immunesim
from immunesim.cohort import run_cohort
from immunesim.compare import compare
from immunesim.plot import bands
from immunesim.report import load_targets
from immunesim.scenario import load_scenario
from tests.cli.conftest import run_immunesim
from tests.conftest import SCENARIOS

TINY = [
    "lattice.size=40",
    "lattice.zones.unit_um=400",
    "time.run_in_days=30",
    "time.follow_up_days=95",
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("outputs")
    cd19 = load_scenario(SCENARIOS / "sle_cd19_cart.toml", TINY)
    immunesim.run(cd19, 4, out=base / "run")
    run_cohort(cd19, 3, base / "cohort", seed=4, jobs=1)
    rtx = load_scenario(SCENARIOS / "sle_rituximab.toml", TINY)
    compare([cd19, rtx], 2, base / "compare", seed=4, jobs=1)
    return base


def test_a_run_loads_as_one_tidy_row(outputs):
    r = immunesim.load_run(outputs / "run")
    assert r.kind == "run" and len(r.endpoints) == 1 and r.groups == ["sle_cd19_cart"]
    written = pd.read_parquet(outputs / "run" / "timeseries.parquet")
    pd.testing.assert_frame_equal(r.timeseries.drop(columns=["run", "group"]), written)
    ds = r.to_xarray()
    assert dict(ds.sizes) == {"run": 1, "day": len(written)}
    np.testing.assert_array_equal(ds["b_cells"].values[0], written["b_cells"])


def test_a_cohort_loads_with_its_patients_and_their_draws(outputs):
    r = immunesim.load_run(outputs / "cohort")
    table = pd.read_csv(outputs / "cohort" / "cohort.csv")
    assert r.kind == "cohort" and list(r.endpoints["run"]) == [f"patient_{i:03d}" for i in range(3)]
    params = [c for c in table.columns if c.startswith("param:")]
    np.testing.assert_allclose(r.endpoints[params].to_numpy(float), table[params].to_numpy(float))
    one = pd.read_parquet(outputs / "cohort" / "patient_002" / "timeseries.parquet")
    mine = r.timeseries[r.timeseries["run"] == "patient_002"].drop(columns=["run", "group"])
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), one)
    ds = r.to_xarray()
    assert dict(ds.sizes)["run"] == 3
    assert list(ds["seed"].values) == list(table["seed"])
    key = "molecules.autoantigen_source_per_day"
    np.testing.assert_allclose(ds[key].values, table[f"param:{key}"])


def test_a_comparison_loads_one_group_per_arm(outputs):
    r = immunesim.load_run(outputs / "compare")
    assert r.kind == "compare" and r.groups == ["sle_cd19_cart", "sle_rituximab"]
    assert set(r.endpoints["run"]) == {
        f"{arm}/patient_{i:03d}" for arm in r.groups for i in range(2)
    }
    arms = r.endpoints.set_index("run")
    assert (
        arms.loc["sle_cd19_cart/patient_001", "seed"]
        == arms.loc["sle_rituximab/patient_001", "seed"]
    )


def test_bands_are_the_median_and_5_95_percent_of_each_day():
    course = pd.DataFrame(
        {
            "run": ["a", "b", "c"] * 2,
            "group": ["g"] * 6,
            "day": [0, 0, 0, 1, 1, 1],
            "x": [1.0, 5.0, 3.0, 2.0, 2.0, 8.0],
        }
    )
    b = bands(course, "x").set_index("day")
    assert list(b["median"]) == [3.0, 2.0]
    assert b.loc[0, "p5"] == pytest.approx(np.quantile([1, 5, 3], 0.05))
    assert b.loc[1, "p95"] == pytest.approx(np.quantile([2, 2, 8], 0.95))
    assert list(b["n"]) == [3, 3]


@pytest.mark.parametrize("what", ["run", "cohort", "compare"])
def test_plot_draws_any_output(outputs, tmp_path, what):
    png = tmp_path / f"{what}.png"
    done = run_immunesim("plot", outputs / what, "--out", png)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_and_report_refuse_what_is_not_an_output(tmp_path):
    for cmd in (["plot", tmp_path], ["report", tmp_path, "--out", tmp_path / "r.md"]):
        done = run_immunesim(*cmd)
        assert done.returncode == 2 and "error:" in done.stderr
        assert "Traceback" not in done.stderr
    bad = run_immunesim("plot", tmp_path, "--out", tmp_path / "x.txt")
    assert bad.returncode == 2


def test_report_of_a_comparison_has_a_column_per_arm_and_cites_every_target(outputs, tmp_path):
    md = tmp_path / "report.md"
    done = run_immunesim("report", outputs / "compare", outputs / "cohort", "--out", md)
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| target"))
    assert "sle_cd19_cart (arm of 2, 40x40" in header
    assert "sle_rituximab (arm of 2, 40x40" in header
    assert "sle_cd19_cart (cohort of 3, 40x40" in header
    assert header.rstrip(" |").endswith("source")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for t in load_targets():  # every target's row ends with its source
        row = next(r for r in rows if r.startswith(f"| {t.name.replace('_', ' ')} |"))
        assert row.rstrip(" |").endswith(t.source.replace("|", "\\|"))
    assert (tmp_path / "report_files" / "course.png").is_file()

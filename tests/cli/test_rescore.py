"""``immunesim rescore``: stored runs scored again under other ``[endpoints]`` settings."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from immunesim.cohort import run_cohort
from immunesim.compare import compare
from immunesim.rescoring import rescore
from immunesim.scenario import ScenarioError, load_scenario
from tests.conftest import SCENARIOS

TINY = [
    "lattice.size=40",
    "lattice.zones.unit_um=400",
    "time.run_in_days=60",
    "time.follow_up_days=40",
]
CUTS = "endpoints.crs_grade_car_t_per_ul"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A 3-patient cohort and a 2-patient comparison, made once (copy before changing)."""
    root = tmp_path_factory.mktemp("rescore")
    cd19 = load_scenario(SCENARIOS / "sle_cd19_cart.toml", TINY)
    rtx = load_scenario(SCENARIOS / "sle_rituximab.toml", TINY)
    run_cohort(cd19, 3, root / "cohort", seed=5, jobs=1)
    compare([cd19, rtx], 2, root / "cmp", seed=5, jobs=1)
    return root


def _copy(stored: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(stored / name, tmp_path / name))


def _digests(d: Path) -> dict[str, str]:
    return {
        str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(d.rglob("*"))
        if f.is_file()
    }


def _outputs(d: Path) -> dict[str, str]:
    """Digests of every file but the manifests (which record each scoring)."""
    return {k: v for k, v in _digests(d).items() if not k.endswith("manifest.json")}


@pytest.mark.parametrize("name", ["cohort", "cmp"])
def test_scoring_again_unchanged_gives_the_same_files(stored, tmp_path, name):
    d = _copy(stored, name, tmp_path)
    before = _outputs(d)
    res = rescore(d, [])
    assert len(res.changes()) == 0
    assert _outputs(d) == before  # endpoints, tables and summaries byte for byte


def test_a_new_crs_cut_off_regrades_every_run_from_its_stored_peak(stored, tmp_path):
    d = _copy(stored, "cohort", tmp_path)
    old = pd.read_csv(d / "cohort.csv")
    peaks = old["crs_proxy_car_t_peak_per_ul"].to_numpy(float)
    cut = float(np.median(peaks))  # some runs on each side (or on it)
    res = rescore(d, [f"{CUTS}=[{cut!r}, 1e6, 1e7]"])

    new = pd.read_csv(d / "cohort.csv")
    np.testing.assert_array_equal(new["crs_proxy_grade"], (peaks >= cut).astype(int))
    assert list(new.columns) == list(old.columns)
    others = [c for c in old.columns if c != "crs_proxy_grade"]
    pd.testing.assert_frame_equal(new[others], old[others])  # nothing else moved
    assert set(new["crs_proxy_grade"]) == {0, 1}  # the lowest peak below the cut, the median on it
    changed = (old["crs_proxy_grade"] != new["crs_proxy_grade"]).any()
    assert list(res.changes()["endpoint"]) == (["crs_proxy_grade"] if changed else [])
    summary = json.loads((d / "cohort_summary.json").read_text())["endpoints"]
    assert summary["crs_proxy_grade"]["median"] == float(new["crs_proxy_grade"].median())
    for _, row in new.iterrows():
        run = d / f"patient_{int(row['patient']):03d}"
        ends = json.loads((run / "endpoints.json").read_text())
        assert ends["crs_proxy_grade"] == row["crs_proxy_grade"]
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["scenario"]["endpoints"]["crs_grade_car_t_per_ul"] == [cut, 1e6, 1e7]
        assert manifest["rescored"][-1]["set"] == [f"{CUTS}=[{cut!r}, 1e6, 1e7]"]

    # and back: the cut-offs the runs were made with give the files they were made with
    first = json.loads((stored / "cohort" / "patient_000" / "manifest.json").read_text())
    cuts = first["scenario"]["endpoints"]["crs_grade_car_t_per_ul"]
    rescore(d, [f"{CUTS}={cuts!r}"])
    assert _outputs(d) == _outputs(stored / "cohort")


def test_a_comparison_scores_its_arms_and_pairs_them_again(stored, tmp_path):
    d = _copy(stored, "cmp", tmp_path)
    before = pd.read_csv(d / "compare.csv")

    def series(row) -> pd.DataFrame:
        run = d / row["scenario"] / f"patient_{int(row['patient']):03d}"
        return pd.read_parquet(run / "timeseries.parquet")

    first = before[before["scenario"] == "sle_cd19_cart"].iloc[0]
    # a detection limit just above that patient's last count: its detection now ends sooner
    limit = 1.01 * float(series(first)["car_t_per_ul"].iloc[-1])
    rescore(d, [f"endpoints.car_t_detection_per_ul={limit!r}"])

    table = pd.read_csv(d / "compare.csv")
    for _, row in table.iterrows():
        ts = series(row)
        seen = ts.loc[(ts["day"] >= 0) & (ts["car_t_per_ul"] >= limit), "day"]
        want = float(seen.max()) if len(seen) else np.nan
        got = row["car_t_last_detected_day"]
        assert (np.isnan(want) and pd.isna(got)) or got == want
    col = "car_t_last_detected_day"
    assert not before[col].equals(table[col])
    pairs = pd.read_csv(d / "paired.csv")
    last = pairs[pairs["endpoint"] == col].set_index("patient")
    ref = table[table["scenario"] == "sle_cd19_cart"].set_index("patient")
    pd.testing.assert_series_equal(last["reference"], ref[col], check_names=False)


def test_a_dry_run_writes_nothing(stored, tmp_path):
    d = _copy(stored, "cohort", tmp_path)
    before = _digests(d)
    res = rescore(d, [f"{CUTS}=[0.0, 1e6, 1e7]"], dry_run=True)
    assert _digests(d) == before
    assert res.written == []
    assert all(e["crs_proxy_grade"] == 1 for e in res.after.values())  # every peak >= 0


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("lattice.size=50", "lattice.size", "an endpoints.* key"),
        ("therapy.2.dose_per_kg=1e6", "therapy.2.dose_per_kg", "change the simulation"),
        (f"{CUTS}=[3.0, 1.0, 0.5]", CUTS, "ascending"),
        ("endpoints.no_such_cut=1", "endpoints.no_such_cut", "unknown key"),
    ],
)
def test_bad_overrides_are_refused_and_nothing_is_written(
    stored, tmp_path, cli, override, key, words
):
    d = _copy(stored, "cohort", tmp_path)
    before = _digests(d)
    proc = cli("rescore", d, "--set", override)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{key}:" in proc.stderr and words in proc.stderr
    assert _digests(d) == before


def test_a_missing_run_is_named_and_nothing_is_written(stored, tmp_path, cli):
    d = _copy(stored, "cohort", tmp_path)
    other = _copy(stored, "cmp", tmp_path)
    shutil.rmtree(d / "patient_001")
    before = _digests(d), _digests(other)
    # the good directory first: it is not written either, since the second fails its check
    proc = cli("rescore", other, d, "--set", f"{CUTS}=[0.1, 1e6, 1e7]")
    assert proc.returncode == 2
    assert "patient_001" in proc.stderr and "Traceback" not in proc.stderr
    assert (_digests(d), _digests(other)) == before


def test_what_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(ScenarioError, match="a run, cohort or comparison directory"):
        rescore(tmp_path, [])
    (tmp_path / "sweep.json").write_text("{}")
    (tmp_path / "design.csv").write_text("run\n")
    with pytest.raises(ScenarioError, match="sweep keeps no scenario per run"):
        rescore(tmp_path, [])


def test_the_command_shows_what_changed(stored, tmp_path, cli):
    d = _copy(stored, "cohort", tmp_path)
    proc = cli("rescore", d, "--set", f"{CUTS}=[0.0, 1e6, 1e7]", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    grades = pd.read_csv(d / "cohort.csv")["crs_proxy_grade"]
    changed = int((grades != 1).sum())
    if changed:
        assert "crs_proxy_grade" in proc.stdout and f"{changed} of 3" in proc.stdout
    else:
        assert "no endpoint changed" in proc.stdout
    assert "dry run: nothing written" in proc.stdout


def test_the_command_writes_what_its_dry_run_scored(stored, tmp_path, cli):
    """The command scores every directory once, then writes: its files are those of
    ``rescore`` called directly (the manifests aside, which record the time)."""
    by_cli = _copy(stored, "cmp", tmp_path / "cli")
    by_api = _copy(stored, "cmp", tmp_path / "api")
    override = "endpoints.car_t_detection_per_ul=3.0"
    proc = cli("rescore", by_cli, "--set", override)
    assert proc.returncode == 0, proc.stderr
    rescore(by_api, [override])
    assert _outputs(by_cli) == _outputs(by_api) != _outputs(stored / "cmp")
    manifest = json.loads((by_cli / "sle_cd19_cart" / "patient_000" / "manifest.json").read_text())
    assert manifest["rescored"][-1]["set"] == [override]

"""``immunesim compare``: the same virtual patients through each therapy, paired."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import immunesim
from immunesim.cohort import patient_scenario
from immunesim.compare import compare
from immunesim.runin import RunInCache
from immunesim.scenario import ScenarioError, load_scenario
from tests.conftest import SCENARIOS

TINY = [
    "lattice.size=40",
    "lattice.zones.unit_um=400",
    "time.run_in_days=60",
    "time.follow_up_days=95",  # to the day-90 endpoints
]


def _load(name: str):
    return load_scenario(SCENARIOS / f"{name}.toml", TINY)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    scenarios = [_load("sle_cd19_cart"), _load("sle_rituximab")]
    table, pairs, summary = compare(scenarios, 2, out, seed=7, jobs=1)
    return out, table, pairs, summary


def test_each_patient_enters_every_therapy_from_the_same_state(compared):
    out, table, _, _ = compared
    cd19 = table[table["scenario"] == "sle_cd19_cart"].set_index("patient")
    rtx = table[table["scenario"] == "sle_rituximab"].set_index("patient")
    assert list(cd19["seed"]) == list(rtx["seed"])
    shared = [c for c in table.columns if c.startswith("param:") and ".therapy" not in c]
    shared = [c for c in shared if not c.startswith("param:therapy.")]
    assert shared  # the disease values the first scenario draws
    pd.testing.assert_frame_equal(cd19[shared], rtx[shared])
    for p in (0, 1):
        ends = [
            json.loads((out / arm / f"patient_{p:03d}" / "manifest.json").read_text())["run_in"]
            for arm in ("sle_cd19_cart", "sle_rituximab")
        ]
        assert ends[0]["key"] == ends[1]["key"]
        assert ends[1]["cache"] == "hit"  # the reference arm computed it


def test_a_compared_patient_is_the_run_of_that_patient_from_scratch(compared):
    out, table, _, _ = compared
    row = table[(table["scenario"] == "sle_rituximab") & (table["patient"] == 1)].iloc[0]
    values = {c[len("param:") :]: row[c] for c in table.columns if c.startswith("param:")}
    values = {k: float(v) for k, v in values.items() if pd.notna(v)}
    alone = immunesim.run(
        patient_scenario(_load("sle_rituximab"), values), int(row["seed"]), cache=False
    )
    written = pd.read_parquet(out / "sle_rituximab" / "patient_001" / "timeseries.parquet")
    pd.testing.assert_frame_equal(alone.timeseries, written, check_exact=True)


def test_paired_differences_are_the_patients_own(compared):
    out, table, pairs, summary = compared
    assert len(pairs) and set(pairs["scenario"]) == {"sle_rituximab"}
    both = pairs.dropna(subset=["difference"])
    assert (both["difference"] == both["value"] - both["reference"]).all()
    for _, r in both.iterrows():
        ends = json.loads(
            (out / "sle_rituximab" / f"patient_{r['patient']:03d}" / "endpoints.json").read_text()
        )
        assert float(ends[r["endpoint"]]) == r["value"]
    s = summary["paired_differences"]["sle_rituximab"]["anti_dsdna_day90_relative"]
    d = both[both["endpoint"] == "anti_dsdna_day90_relative"]["difference"]
    assert s["median"] == pytest.approx(d.median()) and s["n"] == len(d)
    assert json.loads((out / "compare_summary.json").read_text())["reference"] == "sle_cd19_cart"


def test_scenarios_with_other_patients_are_refused(tmp_path):
    with pytest.raises(ScenarioError, match=r"molecules|cells|production|lattice") as info:
        compare(
            [_load("sle_cd19_cart"), _load("ssc_cd19_cart")],
            1,
            tmp_path / "x",
            files=["a.toml", "b.toml"],
        )
    assert str(info.value).startswith("b.toml:")
    assert "the same patients as a.toml" in str(info.value)
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_compare_on_the_command_line(cli, tmp_path):
    env = {"IMMUNESIM_CACHE_DIR": str(tmp_path / "cache")}
    sets = [a for o in TINY for a in ("--set", o)]
    files = [SCENARIOS / "sle_cd19_cart.toml", SCENARIOS / "sle_bcma_cd19_cart.toml"]
    done = cli("compare", *files, "--patients", "1", "--jobs", "1", "--out", tmp_path / "c",
               *sets, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sle_bcma_cd19_cart vs sle_cd19_cart" in done.stdout
    pairs = pd.read_csv(tmp_path / "c" / "paired.csv")
    titre = pairs[pairs["endpoint"] == "protective_titre_month3_relative"]
    assert len(titre) == 1  # BCMA targeting takes the plasma cells that hold vaccine titres
    assert titre["difference"].iloc[0] < 0
    assert len(RunInCache(tmp_path / "cache").entries()) == 1
    bad = cli("compare", files[0], SCENARIOS / "ssc_cd19_cart.toml", "--out", tmp_path / "d",
              *sets, env=env)  # fmt: skip
    assert bad.returncode == 2
    assert "error:" in bad.stderr and "Traceback" not in bad.stderr
    assert "ssc_cd19_cart.toml" in bad.stderr
    one = cli("compare", files[0], "--out", tmp_path / "e", env=env)
    assert one.returncode == 2 and "at least two" in one.stderr

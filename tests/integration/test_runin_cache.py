"""The run-in cache: a run forked from a cached run-in is the run from scratch, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest

import immunesim
from immunesim import runin
from immunesim.runin import RunInCache
from immunesim.scenario import load_scenario
from tests.conftest import SCENARIOS, immunesim_cmd

#: One anatomical unit of 40 x 40 sites, two months of run-in: seconds a run.
TINY = [
    "lattice.size=40",
    "lattice.zones.unit_um=400",
    "time.run_in_days=60",
    "time.follow_up_days=45",
]


def _run(name: str, cache, seed: int = 3, extra: list[str] | None = None):
    return immunesim.run(
        SCENARIOS / f"{name}.toml", seed, overrides=TINY + (extra or []), cache=cache
    )


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries, check_exact=True)
    assert a.endpoints == b.endpoints
    assert a.events == b.events


@pytest.mark.parametrize(
    "name",
    [p.stem for p in sorted(SCENARIOS.glob("*.toml"))],
)
def test_every_shipped_scenario_forks_with_the_bits_of_a_run_from_scratch(name, tmp_path):
    cache = RunInCache(tmp_path)
    # long enough for their last therapy (the booster on day 270; BCMA CAR-T on day 330)
    last = {"sle_revaccination": 275, "myositis_reinfusion": 335}.get(name)
    extra = [f"time.follow_up_days={last}"] if last else []
    # the first run computes the whole run (from step 0: the run from scratch) and saves its
    # run-in at the fork as it passes; the second starts there
    first = _run(name, cache, extra=extra)
    again = _run(name, cache, extra=extra)
    assert first.manifest["run_in"]["cache"] == "miss"
    assert first.manifest["run_in"]["from_step"] == 0
    assert again.manifest["run_in"]["cache"] == "hit"
    assert again.manifest["run_in"]["from_step"] == runin.fork_step(
        load_scenario(SCENARIOS / f"{name}.toml", TINY + extra)
    )
    _same(first, again)


def test_therapies_of_the_same_patient_share_one_run_in(tmp_path):
    cache = RunInCache(tmp_path)
    _same(_run("sle_cd19_cart", cache), _run("sle_cd19_cart", False))  # saving changes nothing
    forked = _run("sle_rituximab", cache)
    assert forked.manifest["run_in"]["cache"] == "hit"
    _same(forked, _run("sle_rituximab", False))
    # the untreated course forks later (day 0, no conditioning): it continues the earlier
    # entry to its own fork step and saves that too
    untreated = _run("sle_untreated", cache)
    fork = untreated.manifest["run_in"]
    assert fork["cache"] == "hit" and fork["from_step"] < fork["fork_step"]
    _same(untreated, _run("sle_untreated", False))
    assert len(cache.entries()) == 2


def test_another_seed_or_disease_content_does_not_share(tmp_path):
    cache = RunInCache(tmp_path)
    _run("sle_cd19_cart", cache, seed=3)
    assert _run("sle_cd19_cart", cache, seed=4).manifest["run_in"]["cache"] == "miss"
    other = _run("sle_cd19_cart", cache, extra=["molecules.autoantigen_source_per_day=0.6"])
    assert other.manifest["run_in"]["cache"] == "miss"
    # while what only acts after the fork (the dose, the follow-up, the name) shares
    same = _run(
        "sle_cd19_cart",
        cache,
        extra=["therapy.2.dose_per_kg=2e6", "time.follow_up_days=30", "name=other"],
    )
    assert same.manifest["run_in"]["cache"] == "hit"


def test_the_cd4_pools_rates_share_a_run_in_and_give_the_bits_of_a_run_from_scratch(tmp_path):
    """The pool is at its baseline until the first lymphodepletion (day -5, after the
    fork), so its rates do not touch the run-in; its baseline is in the rows, so it does."""
    cache = RunInCache(tmp_path)
    _run("sle_cd19_cart", cache)
    rates = [
        "cd4.homeostatic_rate_per_day=0.05",
        "cd4.help_follows_pool=0.5",
        "cd4.anti_car_follows_pool=0.25",
    ]
    forked = _run("sle_cd19_cart", cache, extra=rates)
    assert forked.manifest["run_in"]["cache"] == "hit"
    _same(forked, _run("sle_cd19_cart", False, extra=rates))
    other = _run("sle_cd19_cart", cache, extra=["cd4.baseline_per_ul=600"])
    assert other.manifest["run_in"]["cache"] == "miss"


def test_key_ignores_therapies_and_outputs_but_not_the_run_in():
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml", TINY)
    assert runin.key(s) == runin.key(load_scenario(s, ["therapy.2.dose_per_kg=5e6"]))
    assert runin.key(s) == runin.key(load_scenario(s, ["output.parquet=false"]))
    assert runin.key(s) != runin.key(load_scenario(s, ["time.run_in_days=61"]))
    assert runin.key(s) != runin.key(load_scenario(s, ["time.dt_hours=1"]))
    # the immunosuppression in force during the run-in is part of the key
    assert runin.key(s) != runin.key(load_scenario(s, ["therapy.0.activation_factor=0.5"]))


def _scenario(therapy: list[dict]):
    return load_scenario(
        {
            "lattice": {"size": 20, "zones": {"unit_um": 200}},
            "time": {"run_in_days": 10, "follow_up_days": 10, "dt_hours": 2},
            "therapy": therapy,
        }
    )


def test_fork_step_is_the_last_step_before_any_therapy_acts():
    run_in = 10 * 12
    assert runin.fork_step(_scenario([])) == run_in  # untreated: the whole run-in
    ld = {"type": "lymphodepletion", "days": [-5, -4]}
    assert runin.fork_step(_scenario([ld])) == run_in - 5 * 12 - 1
    # immunosuppression that stops on day -6 changes the activation factor in that step
    soc = {"type": "standard_of_care", "stop_day": -6}
    assert runin.fork_step(_scenario([soc, ld])) == run_in - 6 * 12 - 1
    # one that starts on day -8 likewise
    late = {"type": "standard_of_care", "start_day": -8}
    assert runin.fork_step(_scenario([late, ld])) == run_in - 8 * 12 - 1
    # a rituximab course acts from its first infusion on
    cd20 = {"type": "anti_cd20", "days": [-2, 5]}
    assert runin.fork_step(_scenario([cd20])) == run_in - 2 * 12 - 1
    # flare triggers met at random act from their start day, whatever the seed draws
    flares = {"type": "flare_triggers", "rate_per_year": 50, "start_day": -3}
    assert runin.fork_step(_scenario([flares])) == run_in - 3 * 12 - 1
    # lattice snapshots are taken as the run passes: the fork comes before the first
    s = load_scenario(_scenario([ld]), ["output.snapshot_every_hours=24"])
    s = load_scenario(s, ["output.snapshot_from_day=-7"])
    assert runin.fork_step(s) == run_in - 7 * 12 - 1


def test_a_damaged_entry_is_computed_again(tmp_path):
    cache = RunInCache(tmp_path)
    scratch = _run("sle_cd19_cart", False)
    _run("sle_cd19_cart", cache)
    (entry,) = cache.entries()
    entry.write_bytes(entry.read_bytes()[:1000])  # cut short, as by a full disk
    again = _run("sle_cd19_cart", cache)
    assert again.manifest["run_in"]["cache"] == "miss"
    _same(scratch, again)
    (entry,) = cache.entries()  # written anew, whole
    assert _run("sle_cd19_cart", cache).manifest["run_in"]["cache"] == "hit"


def test_the_cache_keeps_within_its_bound_dropping_the_least_recently_used(tmp_path):
    cache = RunInCache(tmp_path)
    for seed in (3, 4, 5):
        _run("sle_cd19_cart", cache, seed=seed)
        os.utime(cache.entries()[-1], (1e9 + seed, 1e9 + seed))  # distinct use times
    files = cache.entries()
    assert len(files) == 3
    seed3 = next(f for f in files if f.parent.name == "seed-3")
    os.utime(seed3)  # just used: it stays
    largest_other = max(f.stat().st_size for f in files if f != seed3)
    # room for seed 3 and either other entry, not for all three
    bounded = RunInCache(tmp_path, max_bytes=seed3.stat().st_size + largest_other + 1)
    bounded.evict()
    left = {f.parent.name for f in bounded.entries()}
    assert len(left) == 2 and "seed-3" in left
    assert bounded.info()["bytes"] <= bounded.max_bytes


def test_cache_off_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IMMUNESIM_CACHE", "off")
    monkeypatch.setenv("IMMUNESIM_CACHE_DIR", str(tmp_path))
    assert _run("sle_cd19_cart", None).manifest["run_in"]["cache"] == "off"
    assert not list(tmp_path.iterdir())


def test_cache_commands_show_and_clear_it(tmp_path):
    env = {**os.environ, "IMMUNESIM_CACHE_DIR": str(tmp_path / "c")}
    _run("sle_cd19_cart", RunInCache(tmp_path / "c"))
    info = subprocess.run(
        immunesim_cmd() + ["cache", "info"], env=env, capture_output=True, text=True
    )
    assert info.returncode == 0
    assert "run-ins: 1 (1 scenario contents)" in info.stdout
    cleared = subprocess.run(
        immunesim_cmd() + ["cache", "clear"], env=env, capture_output=True, text=True
    )
    assert cleared.returncode == 0 and "removed 1 run-ins" in cleared.stdout
    assert RunInCache(tmp_path / "c").entries() == []


def test_run_no_cache_on_the_command_line(tmp_path):
    env = {**os.environ, "IMMUNESIM_CACHE_DIR": str(tmp_path / "c")}
    args = [str(SCENARIOS / "sle_cd19_cart.toml"), "-q"] + [a for o in TINY for a in ("--set", o)]
    for flag, expected in ((["--no-cache"], "off"), ([], "miss")):
        out = tmp_path / f"run{expected}"
        done = subprocess.run(
            immunesim_cmd() + ["run", *args, "--out", str(out), *flag],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads((out / "manifest.json").read_text())["run_in"]["cache"] == expected

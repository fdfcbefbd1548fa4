"""Every scenario shipped in scenarios/ validates and runs at reduced size, so none can rot."""

from __future__ import annotations

import pytest

import immunesim
from immunesim.scenario import read_toml
from tests.conftest import SCENARIOS

FILES = sorted(SCENARIOS.glob("*.toml"))


def test_the_default_scenarios_are_shipped():
    names = {f.name for f in FILES}
    assert {"sle_untreated.toml", "sle_cd19_cart.toml"} <= names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_scenario_runs_at_reduced_size(path):
    s = immunesim.load_scenario(path)
    assert s.lattice.size >= 100, "shipped scenarios are full size; tests shrink them"
    assert s.time.follow_up_days >= 540
    # shrunk to 32 x 32 sites and days -10..12: the therapies after day 12 are left out (a
    # scenario may not schedule a therapy outside its run), and the doses scaled so that the
    # small lattice still receives CAR-T agents
    data = read_toml(path)
    lattice = data.get("lattice", {})
    data["lattice"] = {**lattice, "size": 32, "zones": {**lattice.get("zones", {}), "unit_um": 320}}
    data["time"] = {**data.get("time", {}), "run_in_days": 10, "follow_up_days": 12}
    kept = []
    for t in data.get("therapy", []):
        if "days" in t:
            t["days"] = [d for d in t["days"] if -10 <= d <= 12]
            if not t["days"]:
                continue
        elif not -10 <= t.get("day", 0.0) <= 12:
            continue
        if t["type"] == "car_t":
            t["dose_per_kg"] = max(t.get("dose_per_kg", 1e6), 1e6)
        kept.append(t)
    data["therapy"] = kept
    res = immunesim.run(data)
    df = res.timeseries
    assert len(df) == 23
    counts = df[["naive_b", "t_helper", "llpc"]]
    assert (counts.iloc[0] > 0).all(), "the initial state holds B cells, T helpers and LLPCs"
    assert not df.isna().all().any()
    # every therapy scheduled inside the shortened run happened (flare triggers met at
    # random may fall outside it)
    planned = {
        t.type
        for t in s.therapy
        if t.type not in ("standard_of_care", "flare_triggers")
        and min(getattr(t, "days", None) or [getattr(t, "day", 0.0)]) <= 12
    }
    happened = {e["kind"] for e in res.events}
    assert planned <= happened

"""Checkpoints: a saved simulation goes on with the same bits; bad files are refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import immunesim
from immunesim import checkpoint
from immunesim.checkpoint import CheckpointError
from immunesim.engine import Simulation
from immunesim.scenario import ScenarioError, load_scenario
from tests.conftest import SCENARIOS

SHORT = [
    "lattice.size=24",
    "lattice.zones.unit_um=240",
    "time.run_in_days=6",
    "time.follow_up_days=8",
]


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIOS / "sle_cd19_cart.toml", SHORT)


@pytest.mark.parametrize("offset", [-50, 0, 1, 37])  # before, at and after the infusion
def test_save_and_load_go_on_as_if_never_stopped(scenario, tmp_path, offset):
    whole = Simulation(scenario, seed=11).run()
    part = Simulation(scenario, seed=11)
    part.run(until_step=scenario.run_in_steps + offset)
    part.save(tmp_path / "c.npz")
    back = Simulation.load(tmp_path / "c.npz")
    assert back.step_index == part.step_index and back.seed == 11
    back.run()
    # the time series as written (CSV bytes), the events and the final state
    assert pd.DataFrame(back.rows).to_csv() == pd.DataFrame(whole.rows).to_csv()
    assert [e.__dict__ for e in back.events] == [e.__dict__ for e in whole.events]
    assert back.infused_car_t == whole.infused_car_t > 0
    n = whole.state.n
    assert back.state.n == n and back.state.next_uid == whole.state.next_uid
    for name in ("uid", "kind", "spec", "x", "y", "state", "counter", "age", "car_mask"):
        a, b = getattr(back.state, name), getattr(whole.state, name)
        np.testing.assert_array_equal(a[:n], b[:n], err_msg=name)  # slots >= n are unused
    for name in ("mol", "occ", "ledger"):
        np.testing.assert_array_equal(getattr(back.state, name), getattr(whole.state, name))


def test_immunosuppression_in_force_is_restored(tmp_path):
    s = load_scenario(SCENARIOS / "sle_cd19_cart.toml", SHORT + ["therapy.0.stop_day=3.0"])
    sim = Simulation(s, seed=2)
    sim.run(until_step=s.run_in_steps + 10)
    assert sim.course.factor is not None and sim.course.factor < 1.0
    sim.save(tmp_path / "c.npz")
    back = Simulation.load(tmp_path / "c.npz")
    assert back.course.factor == sim.course.factor
    np.testing.assert_array_equal(back.params.k.lut_naive, sim.params.k.lut_naive)


def test_a_damaged_checkpoint_is_refused_clearly(scenario, tmp_path):
    path = Simulation(scenario, seed=1).save(tmp_path / "c.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable immunesim checkpoint"):
        Simulation.load(tmp_path / "cut.npz")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Simulation.load(tmp_path / "none.npz")


def test_a_checkpoint_of_another_model_description_is_refused(scenario, tmp_path):
    path = Simulation(scenario, seed=1).save(tmp_path / "c.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["description"]["kinds"].append("toy_b")
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(CheckpointError, match="another model description"):
        checkpoint.read(tmp_path / "other.npz")


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, "3", True])
def test_the_api_refuses_a_bad_seed_as_the_cli_does(seed):
    with pytest.raises(ScenarioError, match="seed"):
        immunesim.run({"lattice": {"size": 16, "zones": {"unit_um": 160}}}, seed=seed)


def test_a_single_override_string_is_one_override():
    r = immunesim.run(
        {"time": {"run_in_days": 1, "follow_up_days": 1}, "lattice": {"zones": {"unit_um": 160}}},
        seed=1,
        overrides="lattice.size=16",
    )
    assert r.manifest["lattice_sites"] == 16 * 16


def test_a_manifest_that_says_running_is_stale_once_its_process_is_gone():
    import os
    import socket
    import subprocess
    import sys

    from immunesim.runner import run_state

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    here = socket.gethostname()

    def manifest(pid, host=here, status="running"):
        return {"status": status, "process": {"pid": pid, "host": host}}

    assert run_state(manifest(os.getpid())) == "running"
    assert run_state(manifest(int(gone.stdout))) == "stale"
    # on another host this host cannot tell: it is taken at its word
    assert run_state(manifest(int(gone.stdout), host="elsewhere")) == "running"
    assert run_state(manifest(os.getpid(), status="interrupted")) == "interrupted"
    assert run_state({}) == "none"

"""A toy cell kind, molecular layer and therapy added through the model description alone.

``tests/fixtures/toy_extension.py`` declares them with :mod:`immunesim.extend` (nothing in
the package names them); ``tests/fixtures/run_toy.py`` runs a small scenario with them on
the CPU backend and in numba's CUDA simulator, in a process of its own (the kinds are fixed
when immunesim is imported, and the kernels are compiled for them).
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy() -> dict:
    env = dict(os.environ)
    env["IMMUNESIM_EXTENSIONS"] = "toy_extension"
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), str(REPO), env.get("PYTHONPATH", "")])
    env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run(
        [sys.executable, str(FIXTURES / "run_toy.py"), "--cuda"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def _series(toy: dict, run: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(toy[run]["csv"]))


def test_the_extension_joins_the_description(toy):
    # appended after the built-in ones, which keep their codes
    assert toy["kinds"][-1] == "toy_b" and toy["toy_code"] == len(toy["kinds"]) - 1
    assert toy["kinds"].index("car_t") == 6
    assert toy["layers"][-1] == "toy_signal"
    assert "toy_ablation" in toy["therapy_types"]


def test_toy_kind_is_seeded_counted_and_in_the_outputs(toy):
    df = _series(toy, "numba 2")
    # the B lineage's autoreactive column comes with the kind
    assert {"toy_b", "toy_b_self", "toy_signal"} <= set(df.columns)
    # seeded at 0.3 per lymphoid site (a free site's draw): binomial, 4 standard deviations
    n = toy["lymphoid_sites"]
    mean, sd = 0.3 * n, math.sqrt(n * 0.3 * 0.7)
    assert abs(df["toy_b"].iloc[0] - mean) < 4 * sd
    # bearing CD19, it counts among the B cells
    assert (df["b_cells"] >= df["toy_b"] + df["naive_b"]).all()


def test_toy_layer_is_secreted_at_the_scenario_rate(toy):
    two, four, none = (_series(toy, f"numba {r}") for r in ("2", "4", "0"))
    # the signal does not act on cells, so the cells are the same in the three runs
    pd.testing.assert_series_equal(two["toy_b"], four["toy_b"])
    assert (none["toy_signal"] == 0).all()
    assert two["toy_signal"].iloc[-1] > 0
    # secretion is linear in the [molecules] key; integer rounding of the per-step amount
    # and of the decay leaves well under 1e-3 relative
    late = two["toy_signal"].iloc[1:]
    ratio = four["toy_signal"].iloc[1:] / late
    assert ((ratio - 2.0).abs() < 1e-3).all(), ratio


def test_toy_therapy_acts_on_its_day(toy):
    df = _series(toy, "numba 2")
    (event,) = [e for e in toy["numba 2"]["events"] if e["kind"] == "toy_ablation"]
    assert event["day"] == 0.5 and event["killed"] > 0
    before = df.loc[df["day"] < 0.5, "toy_b"].iloc[-1]
    after = df.loc[df["day"] >= 0.5, "toy_b"].iloc[0]
    # 95% of the CD19+ cells of the lymphoid zone, where toy B cells live and stay
    assert after < 0.3 * before


def test_cuda_backend_runs_the_extension_to_the_same_bits(toy):
    assert toy["cuda 2"]["csv"] == toy["numba 2"]["csv"]
    assert toy["cuda 2"]["events"] == toy["numba 2"]["events"]

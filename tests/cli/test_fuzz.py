"""Fuzzing the inputs: whatever a user types ends in exit 0 or in one ``error:`` line with
exit 2, never a traceback, never a run beyond the budget, never a damaged earlier run."""

from __future__ import annotations

import importlib.util
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immunesim.engine.course import Course
from immunesim.engine.parameters import build_params
from immunesim.scenario import WORK_BUDGET, ScenarioError, check_budget, load_scenario
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("fuzz_inputs", REPO / "scripts" / "fuzz_inputs.py")
assert _spec is not None and _spec.loader is not None
fuzz_inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_inputs)
KEYS = fuzz_inputs.schema_keys()
BASE = fuzz_inputs.BASE_TOML


def test_a_pass_of_the_command_line_fuzzer_finds_nothing():
    # 150 random command lines (validate and run, overrides, options, file contents); the
    # same generator with more cases: python scripts/fuzz_inputs.py --cases 400
    result = fuzz_inputs.fuzz(150, seed=20261130)
    assert result["failures"] == [], result
    assert result["tally"].get("ok", 0) > 0 and result["tally"].get("bad input", 0) > 0


toml_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda x: "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x)
        else repr(x)
    ),
    st.sampled_from(["true", "false", '""', '"CD19"', "[]", "[1, 2]", '["CD19", "BCMA"]', "{}"]),
    st.text(max_size=8).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), toml_values), min_size=1, max_size=3))
def test_any_override_is_refused_clearly_or_gives_a_runnable_scenario(tmp_path_factory, sets):
    path = tmp_path_factory.getbasetemp() / "fuzz_base.toml"
    if not path.exists():
        path.write_text(BASE)
    try:
        s = load_scenario(path, [f"{k}={v}" for k, v in sets])
        check_budget(s, file=str(path))
    except ScenarioError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    # accepted: within the budget, and the run's parameters and schedule can be made
    assert s.work() <= WORK_BUDGET
    build_params(s)
    Course(s, 0, lambda factor: None)

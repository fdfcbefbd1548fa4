"""``--overwrite`` replaces an earlier immunesim output, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from immunesim.runner import prepare_out
from immunesim.scenario import ScenarioError


def _run(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"immunesim_manifest": 1}))
    (d / "timeseries.csv").write_text("day\n0\n")


def _comparison(root: Path) -> None:
    """What ``immunesim compare`` writes: its tables, and a cohort of runs per arm."""
    root.mkdir()
    for name in ("compare.csv", "paired.csv", "compare_summary.json"):
        (root / name).write_text("{}")
    for arm in ("sle_cd19_cart", "sle_rituximab"):
        (root / arm).mkdir()
        (root / arm / "cohort.csv").write_text("patient\n0\n")
        for k in range(2):
            _run(root / arm / f"patient_{k:03d}")


def _cohort(d: Path) -> None:
    d.mkdir()
    (d / "cohort.csv").write_text("patient\n0\n")
    _run(d / "patient_000")


@pytest.mark.parametrize("kind", ["run", "cohort", "comparison", "calibration", "fit"])
def test_an_earlier_output_is_replaced_with_overwrite(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "run":
        _run(out)
    elif kind == "cohort":
        _cohort(out)
    elif kind == "calibration":  # its table, and a cohort per point of its grid
        out.mkdir()
        (out / "calibration.json").write_text("{}")
        _cohort(out / "point_00")
    elif kind == "fit":  # tables only
        out.mkdir()
        for name in ("fit.json", "trials.csv", "runs.csv"):
            (out / name).write_text("{}")
    else:
        _comparison(out)
    with pytest.raises(ScenarioError, match="--overwrite"):
        prepare_out(out)
    assert prepare_out(out, overwrite=True) == out
    assert list(out.iterdir()) == []


def test_a_comparison_holding_something_else_is_left_alone(tmp_path):
    out = tmp_path / "out"
    _comparison(out)
    (out / "sle_rituximab" / "notes").mkdir()
    (out / "sle_rituximab" / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ScenarioError, match="left as it is"):
        prepare_out(out, overwrite=True)
    assert (out / "sle_rituximab" / "notes" / "thesis.tex").read_text() == "precious"
    assert (out / "compare.csv").exists()

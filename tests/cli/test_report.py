"""`immunesim report`: published targets marked met or missed, figures, self-contained HTML."""

from __future__ import annotations

import re
import subprocess

import pytest

import immunesim
from immunesim.report import Target, load_targets
from tests.conftest import SCENARIOS, immunesim_cmd


def test_targets_are_shipped_with_their_sources():
    targets = load_targets()
    names = {t.name for t in targets}
    assert {
        "b_cell_reconstitution_day",
        "anti_dsdna_seronegative_month3",
        "vaccine_titres_month12",
        "car_t_peak_day",
        "drug_free_remission_lasts",
    } <= names
    for t in targets:
        assert t.source and t.published and t.tolerance
        assert (t.low is not None and t.high is not None) or t.expected is not None


def test_target_verdicts():
    t = Target("x", "e", "p", "tol", "s", low=78.0, high=142.0)
    assert t.met(110) and t.met(78.0) and not t.met(150) and t.met(None) is None
    flag = Target("y", "e", "p", "tol", "s", expected=True)
    assert flag.met(True) and not flag.met(False) and flag.met(None) is False


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    small = [
        "lattice.size=40",
        "lattice.zones.unit_um=400",
        "time.run_in_days=40",
        "time.follow_up_days=120",
        # 14 CAR-T agents on this small lattice rather than 3, which can die out before
        # they find a target (seed 1 did: its BCMA+CD19 run kept every plasma cell)
        "therapy.2.dose_per_kg=5e6",
    ]
    for name in ("sle_cd19_cart", "sle_bcma_cd19_cart"):
        immunesim.run(SCENARIOS / f"{name}.toml", seed=1, overrides=small, out=base / name)
    return base


def test_markdown_report(two_runs, tmp_path):
    out = tmp_path / "r.md"
    proc = subprocess.run(
        [
            *immunesim_cmd(),
            "report",
            str(two_runs / "sle_cd19_cart"),
            str(two_runs / "sle_bcma_cd19_cart"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert (tmp_path / "r_files" / "course.png").stat().st_size > 10_000
    # one table row per target, one verdict per run in each row
    for t in load_targets():
        row = next(
            line for line in text.splitlines() if line.startswith(f"| {t.name.replace('_', ' ')} |")
        )
        assert len(re.findall(r"\((met|MISSED|n/a)\)", row)) == 2
    # the verdicts agree with the endpoints: BCMA+CD19 loses the vaccine titres
    import json

    ends = json.loads((two_runs / "sle_bcma_cd19_cart" / "endpoints.json").read_text())
    assert ends["protective_titre_month3_relative"] < 0.8
    row = next(line for line in text.splitlines() if line.startswith("| vaccine titres month3"))
    cells = [c.strip() for c in row.strip(" |").split(" | ")]
    assert cells[-2].endswith("(MISSED)")  # the BCMA+CD19 run's cell; the source comes last


def test_html_report_is_self_contained(two_runs, tmp_path):
    out = tmp_path / "r.html"
    proc = subprocess.run(
        [*immunesim_cmd(), "report", str(two_runs / "sle_cd19_cart"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = out.read_text()
    sources = re.findall(r'src="([^"]+)"', doc)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in doc and "http" not in doc


def test_report_refuses_what_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [*immunesim_cmd(), "report", str(tmp_path), "--out", str(tmp_path / "r.md")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr

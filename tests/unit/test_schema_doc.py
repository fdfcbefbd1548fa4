"""The generated scenario reference is complete and the committed copy is current."""

from __future__ import annotations

from immunesim.scenario import Scenario
from immunesim.schema_doc import reference_markdown
from tests.conftest import REPO


def test_committed_reference_is_current():
    committed = (REPO / "docs" / "scenarios.md").read_text()
    assert committed == reference_markdown(), "run: immunesim schema > docs/scenarios.md"


def test_reference_lists_every_key_with_its_default():
    text = reference_markdown()
    for section in ("lattice", "time", "cells.naive_b", "molecules", "endpoints"):
        assert f"### `{section}`" in text
    assert "| `dose_per_kg` | float | `1000000.0` |" in text
    assert "| `antibody_half_life_days` | float | `21.0` |" in text
    for name in Scenario.model_fields["molecules"].annotation.model_fields:
        assert f"| `{name}` |" in text

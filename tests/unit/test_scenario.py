"""Scenario loading: documented defaults, unit conversion, cross-field checks, overrides and
keyed errors (immunesim.scenario)."""

from __future__ import annotations

import copy
import math
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from immunesim import scenario as sc
from immunesim.model.cells import Marker
from immunesim.scenario import Scenario, ScenarioError, load_scenario, targets_mask
from tests.conftest import SCENARIOS, SMALL_SCENARIO_TOML


def base() -> dict[str, Any]:
    """A small valid scenario: therapy.0 lymphodepletion, therapy.1 CAR-T, therapy.2 a
    tetanus vaccination."""
    return {
        "name": "unit",
        "lattice": {"size": 32, "zones": {"unit_um": 320}},
        "time": {"run_in_days": 5.0, "follow_up_days": 5.0},
        "therapy": [
            {"type": "lymphodepletion", "days": [-5, -4, -3]},
            {"type": "car_t", "day": 0, "dose_per_kg": 1.0e6, "targets": ["CD19"]},
            {"type": "vaccination", "day": 2, "antigen": "tetanus"},
        ],
    }


BASE_TOML = SMALL_SCENARIO_TOML


def reject(source, overrides=None) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(source, overrides)
    return info.value


# --------------------------------------------------------------------------- defaults


def test_an_empty_scenario_takes_every_default():
    s = load_scenario({})
    assert s == Scenario()
    assert s.lattice.size == 200
    assert s.time.dt_hours == 1.0
    assert s.specificities.vaccines == ["tetanus", "measles"]
    assert s.cells.naive_b.lifespan_days == 40.0
    assert s.therapy == [] and s.variability == []


def test_a_file_with_only_a_name_takes_every_default(tmp_path):
    path = tmp_path / "named.toml"
    path.write_text('name = "named"\n')
    s = load_scenario(path)
    assert s.name == "named"
    assert s.model_dump(exclude={"name"}) == Scenario().model_dump(exclude={"name"})


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (list[...], unions, Annotated, Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _walk(model: type[BaseModel], prefix: str, sections: list, leaves: list) -> None:
    sections.append((prefix or "(top level)", model))
    for name, field in model.model_fields.items():
        sub = _models(field.annotation)
        if typing.get_origin(field.annotation) is list and sub:
            key = f"{prefix}.{name}" if prefix else name
            for m in sub:  # list entries: one section per entry type
                tag = m.model_fields.get("type")
                suffix = typing.get_args(tag.annotation)[0] if tag else "N"
                _walk(m, f"{key}.{suffix}", sections, leaves)
        elif sub:
            _walk(sub[0], f"{prefix}.{name}" if prefix else name, sections, leaves)
        else:
            leaves.append((f"{prefix}.{name}" if prefix else name, field))


SECTIONS: list = []
LEAVES: list = []
_walk(Scenario, "", SECTIONS, LEAVES)

# Fields that once had no description (they showed an empty "meaning" in docs/scenarios.md).
ONCE_UNDOCUMENTED = {
    "therapy.lymphodepletion.type",
    "therapy.car_t.type",
    "therapy.anti_cd20.type",
    "therapy.vaccination.type",
    "therapy.standard_of_care.type",
    "therapy.anti_cd20.targets",
}


def test_the_schema_walk_reaches_every_section():
    keys = {k for k, _ in LEAVES}
    assert len(LEAVES) > 150
    for key in (
        "lattice.size",
        "lattice.zones.marrow",
        "cells.car_t.lifespan_days",
        "therapy.car_t.dose_per_kg",
        "therapy.vaccination.antigen",
        "variability.N.key",
        "run.seed",
        "name",
    ):
        assert key in keys
    assert ONCE_UNDOCUMENTED <= keys


@pytest.mark.parametrize("key,field", [(k, f) for k, f in LEAVES], ids=[k for k, _ in LEAVES])
def test_every_field_has_a_description(key, field):
    assert (field.description or "").strip(), f"{key} has no description"


@pytest.mark.parametrize("key,model", SECTIONS, ids=[k for k, _ in SECTIONS])
def test_every_section_has_a_docstring(key, model):
    # Tables (lattice, cells.naive_b, ...) are documented by their class docstring: it heads
    # their section of the reference (immunesim schema).
    assert (model.__doc__ or "").strip(), f"section {key} ({model.__name__}) has no docstring"


# --------------------------------------------------------------------------- time units


@pytest.mark.parametrize("dt_hours", [0.25, 0.5, 1.0, 3.0, 7.0, 24.0])
@pytest.mark.parametrize("run_in_days", [0.0, 10.0, 10.3])
def test_step_and_day_round_trip(dt_hours, run_in_days):
    s = load_scenario(
        {
            "time": {
                "dt_hours": dt_hours,
                "run_in_days": run_in_days,
                "follow_up_days": 20.0,
                "sample_every_hours": 24.0,
            }
        }
    )
    assert s.steps_per_day == pytest.approx(24.0 / dt_hours)
    assert s.day_of_step(s.run_in_steps) == 0.0
    assert s.step_of_day(0.0) == s.run_in_steps
    for step in range(0, s.total_steps + 1, max(1, s.total_steps // 97)):
        day = s.day_of_step(step)
        assert s.step_of_day(day) == step, (step, day)
        assert day == pytest.approx((step - s.run_in_steps) * dt_hours / 24.0)


@pytest.mark.parametrize("day", [-4.99, -1.0, -0.01, 0.01, 0.5, 1.0 / 3.0, 2.04, 19.9])
def test_step_of_day_is_the_first_step_at_or_after_the_day(day):
    s = load_scenario({"time": {"dt_hours": 1.0, "run_in_days": 5.0, "follow_up_days": 20.0}})
    step = s.step_of_day(day)
    assert s.day_of_step(step) >= day - 1e-12
    assert s.day_of_step(step - 1) < day


def test_run_length_in_steps():
    s = load_scenario({"time": {"dt_hours": 0.5, "run_in_days": 3.0, "follow_up_days": 4.0}})
    assert s.run_in_steps == 144
    assert s.total_steps == 144 + 192


# --------------------------------------------------------------------------- therapies


def test_car_t_with_two_targets_validates():
    data = base()
    data["therapy"][1]["targets"] = ["CD19", "BCMA"]
    s = load_scenario(data)
    assert s.therapy[1].targets == ["CD19", "BCMA"]
    assert targets_mask(s.therapy[1].targets) == (1 << Marker.CD19) | (1 << Marker.BCMA)


def test_a_second_car_t_product_with_other_targets_dose_and_day_validates():
    data = base()
    data["therapy"].append(
        {"type": "car_t", "day": 3, "dose_per_kg": 3e5, "targets": ["BCMA"], "label": "BCMA"}
    )
    s = load_scenario(data)
    assert [t.targets for t in s.therapy if t.type == "car_t"] == [["CD19"], ["BCMA"]]


@pytest.mark.parametrize("key,value", [("kill_rate_per_day", 12.0), ("max_generations", 4)])
def test_car_t_products_with_other_kinetics_are_rejected_not_ignored(key, value):
    # the kinetics of every CAR-T cell come from one set of rates: a second entry that
    # asked for others would otherwise be silently run with the first one's
    data = base()
    first = [t["type"] for t in data["therapy"]].index("car_t")
    data["therapy"].append({"type": "car_t", "day": 3, key: value})
    err = reject(data)
    assert err.key == f"therapy.{len(data['therapy']) - 1}.{key}"
    assert f"therapy.{first}" in err.expected and "share their kinetics" in err.expected


@pytest.mark.parametrize(
    "index,entry",
    [
        (1, {"type": "car_t", "day": 0, "targets": ["CD19", "CD99"]}),
        (0, {"type": "lymphodepletion", "days": [-3], "targets": ["CD3", "CD99"]}),
        (1, {"type": "anti_cd20", "days": [0], "targets": ["CD20", "CD99"]}),
    ],
)
def test_unknown_marker_is_rejected_naming_its_key_path(index, entry):
    data = base()
    data["therapy"][index] = entry
    err = reject(data)
    assert err.file == "<dict>"
    assert err.key == f"therapy.{index}.targets.1"
    assert "'CD99'" in err.expected
    assert "a marker, one of CD19, CD20, BCMA, CD3, CD4" in err.expected
    assert str(err) == f"<dict>: therapy.{index}.targets.1: {err.expected}"


def test_unknown_marker_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "cd99.toml"
    path.write_text(BASE_TOML.replace('targets = ["CD19"]', 'targets = ["CD99"]'))
    err = reject(path)
    assert (err.file, err.key) == (str(path), "therapy.1.targets.0")
    assert str(err).startswith(f"{path}: therapy.1.targets.0: a marker")


def test_vaccination_with_a_known_antigen_validates():
    data = base()
    data["specificities"] = {"vaccines": ["tetanus", "measles", "influenza"]}
    data["therapy"][2]["antigen"] = "influenza"
    assert load_scenario(data).therapy[2].antigen == "influenza"


def test_vaccination_with_an_unknown_antigen_is_rejected():
    data = base()
    data["therapy"][2]["antigen"] = "influenza"
    err = reject(data)
    assert err.key == "therapy.2.antigen"
    assert "specificities.vaccines" in err.expected
    assert "'influenza'" in err.expected
    assert "tetanus" in err.expected and "measles" in err.expected


def test_vaccination_antigen_is_checked_against_this_scenarios_vaccines():
    data = base()
    data["specificities"] = {"vaccines": ["measles"]}  # tetanus no longer a vaccine here
    err = reject(data)
    assert err.key == "therapy.2.antigen"
    assert "'tetanus'" in err.expected


# --------------------------------------------------------------------------- keyed errors


@pytest.mark.parametrize(
    "change,key,words",
    [
        ({"lattice": {"sise": 3}}, "lattice.sise", "unknown key"),
        ({"lattice": {"size": "big"}}, "lattice.size", "valid integer"),
        ({"lattice": {"size": 4}}, "lattice.size", "greater than or equal to 8"),
        ({"time": {"dt_hours": 0}}, "time.dt_hours", "greater than or equal to 0.001"),
        (
            {"time": {"dt_hours": 2, "sample_every_hours": 1}},
            "time.sample_every_hours",
            "at least time.dt_hours",
        ),
        ({"molecules": {"diffusion": 0.1}}, "molecules.diffusion", "unknown key"),
        ({"lattice": {"size": 150}}, "lattice.size", "such as 100 or 200"),
        ({"lattice": {"size": 50}}, "lattice.size", "unit_um to 500"),
        (
            {
                "cells": {
                    "naive_b": {"lifespan_days": -4, "move_rate_per_day": 1, "home": "lymphoid"}
                }
            },
            "cells.naive_b.lifespan_days",
            "greater than 0",
        ),
        ({"specificities": {"vaccines": []}}, "specificities.vaccines", "at least 1"),
        ({"specificities": {"vaccines": ["self"]}}, "specificities.vaccines", "not self/other"),
        (
            {
                "variability": [
                    {"key": "lattice.nothing", "distribution": "uniform", "low": 0, "high": 1}
                ]
            },
            "variability.0.key",
            "numeric scenario value",
        ),
        ({"schema_version": 3}, "schema_version", "schema_version 2"),
        ({"schema_version": 1}, "schema_version", "diffusion_um2_per_day"),
    ],
)
def test_errors_name_the_key_path_and_what_was_expected(change, key, words):
    data = base()
    data.update(change)
    err = reject(data)
    assert err.key == key
    assert words in err.expected


@pytest.mark.parametrize(
    "content,words",
    [
        (None, "file not found"),
        ("", "empty"),
        ("  \n\n", "empty"),
        ("[lattice\n", "valid TOML"),
        (b"\xff\xfe\x00", "UTF-8"),
    ],
)
def test_unreadable_files_are_scenario_errors(tmp_path, content, words):
    path = tmp_path / "s.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    err = reject(path)
    assert (err.file, err.key) == (str(path), "")
    assert words in err.expected
    assert str(err) == f"{path}: {err.expected}"


def test_a_directory_is_not_a_scenario(tmp_path):
    err = reject(tmp_path)
    assert (err.file, err.key) == (str(tmp_path), "")
    assert "not a directory" in err.expected


def test_lattice_too_large_for_memory(monkeypatch):
    monkeypatch.setattr(sc, "_available_memory", lambda: 1 << 30)  # a 1 GiB machine
    per_site = sc.bytes_per_site(2)
    fits = int(math.sqrt(0.8 * (1 << 30) / per_site))  # largest side that fits
    one_unit = {"layout": "file", "file": "zones.npy"}  # any size: zones are read at run time
    assert load_scenario({"lattice": {"size": fits, "zones": one_unit}}).lattice.size == fits
    err = reject({"lattice": {"size": fits + 1, "zones": one_unit}})
    assert err.key == "lattice.size"
    assert "a lattice that fits in memory" in err.expected
    assert f"{fits + 1}^2 sites" in err.expected and "1.0 GiB" in err.expected


# --------------------------------------------------------------------------- overrides


def test_override_changes_a_list_entry_by_index(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE_TOML)
    assert load_scenario(path).therapy[1].dose_per_kg == 1.0e6
    s = load_scenario(path, ["therapy.1.dose_per_kg=5e5"])
    assert s.therapy[1].dose_per_kg == 5.0e5
    assert s.therapy[0].days == [-5, -4, -3]  # nothing else moved


def test_overrides_are_read_as_toml_values(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE_TOML)
    s = load_scenario(
        path,
        [
            "therapy.1.targets=['CD19', 'BCMA']",
            "lattice.size=64",
            "lattice.zones.unit_um=640",
            "time.follow_up_days=12.5",
            "output.parquet=false",
            "name=renamed",  # a bare word is a string
            'description="with spaces = ok"',  # the first '=' splits key from value
            "lattice.zones.marrow=0.3",
            "lattice.zones.tissue=0.35",  # a nested table
            "therapy.1.targets.0=BCMA",  # a list item of a list entry
        ],
    )
    assert s.therapy[1].targets == ["BCMA", "BCMA"]
    assert s.lattice.size == 64 and s.time.follow_up_days == 12.5
    assert s.output.parquet is False
    assert s.name == "renamed" and s.description == "with spaces = ok"
    assert (s.lattice.zones.marrow, s.lattice.zones.tissue) == (0.3, 0.35)


def test_overrides_apply_in_order():
    s = load_scenario(base(), ["lattice.size=64", "lattice.size=48", "lattice.zones.unit_um=480"])
    assert s.lattice.size == 48


def test_override_of_a_section_missing_from_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "bare"\n')
    s = load_scenario(path, ["molecules.antibody_half_life_days=30"])
    assert s.molecules.antibody_half_life_days == 30.0
    assert s.molecules.binding_rate == Scenario().molecules.binding_rate


def test_override_of_a_loaded_scenario_leaves_it_unchanged():
    s = load_scenario(base())
    t = load_scenario(s, ["therapy.1.dose_per_kg=2e6"])
    assert t.therapy[1].dose_per_kg == 2e6
    assert s.therapy[1].dose_per_kg == 1e6
    assert load_scenario(s) is s  # nothing to apply


@pytest.mark.parametrize(
    "override,key,words",
    [
        ("lattice.size=abc", "lattice.size", "valid integer"),
        ("therapy.9.day=1", "therapy.9", "an index below 2"),
        ("therapy.x.day=1", "therapy.x", "an index below 2"),
        ("therapy.1.targets.5=CD20", "therapy.1.targets.5", "an index below 1"),
        ("lattice.size.x=1", "lattice.size", "a table"),
        ("therapy.1.dose_per_kg=-1", "therapy.1.dose_per_kg", "greater than or equal to 0"),
        ("lattice.nonsense=1", "lattice.nonsense", "unknown key"),
    ],
)
def test_bad_override_names_the_file_and_key(tmp_path, override, key, words):
    path = tmp_path / "s.toml"
    path.write_text(BASE_TOML)
    err = reject(path, [override])
    assert (err.file, err.key) == (str(path), key)
    assert words in err.expected


@pytest.mark.parametrize(
    "override,expected",
    [
        ("nonsense", "key.path=value"),
        ("=5", "a key path before '='"),
    ],
)
def test_override_without_key_or_value(override, expected):
    err = reject(base(), [override])
    assert (err.file, err.key, err.expected) == ("--set", override, expected)


# --------------------------------------------------------------------------- zone maps


def test_zone_map_path_is_relative_to_the_scenario_file(tmp_path):
    sub = tmp_path / "scen"
    sub.mkdir()
    path = sub / "zones.toml"
    path.write_text('[lattice.zones]\nlayout = "file"\nfile = "maps/z.npy"\n')
    s = load_scenario(path)
    assert Path(s.lattice.zones.file) == sub / "maps" / "z.npy"


def test_zone_map_layout_needs_a_file():
    err = reject({"lattice": {"zones": {"layout": "file"}}})
    assert err.key == "lattice.zones"
    assert "needs file" in err.expected


# --------------------------------------------------------------------------- fixed bugs


def test_loading_a_dict_with_overrides_leaves_the_dict_alone():
    data = base()
    before = copy.deepcopy(data)
    load_scenario(
        data, ["lattice.size=64", "lattice.zones.unit_um=640", "therapy.1.dose_per_kg=5e5"]
    )
    assert data == before


def test_a_partial_cell_table_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[cells.naive_b]\nlifespan_days = 30\n")
    s = load_scenario(path)
    assert s.cells.naive_b.lifespan_days == 30.0
    assert s.cells.naive_b.move_rate_per_day == Scenario().cells.naive_b.move_rate_per_day


def test_overriding_one_cell_value(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE_TOML)
    s = load_scenario(path, ["cells.car_t.lifespan_days=9"])
    assert s.cells.car_t.lifespan_days == 9.0


@pytest.mark.parametrize(
    "override,key",
    [
        ("time.follow_up_days=inf", "time.follow_up_days"),
        ("therapy.1.day=nan", "therapy.1.day"),
        ("therapy.0.days=[-5, inf]", "therapy.0.days.1"),
    ],
)
def test_infinite_and_nan_values_are_rejected(override, key):
    err = reject(base(), [override])
    assert err.key == key


def test_errors_in_the_car_t_cell_table_name_car_t():
    err = reject(
        {"cells": {"car_t": {"lifespan_days": -1, "move_rate_per_day": 1, "home": "none"}}}
    )
    assert err.key == "cells.car_t.lifespan_days"


def test_errors_in_other_cell_tables_name_the_kind():
    # The same error in another kind's table is keyed correctly (the bug above is car_t only).
    err = reject(
        {"cells": {"t_helper": {"lifespan_days": -1, "move_rate_per_day": 1, "home": "none"}}}
    )
    assert err.key == "cells.t_helper.lifespan_days"


# --------------------------------------------------------------------------- what validate promises


def _set(data: dict, path: str, value: Any) -> dict:
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value
    return data


@pytest.mark.parametrize(
    "path,value,key,words",
    [
        # a therapy outside the simulated window would silently never happen
        ("therapy.1.day", 1e6, "therapy.1.day", ("simulated window [-5, 5]",)),
        ("therapy.0.days", [-500], "therapy.0.days.0", ("simulated window",)),
        ("time.run_in_days", 0.0, "therapy.0.days.0", ("simulated window [-0, 5]",)),
        ("therapy.0.targets", [], "therapy.0.targets", ("at least 1",)),
        # too few or too many CAR-T agents for the lattice
        ("lattice", {"size": 8, "zones": {"unit_um": 80}}, "therapy.1.dose_per_kg",
         ("at least 1 CAR-T agent", "size 24")),
        ("therapy.1.dose_per_kg", 1e20, "therapy.1.dose_per_kg", ("fits on the lattice",)),
        ("therapy.1.dose_per_kg", 1e308, "therapy.1.dose_per_kg", ("fits on the lattice",)),
        # amounts beyond exact integer arithmetic, rates beyond a fraction per step
        ("therapy.2.amount_per_site", 1e308, "therapy.2.amount_per_site", ("1000000",)),
        ("initial.damage", 1e300, "initial.damage", ("1000000",)),
        ("molecules.damage_per_complex", 100.0, "molecules.damage_per_complex",
         ("at most 24 per day",)),
        ("activation.hill", 1e6, "activation.hill", ("20",)),
        ("specificities.vaccines", [f"v{i}" for i in range(40)], "specificities.vaccines",
         ("at most 32",)),
    ],
)  # fmt: skip
def test_what_validation_passes_can_run(path, value, key, words):
    err = reject(_set(base(), path, value))
    assert err.key == key, err
    for w in words:
        assert w in err.expected, err.expected


def test_a_standard_of_care_that_stops_before_it_starts_is_refused():
    data = base()
    data["therapy"].append({"type": "standard_of_care", "start_day": 3, "stop_day": 1})
    err = reject(data)
    assert err.key == "therapy.3.stop_day" and "after start_day 3" in err.expected


def test_a_therapy_at_the_start_of_the_run_in_happens_in_the_first_step():
    from immunesim.engine.course import Course

    data = base()
    data["time"]["run_in_days"] = 0.0
    data["therapy"] = [{"type": "car_t", "day": 0, "dose_per_kg": 1.0e6}]
    s = load_scenario(data)
    course = Course(s, 0, lambda f: None)
    assert list(course._schedule) == [1]  # not step 0, which no step ever runs


def test_runs_beyond_the_work_budget_need_force():
    from immunesim.scenario import WORK_BUDGET, check_budget

    for change in (["time.follow_up_days=1e8"], ["time.dt_hours=0.001", "time.follow_up_days=1e5"]):
        s = load_scenario(base(), change)
        assert s.work() > WORK_BUDGET
        with pytest.raises(ScenarioError, match="--force"):
            check_budget(s)
        check_budget(s, force=True)
    check_budget(load_scenario(SCENARIOS / "sle_cd19_cart.toml"))  # the default is within


def test_only_regular_files_are_read(tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    result: list = []
    t = threading.Thread(target=lambda: result.append(reject(fifo)), daemon=True)
    t.start()
    t.join(timeout=10)
    assert result, "reading a FIFO blocked"
    assert "regular file" in result[0].expected


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'name = "bom"\n')
    assert load_scenario(path).name == "bom"


def test_toml_nested_too_deeply_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 2000 + "]" * 2000 + "\n")
    assert "nested" in reject(path).expected


def test_the_memory_check_follows_the_address_space_limit():
    import subprocess
    import sys

    # a child process under ulimit -v: a lattice that fits the machine does not fit there
    code = (
        "import resource;"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY));"
        "from immunesim.scenario import memory_limits, load_scenario, ScenarioError;"
        "lim = memory_limits()['address-space limit (ulimit -v)'];"
        "assert 0 < lim < 3 << 30, lim\n"
        "try:\n    load_scenario({'lattice': {'size': 6000}})\n"
        "except ScenarioError as e:\n    print(e.key, e.expected)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("lattice.size") and "ulimit -v" in out.stdout


@pytest.mark.parametrize(
    "entry,key",
    [
        # a uniform draw below the field's minimum
        ({"key": "cells.naive_b.lifespan_days", "distribution": "uniform", "low": -5, "high": 5},
         "variability.0"),
        # a normal draw above 1 for a fraction
        ({"key": "specificities.autoreactive_fraction", "distribution": "normal", "mean": 0.9,
          "sd": 0.1}, "variability.0"),
        ({"key": "cells.naive_b.lifespan_days", "distribution": "lognormal", "median": 40,
          "sigma": 1e308}, "variability.0.sigma"),
        ({"key": "activation.divisions", "distribution": "uniform", "low": 1, "high": 3},
         "variability.0.key"),
    ],
)  # fmt: skip
def test_variability_is_checked_when_the_scenario_is_validated(entry, key):
    data = base()
    data["variability"] = [entry]
    assert reject(data).key == key


def test_variability_within_the_fields_bounds_validates():
    data = base()
    data["variability"] = [
        {"key": "cells.naive_b.lifespan_days", "distribution": "lognormal", "median": 40,
         "sigma": 0.3},
        {"key": "therapy.1.dose_per_kg", "distribution": "uniform", "low": 5e5, "high": 2e6},
    ]  # fmt: skip
    assert len(load_scenario(data).variability) == 2


def test_a_newline_typed_in_a_value_stays_on_one_line():
    # the error line names what was typed, escaped: a user's terminal shows one line
    err = reject(base(), ['therapy.2.type="\\n"'])
    assert "\n" not in str(err) and "\\n" in str(err)


def test_every_bad_input_error_is_a_value_error():
    from immunesim.checkpoint import CheckpointError

    assert issubclass(ScenarioError, ValueError) and issubclass(CheckpointError, ScenarioError)


def test_an_override_of_car_t_kinetics_sets_every_infusion():
    """The infusions share their kinetics: a value set for one (a patient's drawn value, a
    sweep) is the population's, while a file that gives two values is refused."""
    data = base()
    data["time"]["follow_up_days"] = 40.0
    data["therapy"].append({"type": "car_t", "day": 30, "targets": ["BCMA"]})
    s = load_scenario(data, ["therapy.1.division_rate_per_day=1.9"])
    assert [t.division_rate_per_day for t in s.therapy if t.type == "car_t"] == [1.9, 1.9]
    data["therapy"][3]["division_rate_per_day"] = 1.2
    err = reject(data)
    assert err.key == "therapy.3.division_rate_per_day" and "share their kinetics" in err.expected

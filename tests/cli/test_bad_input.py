"""Bad input ends with exit status 2 and one line naming the file, the key path and what was
expected; no traceback, and nothing already written is touched.

Every case runs the real console command (``immunesim validate FILE`` or ``immunesim run FILE
--out DIR``) on a file written into ``tmp_path``; none of them simulates anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SMALL_SCENARIO_TOML

# A small, valid scenario: therapy.0 is lymphodepletion, therapy.1 the CAR-T infusion.
BASE = SMALL_SCENARIO_TOML

NAIVE_B = '[cells.naive_b]\nlifespan_days = {life}\nmove_rate_per_day = {move}\nhome = "lymphoid"\n'

# name: (file contents, or None for a file that does not exist;
#        key path the message must name ("" for the whole file);
#        words of "what was expected" the message must hold after the key path)
CASES: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "not_toml": ("lattice = [size = 3\n", "", ("valid TOML", "line 1")),
    "empty": ("   \n\n", "", ("TOML scenario", "empty")),
    "unknown_key": ("[lattice]\nsise = 200\n", "lattice.sise", ("unknown key",)),
    "unknown_section": (BASE + "\n[lattise]\nsize = 3\n", "lattise", ("unknown key",)),
    "wrong_type": ('[lattice]\nsize = "big"\n', "lattice.size", ("valid integer", "'big'")),
    "wrong_type_in_list": (
        BASE.replace("days = [-5, -4, -3]", 'days = [-5, "x", -3]'),
        "therapy.0.days.1",
        ("valid number", "'x'"),
    ),
    "negative_lifespan": (
        NAIVE_B.format(life=-4, move=1),
        "cells.naive_b.lifespan_days",
        ("greater than 0", "got -4"),
    ),
    "negative_rate": (
        NAIVE_B.format(life=40, move=-1),
        "cells.naive_b.move_rate_per_day",
        ("greater than or equal to 0", "got -1"),
    ),
    "negative_dose": (
        BASE.replace("dose_per_kg = 1.0e6", "dose_per_kg = -1.0e6"),
        "therapy.1.dose_per_kg",
        ("greater than or equal to 0", "got -1000000.0"),
    ),
    "too_large": (
        "[lattice]\nsize = 100000\n",
        "lattice.size",
        ("a lattice that fits in memory", "GiB"),
    ),
    "missing_file": (None, "", ("file not found",)),
    "unknown_marker": (
        BASE.replace('targets = ["CD19"]', 'targets = ["CD19", "CD99"]'),
        "therapy.1.targets.1",
        ("a marker, one of", "CD19", "'CD99'"),
    ),
    "unknown_therapy_type": (
        BASE.replace('type = "car_t"', 'type = "car_x"'),
        "therapy.1",
        ("'car_x'", "car_t", "anti_cd20"),
    ),
    "zone_fractions": (
        "[lattice.zones]\nmarrow = 0.5\nlymphoid = 0.5\ntissue = 0.5\n",
        "lattice.zones",
        ("add up to 1", "1.5"),
    ),
    "schema_version": ("schema_version = 7\n", "schema_version", ("schema_version 2", "not 7")),
}


def _write(tmp_path: Path, name: str) -> Path:
    content = CASES[name][0]
    path = tmp_path / f"{name}.toml"
    if content is not None:
        path.write_text(content)
    return path


def _expect_bad_input(proc, file: str | Path, key: str, words: tuple[str, ...]) -> None:
    """Exit 2; stderr is the single line ``error: FILE: KEY: EXPECTED``; no traceback."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    assert proc.returncode == 2, both
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, not wrapped
    head = f"error: {file}: {key}: " if key else f"error: {file}: "
    assert lines[0].startswith(head), f"{lines[0]!r} does not start with {head!r}"
    expected = lines[0][len(head) :]
    for w in words:
        assert w in expected, f"{w!r} not in what was expected: {expected!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_reports_bad_input(cli, tmp_path, name):
    path = _write(tmp_path, name)
    proc = cli("validate", path)
    _expect_bad_input(proc, path, CASES[name][1], CASES[name][2])
    assert proc.stdout == ""  # no "ok" line for a bad file


def test_the_base_scenario_is_valid(cli, tmp_path):
    """The cases above are bad because of their one change, not because of BASE."""
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    proc = cli("validate", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"ok  {path}")


def test_validate_checks_every_file_and_fails_if_one_is_bad(cli, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(BASE)
    bad = _write(tmp_path, "unknown_key")
    proc = cli("validate", bad, good)
    _expect_bad_input(proc, bad, "lattice.sise", ("unknown key",))
    assert proc.stdout.startswith(f"ok  {good}")  # the good file after the bad one is checked


@pytest.mark.parametrize(
    "args,name,key,words",
    [
        ((), "unknown_key", "lattice.sise", ("unknown key",)),
        ((), "negative_dose", "therapy.1.dose_per_kg", ("greater than or equal to 0",)),
        ((), "missing_file", "", ("file not found",)),
        ((), "too_large", "lattice.size", ("fits in memory",)),
        (("--set", "lattice.size=abc"), "base", "lattice.size", ("valid integer", "'abc'")),
        (
            ("--set", "therapy.1.dose_per_kg=-5"),
            "base",
            "therapy.1.dose_per_kg",
            ("greater than or equal to 0",),
        ),
    ],
)
def test_run_reports_bad_input_and_leaves_outputs_alone(cli, tmp_path, args, name, key, words):
    if name == "base":
        path = tmp_path / "base.toml"
        path.write_text(BASE)
    else:
        path = _write(tmp_path, name)
    out = tmp_path / "out"
    out.mkdir()
    sentinel = out / "timeseries.csv"
    sentinel.write_text("an earlier run's data\n")
    before = sentinel.stat().st_mtime_ns
    proc = cli("run", path, "--out", out, "--quiet", *args)
    _expect_bad_input(proc, path, key, words)
    assert sentinel.read_text() == "an earlier run's data\n"
    assert sentinel.stat().st_mtime_ns == before
    assert [p.name for p in out.iterdir()] == ["timeseries.csv"]


def test_run_with_bad_input_creates_no_output_directory(cli, tmp_path):
    path = _write(tmp_path, "negative_dose")
    out = tmp_path / "not_yet"
    proc = cli("run", path, "--out", out)
    _expect_bad_input(proc, path, "therapy.1.dose_per_kg", ("greater than or equal to 0",))
    assert not out.exists()


# --------------------------------------------------------------------------- --set


@pytest.mark.parametrize(
    "override,file,key,words",
    [
        ("lattice.size=abc", "FILE", "lattice.size", ("valid integer", "'abc'")),
        ("lattice.size=3", "FILE", "lattice.size", ("greater than or equal to 8", "got 3")),
        ("lattice.sise=64", "FILE", "lattice.sise", ("unknown key",)),
        ("lattice.size.x=1", "FILE", "lattice.size", ("a table", "--set lattice.size.x=1")),
        ("therapy.9.day=1", "FILE", "therapy.9", ("an index below 2", "--set therapy.9.day=1")),
        ("therapy.one.day=1", "FILE", "therapy.one", ("an index below 2",)),
        ("therapy.1.targets.3=CD20", "FILE", "therapy.1.targets.3", ("an index below 1",)),
        ("therapy.1.targets=['CD99']", "FILE", "therapy.1.targets.0", ("a marker", "'CD99'")),
        (
            "therapy.1.dose_per_kg=-5e5",
            "FILE",
            "therapy.1.dose_per_kg",
            ("greater than or equal to 0",),
        ),
        # A --set without '=' or without a key is named by the option and the text typed.
        ("nonsense", "--set", "nonsense", ("key.path=value",)),
        ("=5", "--set", "=5", ("a key path before '='",)),
    ],
)
def test_validate_reports_bad_overrides(cli, tmp_path, override, file, key, words):
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    proc = cli("validate", path, "--set", override)
    _expect_bad_input(proc, path if file == "FILE" else file, key, words)
    assert proc.stdout == ""


def test_good_override_is_applied_by_the_command(cli, tmp_path):
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    proc = cli(
        "validate",
        path,
        "--set",
        "lattice.size=64",
        "--set",
        "lattice.zones.unit_um=640",
        "--set",
        "time.follow_up_days=9",
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # the console wraps long lines
    assert "(small: 64x64 sites, 5 d run-in + 9 d, 2 therapy entries, 336 steps)" in text


def test_unknown_backend_is_bad_input(cli, tmp_path):
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    out = tmp_path / "o"
    proc = cli("run", path, "--out", out, "--quiet", "--backend", "opencl")
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    assert proc.returncode == 2, both
    assert proc.stderr.startswith("error: --backend: unknown backend 'opencl'")
    assert "numba" in proc.stderr  # says what was expected


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_bad_input_and_says_how_to_get_one(cli, tmp_path):
    """Without a GPU (and with numba's CUDA simulator off), --backend cuda is refused with
    exit status 2 and a message that names the GPU extra; nothing is written."""
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    out = tmp_path / "o"
    proc = cli(
        "run", path, "--out", out, "--quiet", "--backend", "cuda", env={"NUMBA_ENABLE_CUDASIM": "0"}
    )
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    assert proc.returncode == 2, both
    assert proc.stderr.startswith("error: --backend: backend 'cuda' is not available")
    assert "pip install 'immunesim[gpu]'" in proc.stderr
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sizes", "100,x"],
            "error: --sizes: expected lattice sides as comma-separated integers",
        ),
        (["--sizes", "4"], "error: --sizes: expected lattice sides of at least 8"),
        (["--backend", "opencl"], "error: --backend: unknown backend 'opencl'"),
        (["--dry-run", "--backend", "opencl"], "error: --backend: unknown backend 'opencl'"),
    ],
)
def test_bench_bad_options_are_bad_input(cli, args, message):
    proc = cli("bench", *args)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(message), proc.stderr


# --------------------------------------------------------------------------- fixed bugs


def test_a_day_too_far_to_count_in_steps_is_outside_the_window(cli, tmp_path):
    """Found by the command-line fuzzer: an infusion on day 1e308 overflowed the step count
    (a traceback) instead of being refused as outside the simulated window."""
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    proc = cli("validate", path, "--set", "therapy.1.day=1e308")
    _expect_bad_input(proc, path, "therapy.1.day", ("inside the simulated window", "1e+308"))


def test_bracketed_value_is_printed_verbatim(cli, tmp_path):
    path = tmp_path / "markup.toml"
    path.write_text('[lattice]\nsize = "[/x]"\n')
    proc = cli("validate", path)
    _expect_bad_input(proc, path, "lattice.size", ("valid integer", "'[/x]'"))


def test_bracketed_path_is_printed_verbatim(cli, tmp_path):
    folder = tmp_path / "d[red]x"
    folder.mkdir()
    path = folder / "a.toml"
    path.write_text("[lattice]\nsise = 1\n")
    proc = cli("validate", path)
    _expect_bad_input(proc, path, "lattice.sise", ("unknown key",))


def test_car_t_cell_error_names_its_table(cli, tmp_path):
    path = tmp_path / "cart_cells.toml"
    path.write_text(NAIVE_B.format(life=-1, move=1).replace("naive_b", "car_t"))
    proc = cli("validate", path)
    _expect_bad_input(proc, path, "cells.car_t.lifespan_days", ("greater than 0",))


def test_infinite_follow_up_is_bad_input(cli, tmp_path):
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    proc = cli("validate", path, "--set", "time.follow_up_days=inf")
    _expect_bad_input(proc, path, "time.follow_up_days", ("finite",))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run"], ("Missing argument", "immunesim run --help")),
        (["run", "scenarios/sle_cd19_cart.toml", "--out", "x", "--bogus"], ("--bogus",)),
        (["run", "scenarios/sle_cd19_cart.toml", "--out", "x", "--seed", "x"], ("--seed",)),
        (["validate"], ("Missing argument",)),
        (["frobnicate"], ("No such command",)),
    ],
)
def test_command_line_mistakes_are_one_error_line(cli, args, words, repo, tmp_path):
    proc = cli(*args, cwd=repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0]
    assert not (repo / "x").exists()


def test_validate_refuses_a_run_beyond_the_budget_unless_forced(cli, repo):
    path = repo / "scenarios" / "sle_cd19_cart.toml"
    proc = cli("validate", path, "--set", "time.follow_up_days=1e8")
    _expect_bad_input(proc, path, "time", ("budget", "--force"))
    forced = cli("validate", path, "--set", "time.follow_up_days=1e8", "--force")
    assert forced.returncode == 0, forced.stderr


def test_validate_reads_the_zone_map_a_scenario_names(cli, tmp_path):
    # a missing or malformed zone map is found by validate, not later by run
    path = tmp_path / "zones.toml"
    path.write_text('[lattice]\nsize = 32\n[lattice.zones]\nlayout = "file"\nfile = "map.npy"\n')
    missing = cli("validate", path)
    assert missing.returncode == 2 and "lattice.zones.file" in missing.stderr
    np.save(tmp_path / "map.npy", np.full((16, 16), 1, np.uint8))  # the wrong shape
    wrong = cli("validate", path)
    assert wrong.returncode == 2 and "shape (32, 32)" in wrong.stderr
    np.save(tmp_path / "map.npy", np.full((32, 32), 1, np.uint8))
    assert cli("validate", path).returncode == 0

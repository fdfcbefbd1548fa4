"""The model behind the interactive app (no browser): settings reach the engine, a reset with
the same seed repeats the run, the pictures show the model's arrays; and ``immunesim app``
refuses bad input before starting a server."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from immunesim.scenario import ScenarioError, load_scenario
from immunesim.viz.animate import cells_to_rgb
from immunesim.viz.live import (
    LATTICE_SIZE,
    History,
    LiveRun,
    Picture,
    RunSlots,
    Settings,
    app_scenarios,
    chart_days,
    chart_json,
    chart_targets,
    course_chart,
    lattice_png,
    load_app_scenario,
    max_runs,
    same_patient,
    short_source,
)
from tests.cli.conftest import run_immunesim
from tests.conftest import SCENARIOS

# The app's scenario on a smaller lattice with a shorter run-in: a run builds in about a second.
SMALL = ["lattice.size=48", "lattice.zones.unit_um=480", "time.run_in_days=60"]


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(load_app_scenario(), SMALL)


@pytest.fixture(scope="module")
def targets(scenario):
    return chart_targets(scenario)


def run_to(scenario, settings: Settings, day: float) -> LiveRun:
    run = LiveRun(scenario, settings)
    while run.day < day:
        run.step()
    return run


def test_app_scenario_is_the_default_one_on_a_small_lattice():
    s = load_app_scenario()
    assert s.name == "sle_cd19_cart"
    assert s.lattice.size == LATTICE_SIZE
    assert Settings.from_scenario(s) == Settings(
        dose_per_kg=1.0e6, targets=("CD19",), autoreactive_fraction=0.35, seed=1
    )


def test_settings_reach_the_scenario_of_the_run(scenario):
    chosen = Settings(
        dose_per_kg=5.0e6, targets=("CD20", "BCMA"), autoreactive_fraction=0.6, seed=11
    )
    progress: list[float] = []
    run = LiveRun(scenario, chosen, progress=progress.append)
    car = run.scenario.therapy[2]
    assert (car.type, car.dose_per_kg, car.targets) == ("car_t", 5.0e6, ["CD20", "BCMA"])
    assert run.scenario.specificities.autoreactive_fraction == 0.6
    assert run.model.simulation.seed == 11
    # the run-in is done when the run is built, with its progress reported up to 100%
    assert run.day == scenario.endpoints.baseline_day == -7
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert run.frame.caption.startswith("Active lupus")


def test_bcma_only_car_t_spares_cd19_b_cells_and_kills_plasma_cells(scenario):
    base = Settings.from_scenario(scenario)
    # On this 48x48 patch the default dose is four CAR-T agents, whose expansion by day 14 is
    # a matter of chance; five times the dose gives the agent count of the app's own lattice.
    dose = 5 * base.dose_per_kg
    cd19 = run_to(
        scenario, Settings(dose, ("CD19",), base.autoreactive_fraction, base.seed), 14
    ).frame.timeseries.set_index("day")
    bcma = run_to(
        scenario, Settings(dose, ("BCMA",), base.autoreactive_fraction, base.seed), 14
    ).frame.timeseries.set_index("day")
    b0 = cd19.loc[-7.0, "b_cells"]
    assert bcma.loc[-7.0, "b_cells"] == b0  # same seed: the same patient before therapy
    # CD19 CAR-T: B-cell aplasia, long-lived plasma cells (CD19-negative) untouched
    assert cd19.loc[14.0, "b_cells"] < 0.02 * b0
    assert cd19.loc[14.0, "llpc"] >= 0.9 * cd19.loc[-7.0, "llpc"]
    # BCMA CAR-T: CD19+ B cells come back after the chemotherapy, plasma cells go
    assert bcma.loc[14.0, "b_cells"] > 0.2 * b0
    assert bcma.loc[14.0, "llpc"] < 0.2 * bcma.loc[-7.0, "llpc"]


def test_reset_with_the_same_seed_gives_the_same_lattice(scenario):
    settings = Settings.from_scenario(scenario)
    first, again = (run_to(scenario, settings, 2) for _ in range(2))
    other = run_to(
        scenario,
        Settings(settings.dose_per_kg, settings.targets, settings.autoreactive_fraction, seed=2),
        2,
    )
    assert np.array_equal(first.frame.cells, again.frame.cells)
    assert lattice_png(first.frame, first.zones) == lattice_png(again.frame, again.zones)
    assert not np.array_equal(first.frame.cells, other.frame.cells)


def test_stepping_moves_the_day_and_the_time_series_on(scenario):
    run = LiveRun(scenario, Settings.from_scenario(scenario))
    rows = len(run.frame.timeseries)
    before = run.frame
    after = run.step()
    assert after.day == before.day + 1
    assert len(after.timeseries) == rows + 1
    assert before.day == -7  # a frame is a snapshot: stepping leaves the old one as it was
    assert not np.array_equal(before.cells, after.cells)


def test_a_day_computed_ahead_is_shown_only_by_the_step_and_is_the_same_day(scenario):
    # the app computes the next day while the page shows this one (LiveRun.prefetch); the
    # frames must be those of stepping alone, and the shown one must not move before Step
    ahead = LiveRun(scenario, Settings.from_scenario(scenario))
    plain = LiveRun(scenario, Settings.from_scenario(scenario))
    for _ in range(4):  # into the lymphodepletion, where the course changes fast
        shown = ahead.frame
        ahead.prefetch()
        ahead.prefetch()  # a second call computes nothing more
        assert ahead.frame is shown and ahead.at(shown.day + 1) is shown
        assert ahead.model.day == shown.day + 1 and len(ahead.history) == len(plain.history)
        a, b = ahead.step(), plain.step()
        assert a.day == b.day == shown.day + 1
        np.testing.assert_array_equal(a.cells, b.cells)
        np.testing.assert_array_equal(a.damage, b.damage)
        pd.testing.assert_frame_equal(a.timeseries, b.timeseries)
        assert (a.caption, a.events) == (b.caption, b.events)
        assert shown.day == a.day - 1 and len(shown.timeseries) == len(a.timeseries) - 1


def test_lattice_png_is_the_palette_image_scaled_up(scenario):
    run = LiveRun(scenario, Settings.from_scenario(scenario))
    png = Image.open(io.BytesIO(lattice_png(run.frame, run.zones, scale=3, damage=False)))
    pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape == (48 * 3, 48 * 3, 3)
    assert np.array_equal(pixels[::3, ::3], cells_to_rgb(run.frame.cells, run.zones))


def test_settings_problems_are_named():
    ok = Settings(1e6, ("CD19",), 0.35, 1)
    assert ok.problem() is None
    assert "target" in Settings(1e6, (), 0.35, 1).problem()
    assert "seed" in Settings(1e6, ("CD19",), 0.35, -1).problem()


def test_a_scenario_without_car_t_is_refused():
    with pytest.raises(ScenarioError, match="therapy: a car_t or anti_cd20 entry"):
        load_app_scenario(SCENARIOS / "sle_untreated.toml")


# ------------------------------------------------------------------ immunesim app: bad input


def test_cli_refuses_a_scenario_without_car_t():
    proc = run_immunesim("app", "--scenario", SCENARIOS / "sle_untreated.toml")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "car_t" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_refuses_a_port_in_use():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = run_immunesim("app", "--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen")


def test_cli_without_solara_says_what_to_install():
    # Hide solara from the import system, as if the [app] extra were not installed.
    code = (
        "import sys; sys.modules['solara'] = None; sys.argv = ['immunesim', 'app']; "
        "from immunesim.cli import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "pip install 'immunesim[app]'" in proc.stderr


def test_the_packaged_default_scenario_is_the_repository_one():
    """The app opens the copy of ``scenarios/sle_cd19_cart.toml`` that the package carries
    (so a plain ``pip install`` has it); the two must not drift apart."""
    from immunesim.viz.live import DEFAULT_SCENARIO

    assert DEFAULT_SCENARIO.read_bytes() == (SCENARIOS / "sle_cd19_cart.toml").read_bytes()


# ------------------------------------------------------------ the chart and its published targets


def test_chart_targets_come_from_the_published_file_with_their_source(scenario):
    from immunesim.report import load_targets

    published = {t.name: t for t in load_targets()}
    marks = {t.name: t for t in chart_targets(scenario)}
    back = marks["b_cell_reconstitution_day"]
    assert (back.panel, back.x0, back.x1, back.y0) == (0, 78.0, 142.0, None)
    assert back.label == "B cells return 110 ± 32 d" and back.cited == "Mackensen 2022"
    assert (marks["car_t_peak_day"].x0, marks["car_t_peak_day"].x1) == (7.0, 14.0)
    assert marks["car_t_peak_day"].cited == "Stein 2019"
    dsdna = marks["anti_dsdna_seronegative_month3"]
    assert (dsdna.panel, dsdna.y0, dsdna.y1) == (1, 0.0, 0.2) and dsdna.x0 < 90 < dsdna.x1
    remission = marks["remission_by_month3"]  # below the scenario's remission score by day 90
    assert (remission.panel, remission.x1, remission.y1) == (2, 90.0, 4.0)
    for name, t in marks.items():
        assert (t.source, t.published) == (published[name].source, published[name].published)
        assert t.cited in t.text
    # a changed published window moves the band
    moved = [dataclasses.replace(published["b_cell_reconstitution_day"], low=60.0, high=100.0)]
    (only,) = chart_targets(scenario, moved)
    assert (only.x0, only.x1, only.label) == (60.0, 100.0, "B cells return 110 ± 20 d")


def test_course_chart_draws_the_series_with_gaps_and_the_targets(scenario, targets):
    run = run_to(scenario, Settings.from_scenario(scenario), 3)
    first, last = chart_days(run.start_day, run.day)
    assert (first, last) == (-37.0, 150.0)
    option = course_chart([("CD19", run.frame, run.scenario)], first, last, targets)
    series = {s["name"]: s for s in option["series"]}
    df = run.frame.timeseries
    shown = df[df["day"] >= first]
    b = series["B cells"]["data"]
    assert [d for d, _ in b] == shown["day"].tolist()
    assert b[-1][1] == pytest.approx(shown["b_cells_per_ul"].iloc[-1], rel=1e-3)
    # no CAR-T before the infusion: gaps on the log axis, not zeros
    car_t = series["CAR-T"]["data"]
    assert all(v is None for d, v in car_t if d < 0) and car_t[-1][1] > 0
    assert option["yAxis"][0]["type"] == "log"
    dsdna = [v for d, v in series["anti-dsDNA"]["data"] if d == -7.0]
    assert dsdna == [pytest.approx(1.0)]  # relative to the baseline day
    assert option["legend"]["data"] == [
        "B cells", "CAR-T", "CD4 T cells", "anti-dsDNA", "vaccine titre", "disease score"
    ]  # fmt: skip
    # the CD4 pool in blood, on the cells' log axis: the baseline before conditioning
    cd4 = dict(series["CD4 T cells"]["data"])
    assert cd4[-7.0] == pytest.approx(run.scenario.cd4.baseline_per_ul)
    assert cd4[-7.0] > cd4[0.0] > 0
    areas = [s for s in option["series"] if "markArea" in s]
    assert len(areas) == len(targets)
    labels = [s["markArea"]["label"]["formatter"] for s in areas]
    assert "B cells return 110 ± 32 d\n(Mackensen 2022)" in labels
    [[lo, hi]] = series["published: B cells return 110 ± 32 d (Mackensen 2022)"]["markArea"]["data"]
    assert (lo, hi) == ({"xAxis": 78.0}, {"xAxis": 142.0})
    assert option["xAxis"][0]["min"] == first and option["xAxis"][2]["max"] == last
    assert chart_days(run.start_day, 200.0) == (-37.0, 250.0)  # the axis grows by 50 days


def test_chart_json_splits_the_lines_data_from_the_rest(scenario, targets):
    run = run_to(scenario, Settings.from_scenario(scenario), 3)
    first, last = chart_days(run.start_day, run.day)
    option = course_chart([("CD19", run.frame, run.scenario)], first, last, targets)
    skeleton, lines = (json.loads(text) for text in chart_json(option))
    n = len(lines)
    assert [s["name"] for s in option["series"][:n]] == [
        "B cells", "CAR-T", "CD4 T cells", "anti-dsDNA", "vaccine titre", "disease score"
    ]  # fmt: skip
    assert lines == [s["data"] for s in option["series"][:n]]  # gaps stay null
    assert all(s["data"] == [] for s in skeleton["series"][:n])
    # the rest (axes, targets, therapy lines) comes whole with the skeleton
    assert skeleton["series"][n:] == option["series"][n:] and skeleton["xAxis"] == option["xAxis"]
    option["series"][0]["data"][0][1] = float("nan")
    with pytest.raises(ValueError):
        chart_json(option)


def test_course_chart_of_two_runs_dashes_the_second(scenario):
    run = LiveRun(scenario, Settings.from_scenario(scenario))
    rituximab = LiveRun(
        load_scenario(SCENARIOS / "sle_rituximab.toml", SMALL),
        Settings.from_scenario(scenario),
    )
    option = course_chart(
        [("CD19", run.frame, run.scenario), ("rituximab", rituximab.frame, rituximab.scenario)],
        -37,
        150,
    )
    names = [s["name"] for s in option["series"] if s["data"]]
    assert names[:6] == [
        "B cells", "CAR-T", "CD4 T cells", "anti-dsDNA", "vaccine titre", "disease score"
    ]  # fmt: skip
    assert "B cells (rituximab)" in names
    styles = {s["name"]: s["lineStyle"]["type"] for s in option["series"] if s["data"]}
    assert styles["B cells"] == "solid" and styles["B cells (rituximab)"] == "dashed"
    assert len(option["legend"]["data"]) == 6  # the quantities, once


def test_short_source_is_first_author_and_year():
    assert short_source("Mackensen et al., Nat Med 2022;28:2124") == "Mackensen 2022"
    assert short_source("Erlangen group, ACR Convergence 2023 abstract 0607") == "Erlangen 2023"
    assert short_source("Mackensen 2022; review table 2024") == "Mackensen 2022"


# ------------------------------------------------------------------------- the day scrubber


def test_scrubbing_back_shows_that_day_as_it_was(scenario):
    run = LiveRun(scenario, Settings.from_scenario(scenario))
    seen = {run.day: run.frame}
    for _ in range(4):
        frame = run.step()
        seen[frame.day] = frame
    assert run.history.days == sorted(seen)
    past = run.at(-5.0)
    assert past.day == -5.0 and np.array_equal(past.cells, seen[-5.0].cells)
    assert past.caption == seen[-5.0].caption
    assert past.timeseries["day"].max() == -5.0
    assert np.allclose(past.damage, np.minimum(seen[-5.0].damage, 300.0), atol=300 / 255 / 2 + 1e-3)
    assert run.at(run.day) is run.frame  # the latest day is the live frame
    assert run.at(-100.0).day == -7.0  # before the first day: the first picture


def test_history_stays_bounded_and_keeps_the_first_and_latest_days():
    cells = np.zeros((4, 4), np.uint8)
    h = History(limit=8)
    for day in range(30):
        h.add(Picture(float(day), cells, cells, f"day {day}"))
        assert len(h) <= 8
    days = h.days
    assert days[0] == 0.0 and days[-1] == 29.0 and days == sorted(days)
    assert h.at(29.0).caption == "day 29"
    # a day that was dropped shows the latest kept picture before it
    dropped = next(d for d in range(30) if float(d) not in days)
    assert h.at(float(dropped)).day == max(d for d in days if d < dropped)
    with pytest.raises(ValueError, match="not after"):
        h.add(Picture(3.0, cells, cells, ""))


# ------------------------------------------------------------------- the bound on simulations


def test_run_slots_bound_the_simulations_at_once():
    slots = RunSlots(2)
    assert slots.try_acquire() and slots.try_acquire()
    assert not slots.try_acquire() and slots.in_use == 2
    assert "IMMUNESIM_APP_MAX_RUNS=2" in slots.busy_message()
    assert not slots.acquire(timeout=0.05)  # none frees in time
    assert not slots.acquire(stop=lambda: True)  # the tab closed while waiting
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire(timeout=30)))
    waiter.start()
    slots.release()  # frees one: the waiting tab takes it
    waiter.join(timeout=30)
    assert got == [True] and slots.in_use == 2
    slots.release()
    slots.release()
    assert slots.in_use == 0
    with pytest.raises(RuntimeError):
        slots.release()


def test_max_runs_and_lattice_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("IMMUNESIM_APP_MAX_RUNS", raising=False)
    assert max_runs() == 2
    monkeypatch.setenv("IMMUNESIM_APP_MAX_RUNS", "5")
    assert max_runs() == 5
    for bad in ("0", "two"):
        monkeypatch.setenv("IMMUNESIM_APP_MAX_RUNS", bad)
        with pytest.raises(ValueError, match="IMMUNESIM_APP_MAX_RUNS"):
            max_runs()
    monkeypatch.setenv("IMMUNESIM_APP_LATTICE", "80")
    s = load_app_scenario()
    assert (s.lattice.size, s.lattice.zones.unit_sites) == (80, 80)  # one anatomical unit
    monkeypatch.setenv("IMMUNESIM_APP_LATTICE", "8")
    with pytest.raises(ValueError, match="IMMUNESIM_APP_LATTICE"):
        load_app_scenario()


def test_cli_refuses_a_bad_bound_on_simulations(monkeypatch):
    monkeypatch.setenv("IMMUNESIM_APP_MAX_RUNS", "-1")
    proc = run_immunesim("app")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: $IMMUNESIM_APP_MAX_RUNS: a whole number from 1 to 1000 (got '-1')"
    )


# ------------------------------------------------------------ scenarios, comparison, download


def test_the_app_offers_the_shipped_therapies_given_one_first():
    given = load_app_scenario(SCENARIOS / "sle_rituximab.toml")
    offered = app_scenarios(given)
    assert list(offered)[0] == "sle_rituximab"
    assert {"sle_cd19_cart", "sle_bcma_cd19_cart"} <= set(offered)
    assert "sle_untreated" not in offered  # no therapy to show
    assert all(s.lattice.size == LATTICE_SIZE for s in offered.values())


def test_a_scenario_without_car_t_runs_its_own_therapy(scenario):
    rituximab = load_scenario(SCENARIOS / "sle_rituximab.toml", SMALL)
    settings = Settings.from_scenario(rituximab)
    assert (settings.dose_per_kg, settings.targets, settings.problem()) == (None, (), None)
    assert all(not o.startswith("therapy.") for o in settings.overrides(rituximab))
    run = LiveRun(rituximab, settings)
    assert run.therapy == "rituximab 1 g"
    assert run.describe().startswith("rituximab 1 g, 35% autoreactive")
    # CD19 CAR-T and rituximab: the same patient before therapy; myositis another one
    cd19 = Settings.from_scenario(scenario)
    assert same_patient(scenario, rituximab, cd19)
    assert not same_patient(
        scenario, load_scenario(SCENARIOS / "myositis_cd19_cart.toml", SMALL), cd19
    )
    assert np.array_equal(run.frame.cells, LiveRun(scenario, cd19).frame.cells)


def test_the_download_is_the_time_series_so_far(scenario):
    run = run_to(scenario, Settings.from_scenario(scenario), -5)
    table = pd.read_csv(io.BytesIO(run.csv()))
    assert len(table) == len(run.frame.timeseries) and table["day"].iloc[-1] == -5.0
    assert list(table.columns) == list(run.frame.timeseries.columns)

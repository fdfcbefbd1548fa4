"""The model behind the interactive app (no browser): settings reach the engine, a reset with
the same seed repeats the run, the pictures show the model's arrays; and ``immunesim app``
refuses bad input before starting a server."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from immunesim.scenario import ScenarioError, load_scenario
from immunesim.viz.animate import cells_to_rgb
from immunesim.viz.live import LATTICE_SIZE, LiveRun, Settings, lattice_png, load_app_scenario
from tests.cli.conftest import run_immunesim
from tests.conftest import SCENARIOS

# The app's scenario on a smaller lattice with a shorter run-in: a run builds in about a second.
SMALL = ["lattice.size=48", "lattice.zones.unit_um=480", "time.run_in_days=60"]


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(load_app_scenario(), SMALL)


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
    with pytest.raises(ScenarioError, match="therapy: a car_t entry"):
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

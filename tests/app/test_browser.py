"""The interactive app in a real headless browser.

``immunesim app`` serves the app on a free localhost port (a subprocess, killed at the end
whatever happens); Debian's chromium, driven through playwright's Python package, loads the
page and uses it as a student would: the controls are there, a slider changes the model once
Reset is pressed, Step and Play advance the day and redraw the lattice and the chart (drawn in
the browser, with the published targets), the play speed and the day scrubber act, the
scenario and a compared therapy are chosen in the page, the run downloads as CSV, a server
busy with as many simulations as it runs at once says so (and frees a closed tab's), and the
page fits a 1024 x 768 screen.

No browser is downloaded: playwright launches the system's chromium (``apt-get install
chromium``). Without it the test is skipped, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SCENARIOS, immunesim_cmd

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the browser fixture
    sync_playwright = None

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
#: Waits (ms). Building a run (the run-in) takes a second or two, or a minute while numba
#: compiles the kernels for the first time on a fresh machine.
BUILD_MS = 120_000
STEP_MS = 30_000
#: The server's bound on simulations at once (the default, said explicitly).
MAX_RUNS = 2


def unavailable(reason: str) -> None:
    """Skip for want of a browser; under CI, fail: CI must never skip this test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test, not skip it")
    pytest.skip(reason)


def find_chromium() -> str:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    unavailable("no chromium on this machine (apt-get install chromium)")


def offered_scenarios(tmp: Path) -> Path:
    """The therapies the page offers (the default scenario, rituximab and BCMA+CD19 CAR-T)
    with a 60-day run-in (a run builds four times faster than with the full 240 days)."""
    offered = tmp / "scenarios"
    offered.mkdir()
    for name in ("sle_cd19_cart", "sle_rituximab", "sle_bcma_cd19_cart"):
        text = (SCENARIOS / f"{name}.toml").read_text()
        assert "run_in_days = 240\n" in text
        (offered / f"{name}.toml").write_text(
            text.replace("run_in_days = 240\n", "run_in_days = 60\n")
        )
    return offered


def serve(tmp: Path, command: list[str], env: dict[str, str], ready: str | None) -> Iterator[str]:
    """URL of ``command`` (given ``--port PORT`` at its end) serving on a free port, once it
    answers (and its log says ``ready``); killed at the end with its whole session."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{command} exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{command} did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.3)
        if ready is not None:
            assert ready.format(port=port) in log.read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and any child
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """URL of ``immunesim app --scenario FILE``, FILE being the default scenario with a
    60-day run-in, offering it, rituximab and BCMA+CD19 CAR-T (:func:`offered_scenarios`)."""
    tmp = tmp_path_factory.mktemp("app")
    offered = offered_scenarios(tmp)
    command = [*immunesim_cmd(), "app", "--scenario", str(offered / "sle_cd19_cart.toml")]
    env = {"IMMUNESIM_APP_MAX_RUNS": str(MAX_RUNS), "IMMUNESIM_APP_SCENARIOS": str(offered)}
    yield from serve(tmp, command, env, "open http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def mesa_server(tmp_path_factory) -> Iterator[str]:
    """URL of Mesa's SolaraViz page on ImmuneModel (``immunesim.viz.solaraviz``) on the
    default scenario with a 60-day run-in."""
    tmp = tmp_path_factory.mktemp("mesa_viz")
    scenario = offered_scenarios(tmp) / "sle_cd19_cart.toml"
    command = [sys.executable, "-m", "solara", "run", "immunesim.viz.solaraviz", "--host",
               "127.0.0.1", "--production", "--no-open", "--no-check-version"]  # fmt: skip
    env = {"IMMUNESIM_APP_SCENARIO": str(scenario), "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "false"}
    yield from serve(tmp, command, env, None)


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    executable = find_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def open_app(browser, url: str, errors: list[str], width: int = 1400, height: int = 950):
    """A new tab on the app, once its run is built; JavaScript errors go to ``errors``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    expect(page.locator(".immunesim-day")).to_have_text("Day -7", timeout=BUILD_MS)
    return page


@pytest.fixture
def page(browser, server):
    """A fresh tab on the app (its own model), once the run-in is done."""
    errors: list[str] = []
    page = open_app(browser, server, errors)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def day_of(page) -> int:
    return int(page.locator(".immunesim-day").inner_text().split()[1])


def chart_lines(page) -> dict[str, list]:
    """The chart as ECharts holds it in the browser: each series' name and data."""
    page.wait_for_function(
        "() => { const el = document.querySelector('.immunesim-course');"
        " return el && el.__vue__ && el.__vue__.chart; }",
        timeout=STEP_MS,
    )
    return page.evaluate(
        "() => Object.fromEntries(document.querySelector('.immunesim-course').__vue__.chart"
        ".getOption().series.map((s) => [s.name, s.data || []]))"
    )


def wait_for_chart_day(page, day: int) -> None:
    """Until the chart's B-cell line ends on ``day``."""
    page.wait_for_function(
        "(day) => { const el = document.querySelector('.immunesim-course');"
        " if (!el || !el.__vue__ || !el.__vue__.chart) return false;"
        " const b = el.__vue__.chart.getOption().series.find((s) => s.name === 'B cells');"
        " return b && b.data.length && b.data[b.data.length - 1][0] === day; }",
        arg=day,
        timeout=STEP_MS,
    )


def choose(page, menu: str, item: str) -> None:
    """Pick ``item`` in the drop-down menu whose class is ``menu``."""
    page.locator(menu).click()
    page.get_by_role("option", name=item, exact=True).filter(visible=True).click()


def test_page_shows_the_controls_and_the_model_at_baseline(page):
    expect(page).to_have_title("immunesim: the CAR-T immune reset")
    expect(page.locator(".immunesim-dose")).to_contain_text("CAR-T dose: 1,000,000 cells/kg")
    targets = page.locator(".immunesim-targets")
    for marker, ticked in (("CD19", True), ("CD20", False), ("BCMA", False)):
        box = targets.get_by_role("checkbox", name=marker)
        expect(box).to_be_checked(checked=ticked)
    expect(page.locator(".immunesim-autoreactive")).to_contain_text("35%")
    expect(page.locator(".immunesim-seed input")).to_have_value("1")
    for name in ("Step", "Play", "Reset"):
        expect(page.get_by_role("button", name=name)).to_be_enabled()
    expect(page.locator(".immunesim-caption")).to_have_text(
        "Active lupus: autoreactive B cells and plasmablasts make anti-dsDNA"
    )
    legend = page.locator(".immunesim-legend")
    for label in ("naive B", "autoreactive B", "long-lived plasma cell", "CAR-T", "tissue zone"):
        expect(legend).to_contain_text(label)
    for image in (".immunesim-lattice", ".immunesim-course"):
        box = page.locator(image).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200, (image, box)


def test_step_and_play_advance_the_day_and_redraw(page):
    day = page.locator(".immunesim-day")
    lattice, course = page.locator(".immunesim-lattice"), page.locator(".immunesim-course")
    before = lattice.screenshot(), course.screenshot()
    page.get_by_role("button", name="Step").click()
    expect(day).to_have_text("Day -6", timeout=STEP_MS)
    expect(page.get_by_role("button", name="Step")).to_be_enabled()
    after = lattice.screenshot(), course.screenshot()
    redrawn = {
        view: b != a for view, b, a in zip(("lattice", "time series"), before, after, strict=True)
    }
    assert all(redrawn.values()), f"not redrawn after a step: {redrawn}"

    page.get_by_role("button", name="Play").click()
    # on through the chemotherapy (days -5 to -3)
    page.wait_for_function(
        "parseInt(document.querySelector('.immunesim-day').innerText.split(' ')[1]) >= -2",
        timeout=STEP_MS,
    )
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Play")).to_be_enabled(timeout=STEP_MS)
    paused = day.inner_text()
    page.wait_for_timeout(1500)
    assert day.inner_text() == paused, "the model kept running after Pause"
    expect(page.locator(".immunesim-caption")).not_to_contain_text("Active lupus")


def test_slider_changes_the_model_on_reset(page):
    control = page.locator(".immunesim-autoreactive")
    thumb = control.get_by_role("slider")
    thumb.focus()
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    expect(control).to_contain_text("Autoreactive fraction of marrow output: 45%")
    expect(page.get_by_text("Press Reset to start a run with these settings.")).to_be_visible()
    in_use = page.locator(".immunesim-in-use")
    expect(in_use).to_contain_text("35% autoreactive")  # not applied before Reset

    page.get_by_role("button", name="Step").click()
    expect(page.locator(".immunesim-day")).to_have_text("Day -6", timeout=STEP_MS)
    page.get_by_role("button", name="Reset").click()
    expect(in_use).to_contain_text("45% autoreactive", timeout=BUILD_MS)
    expect(page.locator(".immunesim-day")).to_have_text("Day -7")
    expect(page.get_by_text("Press Reset to start a run with these settings.")).to_have_count(0)


def test_chart_is_drawn_in_the_browser_with_the_published_targets(page):
    lines = chart_lines(page)
    for name in ("B cells", "CAR-T", "anti-dsDNA", "vaccine titre", "disease score"):
        assert lines[name], f"no {name} line on the chart"
    assert lines["B cells"][-1][0] == -7
    assert all(v is None for _, v in lines["CAR-T"])  # no CAR-T yet: a gap on the log axis
    published = [n for n in lines if n.startswith("published: ")]
    assert "published: B cells return 110 ± 32 d (Mackensen 2022)" in published
    assert "published: CAR-T peak 7-14 d (Stein 2019)" in published
    assert any("remission by day 90" in n for n in published)
    expect(page.locator(".immunesim-sources")).to_contain_text("Mackensen 2022 abstract")
    page.get_by_role("button", name="Step").click()
    wait_for_chart_day(page, -6)  # the new day is added to the lines in the browser
    assert len(chart_lines(page)["B cells"]) == len(lines["B cells"]) + 1


def test_play_speed_sets_the_days_per_second(page):
    speed = page.locator(".immunesim-speed")
    speed.get_by_role("button", name="1", exact=True).click()
    expect(speed.get_by_role("button", name="1", exact=True)).to_have_class(
        re.compile("v-item--active")
    )
    before = day_of(page)
    started = time.monotonic()
    page.get_by_role("button", name="Play").click()
    page.wait_for_function(
        f"parseInt(document.querySelector('.immunesim-day').innerText.split(' ')[1]) > {before}",
        timeout=STEP_MS,
    )
    page.wait_for_timeout(2000)
    page.get_by_role("button", name="Pause").click()
    elapsed = time.monotonic() - started
    expect(page.get_by_role("button", name="Play")).to_be_enabled(timeout=STEP_MS)
    played = day_of(page) - before
    # at 1 day a second (a busy machine only plays slower); the default 10 would pass 20
    assert 1 <= played <= elapsed + 2, (played, elapsed)


def test_day_scrubber_shows_a_past_day(page):
    for day in (-6, -5, -4):
        page.get_by_role("button", name="Step").click()
        expect(page.locator(".immunesim-day")).to_have_text(f"Day {day}", timeout=STEP_MS)
    wait_for_chart_day(page, -4)
    lattice = page.locator(".immunesim-lattice")
    latest = lattice.screenshot()
    slider = page.locator(".immunesim-scrubber").get_by_role("slider")
    slider.focus()
    slider.press("Home")
    expect(page.locator(".immunesim-day")).to_have_text("Day -7", timeout=STEP_MS)
    expect(page.locator(".immunesim-scrub-day")).to_have_text("Showing day -7 (latest -4)")
    expect(page.locator(".immunesim-caption")).to_contain_text("Active lupus")
    wait_for_chart_day(page, -7)  # the chart as it was on that day
    assert lattice.screenshot() != latest
    slider.press("End")
    expect(page.locator(".immunesim-day")).to_have_text("Day -4", timeout=STEP_MS)
    wait_for_chart_day(page, -4)
    assert lattice.screenshot() == latest  # the same day, the same picture


def test_scenario_comparison_and_download(page):
    choose(page, ".immunesim-compare", "sle_rituximab")
    expect(page.get_by_text("Press Reset to start a run with these settings.")).to_be_visible()
    page.get_by_role("button", name="Reset").click()
    in_use = page.locator(".immunesim-in-use")
    expect(in_use).to_contain_text("sle_rituximab: rituximab 1 g", timeout=BUILD_MS)
    expect(page.locator(".immunesim-lattice")).to_have_count(2)
    page.get_by_role("button", name="Step").click()
    wait_for_chart_day(page, -6)
    lines = chart_lines(page)
    assert lines["B cells (rituximab 1 g)"][-1][0] == -6
    # the same patient: the same blood on the baseline day before either therapy
    assert lines["B cells (rituximab 1 g)"][-2] == lines["B cells"][-2]
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the run (CSV)").click()
    assert download.value.suggested_filename == "immunesim_sle_cd19_cart_seed1.csv"
    table = Path(download.value.path()).read_text().splitlines()
    assert table[0].startswith("scenario,therapy,seed,step,day,")
    rows = [r.split(",") for r in table[1:]]
    assert {r[0] for r in rows} == {"sle_cd19_cart", "sle_rituximab"}
    assert max(float(r[4]) for r in rows) == -6.0

    choose(page, ".immunesim-scenario", "sle_bcma_cd19_cart")
    targets = page.locator(".immunesim-targets")
    expect(targets.get_by_role("checkbox", name="BCMA")).to_be_checked()  # its own therapy
    choose(page, ".immunesim-scenario", "sle_rituximab")  # the compared one: no comparison
    expect(page.locator(".immunesim-dose")).to_have_count(0)  # no CAR-T to set
    expect(page.locator(".immunesim-compare")).to_contain_text("(none)")
    page.get_by_role("button", name="Reset").click()
    expect(in_use).to_have_text(
        "Running: sle_rituximab: rituximab 1 g, 35% autoreactive marrow output, seed 1",
        timeout=BUILD_MS,
    )
    expect(page.locator(".immunesim-lattice")).to_have_count(1)


def test_busy_server_says_so_and_frees_a_closed_tabs_simulation(browser, server, page):
    errors: list[str] = []
    others = [open_app(browser, server, errors) for _ in range(MAX_RUNS)]
    for other in others:  # every simulation slot playing (slowly: a light load)
        other.locator(".immunesim-speed").get_by_role("button", name="1", exact=True).click()
        other.get_by_role("button", name="Play").click()
        expect(other.get_by_role("button", name="Pause")).to_be_visible(timeout=STEP_MS)
    for other in others:
        # Pause shows as soon as Play is pressed; the play loop takes its slot a moment
        # later, in its own thread, and holds it from its first day on
        expect(other.locator(".immunesim-day")).not_to_have_text("Day -7", timeout=STEP_MS)
    page.get_by_role("button", name="Step").click()
    busy = page.locator(".immunesim-busy")
    expect(busy).to_contain_text(f"IMMUNESIM_APP_MAX_RUNS={MAX_RUNS}", timeout=STEP_MS)
    expect(page.locator(".immunesim-day")).to_have_text("Day -7")  # not run
    others[0].close(run_before_unload=True)  # a playing tab goes: its simulation stops
    deadline = time.monotonic() + STEP_MS / 1000
    while day_of(page) == -7:
        assert time.monotonic() < deadline, "the closed tab's simulation was not freed"
        page.get_by_role("button", name="Step").click()
        page.wait_for_timeout(500)
    expect(busy).to_have_count(0)
    for other in others[1:]:
        other.get_by_role("button", name="Pause").click()
        other.close()
    assert not errors, f"JavaScript errors on the other pages: {errors}"


def test_page_fits_1024_by_768(page):
    page.set_viewport_size({"width": 1024, "height": 768})
    page.wait_for_timeout(500)  # laid out again
    assert page.evaluate("document.documentElement.scrollWidth") <= 1024
    for what in (
        page.get_by_role("button", name="Step"),
        page.get_by_role("button", name="Play"),
        page.get_by_role("button", name="Reset"),
        page.locator(".immunesim-speed"),
        page.locator(".immunesim-day"),
        page.locator(".immunesim-caption"),
        page.locator(".immunesim-scenario"),
        page.locator(".immunesim-lattice"),
        page.locator(".immunesim-course"),
        page.locator(".immunesim-scrubber").get_by_role("slider"),
        page.get_by_role("button", name="Download the run (CSV)"),
    ):
        box = what.bounding_box()
        assert box is not None, what
        inside = box["x"] >= 0 and box["x"] + box["width"] <= 1024
        assert inside and box["y"] + box["height"] <= 768, (what, box)
    chart = page.locator(".immunesim-course").bounding_box()
    assert chart["width"] >= 400 and chart["height"] >= 300


def _sources(images, count: int, differ_from: list[str] | None = None) -> list[str]:
    """The ``src`` of the first ``count`` images, once each differs from ``differ_from``
    (redrawn), within the step wait."""
    deadline = time.monotonic() + STEP_MS / 1000
    while True:
        now = [images.nth(i).get_attribute("src") or "" for i in range(count)]
        if differ_from is None or all(a != b for a, b in zip(now, differ_from, strict=True)):
            return now
        assert time.monotonic() < deadline, "not every figure was redrawn"
        time.sleep(0.2)


def test_mesa_solaraviz_draws_the_lattice_and_the_course_and_steps(browser, mesa_server):
    """Mesa's own SolaraViz page on ImmuneModel: the lattice (Mesa's SpaceRenderer over the
    grid's property layers) and the course (two make_plot_component plots) are drawn, Mesa's
    Step advances the model and redraws all three, another tab has a model of its own, and
    Reset with another seed builds another patient."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 950})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(mesa_server)
    expect(page.get_by_text("Step: 0")).to_be_visible(timeout=BUILD_MS)
    figures = page.locator("img")  # Matplotlib figures: the lattice and the two plots
    expect(figures).to_have_count(3, timeout=STEP_MS)
    assert "Traceback" not in page.locator("body").inner_text()
    first = _sources(figures, 3)
    page.get_by_role("button", name="Step").click()
    expect(page.get_by_text("Step: 1")).to_be_visible(timeout=STEP_MS)
    _sources(figures, 3, differ_from=first)  # a day later: every figure redrawn
    other = browser.new_page(viewport={"width": 1400, "height": 950})
    other.goto(mesa_server)  # another tab: a model of its own, at its start
    expect(other.get_by_text("Step: 0")).to_be_visible(timeout=BUILD_MS)
    other.close()
    expect(page.get_by_text("Step: 1")).to_be_visible()

    seed = page.get_by_role("slider", name="Seed")
    seed.focus()
    seed.press("ArrowRight")  # seed 1 to 2
    page.get_by_role("button", name="Reset").click()
    expect(page.get_by_text("Step: 0")).to_be_visible(timeout=BUILD_MS)
    # another patient on the same day: another lattice
    _sources(figures, 1, differ_from=first[:1])
    assert not errors, f"JavaScript errors on the page: {errors}"
    page.close()

"""The interactive app in a real headless browser.

``immunesim app`` serves the app on a free localhost port (a subprocess, killed at the end
whatever happens); Debian's chromium, driven through playwright's Python package, loads the
page and uses it as a student would: the controls are there, a slider changes the model once
Reset is pressed, Step and Play advance the day and redraw the lattice and the plot.

No browser is downloaded: playwright launches the system's chromium (``apt-get install
chromium``). Without it the test is skipped, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """URL of ``immunesim app --scenario FILE`` on a free port, FILE being the default
    scenario with a 60-day run-in (a run builds four times faster than with the full 240
    days); the server is killed at the end."""
    tmp = tmp_path_factory.mktemp("app")
    default = (SCENARIOS / "sle_cd19_cart.toml").read_text()
    assert "run_in_days = 240\n" in default
    scenario = tmp / "sle_cd19_cart_short_run_in.toml"
    scenario.write_text(default.replace("run_in_days = 240\n", "run_in_days = 60\n"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*immunesim_cmd(), "app", "--port", str(port), "--scenario", str(scenario)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"immunesim app exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"immunesim app did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.3)
        assert f"open http://127.0.0.1:{port}" in log.read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and any child
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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


@pytest.fixture
def page(browser, server):
    """A fresh tab on the app (its own model), once the run-in is done."""
    page = browser.new_page(viewport={"width": 1400, "height": 950})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    expect(page.locator(".immunesim-day")).to_have_text("Day -7", timeout=BUILD_MS)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


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

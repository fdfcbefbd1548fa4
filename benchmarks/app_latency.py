"""Latencies of the interactive app as a student meets them: ``immunesim app`` served on this
machine and driven in headless chromium (Debian's, through playwright), 1, 2 and 10 browser
sessions at once.

    python benchmarks/app_latency.py [--lattice 80 100] [--sessions 1 2 10] [--steps 10]
                                     [--play-seconds 5] [--out results/app_latency.json]

For each lattice side (``$IMMUNESIM_APP_LATTICE``) the run-in of the default scenario is put
in the run-in cache first (untimed: the app's first model comes from the cache), then a
server is started and, for each number of sessions, that many tabs at 1024 x 768:

- **first model**: from asking for the page to the model at its baseline day with its chart
  drawn (the page, Solara's and ECharts' scripts, the run from the cache). The first page
  after the server starts also waits for the server to load the app: it is timed apart;
- **Step**: ``--steps`` times in every tab at once (median and 90th percentile over all),
  timed two ways. *In the page* (what a student sees): from the click reaching the page to
  the first frame that shows the next day (``performance.now()`` in a capturing click
  listener, then in the animation frame after the day's text changed), and to the chart's
  next day. *By the driver*: from playwright's click call to its polling seeing the next
  day, which adds playwright's own work (finding the button, checking it can be clicked,
  polling each frame: some 50-100 ms here);
- **Play**: simulated days per second at the fastest speed (20 days/s), over
  ``--play-seconds``, in every tab at once; tabs past the server's bound on simulations at
  once (``$IMMUNESIM_APP_MAX_RUNS``, default 2) are told so and counted as refused.

Beside the browser figures, the server's own work for a Step (the simulated day, the chart's
option and the lattice picture) is timed in this process. Writes ``--out`` (with the
hardware, versions and the load average before and after) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
PLAY_SPEED = 20
WAIT_MS = 120_000

#: In-page timestamps of a Step (``window.__step``): the click (captured before the app sees
#: it), the day label's change and the frame after it, and the chart's next day (polled
#: each frame).
STEP_TIMER = """
(() => {
  window.__step = {};
  document.addEventListener('click', () => { window.__step = {click: performance.now()}; }, true);
  const day = () => {
    const el = document.querySelector('.immunesim-course');
    const chart = el && el.__vue__ && el.__vue__.chart;
    const b = chart && chart.getOption().series.find((s) => s.name === 'B cells');
    return b && b.data.length ? b.data[b.data.length - 1][0] : null;
  };
  const watch = () => {
    const el = document.querySelector('.immunesim-day');
    if (!el) { setTimeout(watch, 50); return; }
    new MutationObserver(() => {
      const t = window.__step;
      if (t.click === undefined || t.day !== undefined) return;
      t.day = performance.now();
      const shown = parseInt(el.innerText.split(' ')[1]);
      requestAnimationFrame(() => { t.frame = performance.now(); });
      const poll = () => {
        if (day() === shown) t.chart = performance.now();
        else requestAnimationFrame(poll);
      };
      poll();
    }).observe(el, {subtree: true, childList: true, characterData: true});
  };
  watch();
})();
"""

CHART_DAY = """
() => {
  const el = document.querySelector('.immunesim-course');
  if (!el || !el.__vue__ || !el.__vue__.chart) return null;
  const b = el.__vue__.chart.getOption().series.find((s) => s.name === 'B cells');
  return b && b.data.length ? b.data[b.data.length - 1][0] : null;
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def server_step_ms(lattice: int, steps: int) -> dict[str, float]:
    """The server's work for a Step, in this process: the simulated day with its frame
    (``LiveRun.step``), the chart's option and the lattice picture (medians, ms)."""
    os.environ["IMMUNESIM_APP_LATTICE"] = str(lattice)
    from immunesim.viz.live import (
        LiveRun,
        Settings,
        chart_days,
        chart_targets,
        course_chart,
        lattice_png,
        load_app_scenario,
    )

    s = load_app_scenario()
    t0 = time.perf_counter()
    run = LiveRun(s, Settings.from_scenario(s))  # puts the run-in in the cache
    first_model = time.perf_counter() - t0
    targets = chart_targets(s)
    for _ in range(10):  # into the therapy: CAR-T on the lattice
        run.step()
    parts: dict[str, list[float]] = {"step": [], "chart": [], "lattice": []}
    for _ in range(steps):
        t0 = time.perf_counter()
        frame = run.step()
        t1 = time.perf_counter()
        first, last = chart_days(run.start_day, frame.day)
        course_chart([("run", frame, run.scenario)], first, last, targets)
        t2 = time.perf_counter()
        lattice_png(frame, run.zones, scale=1, compress=1)
        t3 = time.perf_counter()
        parts["step"].append(t1 - t0)
        parts["chart"].append(t2 - t1)
        parts["lattice"].append(t3 - t2)
    out = {k: 1000 * statistics.median(v) for k, v in parts.items()}
    out["total"] = sum(out.values())
    out["first_model_in_process_s"] = first_model
    return out


def start_server(lattice: int, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "IMMUNESIM_APP_LATTICE": str(lattice)}
    cmd = [sys.executable, "-m", "immunesim.cli", "app", "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"immunesim app exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"immunesim app did not answer:\n{log.read_text()}")
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def day_on_page(page) -> int:
    return int((await page.locator(".immunesim-day").inner_text()).split()[1])


async def open_session(browser, url: str) -> tuple[Any, float | None]:
    """A new tab and the seconds to its first model (None when it did not come)."""
    page = await browser.new_page(viewport={"width": 1024, "height": 768})
    await page.add_init_script(STEP_TIMER)
    t0 = time.perf_counter()
    try:
        await page.goto(url, timeout=WAIT_MS)
        await page.wait_for_function(f"({CHART_DAY})() === -7", timeout=WAIT_MS)
    except Exception:  # e.g. a timeout on an overloaded machine: counted as failed
        return page, None
    return page, time.perf_counter() - t0


async def steps(page, n: int) -> tuple[dict[str, list[float]], int]:
    """``n`` Steps; for each, seconds from the click to the next day: on the page's first
    frame showing it and on the chart (timed in the page), and as the driver sees it (on the
    page and on the chart); and how many did not come (the server was busy, or the page did
    not answer)."""
    times: dict[str, list[float]] = {"frame": [], "chart": [], "driver_day": [], "driver_chart": []}
    missed = 0
    for _ in range(n):
        try:
            target = await day_on_page(page) + 1
            t0 = time.perf_counter()
            await page.get_by_role("button", name="Step").click(timeout=10_000)
            await page.wait_for_function(
                f"document.querySelector('.immunesim-day').innerText === 'Day {target}'",
                timeout=10_000,
                polling="raf",
            )
            t1 = time.perf_counter()
            await page.wait_for_function(
                f"({CHART_DAY})() === {target}", timeout=10_000, polling="raf"
            )
            t2 = time.perf_counter()
            t = await page.wait_for_function(
                "window.__step.frame !== undefined && window.__step.chart !== undefined "
                "&& window.__step",
                timeout=10_000,
            )
            inpage = await t.json_value()
        except Exception:  # no slot (the page says the server is busy), or no answer
            missed += 1
            continue
        times["frame"].append((inpage["frame"] - inpage["click"]) / 1000)
        times["chart"].append((inpage["chart"] - inpage["click"]) / 1000)
        times["driver_day"].append(t1 - t0)
        times["driver_chart"].append(t2 - t0)
    return times, missed


async def play(page, seconds: float) -> float | None:
    """Days per second while playing at :data:`PLAY_SPEED`; None when refused (or the page
    did not answer)."""
    try:
        speed = page.locator(".immunesim-speed")
        await speed.get_by_role("button", name=str(PLAY_SPEED), exact=True).click(timeout=10_000)
        await page.get_by_role("button", name="Play").click(timeout=10_000)
        await page.wait_for_timeout(1000)  # the loop under way (or refused)
        d0, t0 = await day_on_page(page), time.perf_counter()
        await page.wait_for_timeout(1000 * seconds)
        d1, t1 = await day_on_page(page), time.perf_counter()
        if await page.get_by_role("button", name="Pause").count():
            await page.get_by_role("button", name="Pause").click(timeout=10_000)
        if d1 == d0 and await page.locator(".immunesim-busy").count():
            return None  # the page says the server is busy
    except Exception:
        return None
    return (d1 - d0) / (t1 - t0)


async def measure(url: str, sessions: int, n_steps: int, play_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            opened = await asyncio.gather(*(open_session(browser, url) for _ in range(sessions)))
            pages = [pg for pg, t in opened if t is not None]
            firsts = [t for _, t in opened if t is not None]
            stepped = await asyncio.gather(*(steps(pg, n_steps) for pg in pages))
            timed = (
                {k: [t for d, _ in stepped for t in d[k]] for k in stepped[0][0]} if stepped else {}
            )
            rates = await asyncio.gather(*(play(pg, play_s) for pg in pages)) if play_s > 0 else []
            played = [r for r in rates if r is not None]
            for pg, _ in opened:
                try:
                    await pg.close(run_before_unload=True)
                except Exception:
                    pass
        finally:
            await browser.close()

    def ms(values: list[float], q: float) -> float | None:
        v = quantile(values, q)
        return None if v is None else 1000 * v

    return {
        "sessions": sessions,
        "sessions_without_a_model": sessions - len(firsts),
        "first_model_s": {"median": quantile(firsts, 0.5), "max": max(firsts, default=None)},
        # in the page: the click to the first frame with the next day, and to the chart's;
        # by the driver: playwright's click call to its polling seeing the next day
        **{
            name: {"median": ms(timed.get(key, []), 0.5), "p90": ms(timed.get(key, []), 0.9)}
            for name, key in (
                ("step_in_page_ms", "frame"),
                ("step_to_chart_in_page_ms", "chart"),
                ("step_to_day_ms", "driver_day"),
                ("step_to_chart_ms", "driver_chart"),
            )
        },
        "steps_missed": sum(r for _, r in stepped),
        "steps": len(pages) * n_steps,
        "play_days_per_s": {
            "each": played,
            "median": quantile(played, 0.5),
            "total": sum(played),
        },
        "play_refused": sum(r is None for r in rates),
    }


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| lattice | sessions | first model (s), median / max "
        "| Step in the page: to the day / to the chart (ms), median (p90) "
        "| Step by the driver: to the day / to the chart (ms), median (p90) "
        "| Play (days/s a tab), median | tabs playing / refused |",
        "|---|---|---|---|---|---|---|",
    ]

    def pair(a: dict[str, float | None], b: dict[str, float | None]) -> str:
        return (
            f"{_fmt(a['median'], '.0f')} ({_fmt(a['p90'], '.0f')}) / "
            f"{_fmt(b['median'], '.0f')} ({_fmt(b['p90'], '.0f')})"
        )

    for r in results:
        for m in r["browser"]:
            play, first = m["play_days_per_s"], m["first_model_s"]
            rows.append(
                f"| {r['lattice']} x {r['lattice']} | {m['sessions']} "
                f"| {_fmt(first['median'], '.2f')} / {_fmt(first['max'], '.2f')}"
                + (
                    f" ({m['sessions_without_a_model']} none)"
                    if m["sessions_without_a_model"]
                    else ""
                )
                + f" | {pair(m['step_in_page_ms'], m['step_to_chart_in_page_ms'])}"
                f" | {pair(m['step_to_day_ms'], m['step_to_chart_ms'])}"
                + (f" ({m['steps_missed']} of {m['steps']} missed)" if m["steps_missed"] else "")
                + f" | {_fmt(play['median'], '.1f')} | {len(play['each'])} / {m['play_refused']} |"
            )
    rows += [
        "",
        "| lattice | server's work for a Step (ms): simulated day + chart option + lattice "
        "picture = total | first page after the server starts (s) |",
        "|---|---|---|",
    ]
    for r in results:
        s = r["server_step_ms"]
        start = r["first_page_after_server_start_s"]
        rows.append(
            f"| {r['lattice']} x {r['lattice']} | {s['step']:.0f} + {s['chart']:.1f} "
            f"+ {s['lattice']:.1f} = {s['total']:.0f} | {start:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lattice", type=int, nargs="+", default=[80, 100])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 10])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--play-seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "app_latency.json")
    args = ap.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"error: {CHROMIUM} not found (apt-get install chromium)")

    from immunesim import io

    load_before = os.getloadavg()
    results = []
    work = Path(tempfile.mkdtemp(prefix="immunesim-app-latency-"))
    for lattice in args.lattice:
        server = server_step_ms(lattice, 20)
        port = free_port()
        proc = start_server(lattice, port, work / f"server_{lattice}.log")
        url = f"http://127.0.0.1:{port}/"
        try:
            # the server loads the app at its first page: timed apart, as the page a teacher
            # opens before the class
            first_page = asyncio.run(measure(url, 1, 0, 0))["first_model_s"]["max"] or float("nan")
            browser = [
                asyncio.run(measure(url, n, args.steps, args.play_seconds)) for n in args.sessions
            ]
        finally:
            stop_server(proc)
        results.append(
            {
                "lattice": lattice,
                "first_page_after_server_start_s": first_page,
                "server_step_ms": server,
                "browser": browser,
            }
        )
        print(f"lattice {lattice}: done", file=sys.stderr)
    out = {
        "benchmark": "app_latency",
        "date": date.today().isoformat(),
        "max_runs": int(os.environ.get("IMMUNESIM_APP_MAX_RUNS") or 2),
        "play_speed_days_per_s": PLAY_SPEED,
        "viewport": "1024x768",
        "results": results,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "hardware": io.hardware(),
        "versions": {
            **io.versions(),
            **{k: v for k, v in _browser_versions().items() if v},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(table(results))
    print(f"\nload average before {load_before}, after {out['load_average_after']}")
    print(f"wrote {args.out}")


def _browser_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in ("solara", "playwright"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["chromium"] = subprocess.run(
            [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        out["chromium"] = None
    return out


if __name__ == "__main__":
    main()

"""The interactive educator app: the CAR-T immune reset in the browser (``immunesim app``).

A Solara page over :class:`immunesim.viz.live.LiveRun`. The sidebar chooses the scenario
(the one given to ``immunesim app`` first, then the shipped ones), a second therapy to
compare on the same patient, the CAR-T dose and the markers the CAR-T cells target, the
autoreactive fraction of the marrow's B-cell output and the seed; **Reset** builds a new run
with them (the untreated run-in up to the baseline day comes from the run-in cache, or is
computed then behind a progress bar). **Step** advances one simulated day, **Play** keeps
stepping at the chosen speed (days per second) until **Pause** or the end of the follow-up.
While the page shows a day, the server computes the next one when a simulation slot is free
(:func:`prefetch`), so that a Step only has to show it.
The page shows the day, the phase of the course, the lattice (one pixel per site, drawn
from the arrays and scaled up by the browser) with its colour legend, and the clinical
course drawn in the browser (ECharts) with the published targets; the day scrubber shows
any day run so far, and the run's time series can be downloaded as CSV.

Every browser tab gets its own run (Solara keeps reactive variables and tasks per virtual
kernel); runs of the same seed and disease settings share the cached run-in. The server
computes at most ``$IMMUNESIM_APP_MAX_RUNS`` simulations at once (building, stepping,
playing; :class:`~immunesim.viz.live.RunSlots`); past that a tab says so instead of running.
Serve it with ``immunesim app`` or ``solara run immunesim.viz.app``; the scenario is
``$IMMUNESIM_APP_SCENARIO`` (default: ``scenarios/sle_cd19_cart.toml``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import ipyvuetify
import pandas as pd
import solara
import traitlets
from solara.lab import task

from immunesim.scenario import Scenario
from immunesim.viz.animate import PALETTE, ZONE_COLOURS, ZONE_NAMES
from immunesim.viz.live import (
    DOSE_CHOICES,
    RUN_STYLES,
    TARGET_CHOICES,
    LiveRun,
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
    therapy_label,
)
from immunesim.viz.snapshots import CATEGORIES

#: Play speeds offered (simulated days per second); the server steps as fast as it can
#: when a speed is more than it manages.
SPEEDS = (1, 2, 5, 10, 20)
DEFAULT_SPEED = 10
#: While playing behind its speed, the page is redrawn at least this often (seconds): the
#: simulation keeps its speed and the page skips days (the chart still has every one).
FRAME_GAP_S = 0.25
#: Seconds a Step waits for a free simulation slot (other tabs' steps take some 50 ms each)
#: before the page says that the server is busy.
STEP_WAIT_S = 1.0
#: Seconds Play waits for a free simulation slot: long enough for a day computed ahead
#: (:func:`prefetch`, some 50 ms) to finish and free its slot.
PLAY_WAIT_S = 0.3
#: What each target marker is on (immunesim/model/cells.py), shown next to its checkbox.
TARGET_HINTS = {
    "CD19": "B cells and plasmablasts",
    "CD20": "B cells",
    "BCMA": "germinal-centre B cells, plasmablasts and plasma cells",
}
#: The choice of no comparison in the "Compare with" menu.
NO_COMPARISON = "(none)"

SCENARIO = load_app_scenario()
#: The scenarios offered in the page, by name, the one given to ``immunesim app`` first.
SCENARIOS: dict[str, Scenario] = app_scenarios(SCENARIO)
#: Simulations computed at once, over every tab of this server.
SLOTS = RunSlots(max_runs())
#: The published targets the chart draws (the same for every scenario).
TARGETS = chart_targets(SCENARIO)


#: The chart's Vue template: ECharts (the copy that Solara serves, so it works offline) drawn
#: from two traits, both JSON text. ``chart_option`` is the whole option with the lines' data
#: left out (axes, legend, published targets, therapy lines): when it changes the chart is
#: drawn anew. ``lines`` holds the lines' data: when only it changes (a step), the lines are
#: updated in place. The chart is drawn with the latest traits once ECharts has loaded.
CHART_TEMPLATE = """
<template>
  <div ref="echarts" class="immunesim-course" :style="box_style"></div>
</template>
<script>
module.exports = {
  mounted() {
    (async () => {
      const echarts = (
        await this.import([`${this.getCdn()}/echarts@5.4.0/dist/echarts.common.min.js`])
      )[0];
      if (this._isDestroyed) return;
      this.chart = echarts.init(this.$refs.echarts);
      this.draw();
      this.resizeObserver = new ResizeObserver(() => this.chart && this.chart.resize());
      this.resizeObserver.observe(this.$refs.echarts);
    })();
  },
  beforeDestroy() {
    if (this.resizeObserver) this.resizeObserver.disconnect();
    if (this.chart) this.chart.dispose();
  },
  watch: {
    chart_option() { this.draw(); },
    lines() { this.update(); },
  },
  methods: {
    draw() {
      if (!this.chart) return;
      const option = JSON.parse(this.chart_option || "{}");
      if (!option.series) return;
      const lines = JSON.parse(this.lines || "[]");
      option.series = option.series.map(
        (s, i) => (i < lines.length ? Object.assign(s, {data: lines[i]}) : s)
      );
      this.chart.setOption(option, true);
      this.drawn = lines.length;
    },
    update() {
      if (!this.chart) return;
      const lines = JSON.parse(this.lines || "[]");
      if (lines.length !== this.drawn) return this.draw();
      // drawn at the next frame: the page shows the new day first
      this.chart.setOption({series: lines.map((d) => ({data: d}))}, {lazyUpdate: true});
    },
    import(deps) {
      return this.loadRequire().then(() => {
        if (window.jupyterVue) {
          define("vue", [], () => window.jupyterVue.Vue);
        } else {
          define("vue", ["jupyter-vue"], (jupyterVue) => jupyterVue.Vue);
        }
        return new Promise((resolve, reject) => {
          requirejs(deps, (...modules) => resolve(modules), reject);
        });
      });
    },
    loadRequire() {
      if (window.requirejs) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = `${this.getCdn()}/requirejs@2.3.6/require.js`;
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
      });
    },
    getJupyterBaseUrl() {
      if (document.getElementsByTagName("base").length) return "./";
      const labConfigData = document.getElementById("jupyter-config-data");
      if (labConfigData) return JSON.parse(labConfigData.textContent).baseUrl;
      let base = document.body.dataset.baseUrl || document.baseURI;
      if (!base.endsWith("/")) base += "/";
      return base;
    },
    getCdn() {
      return window.solara ? window.solara.cdn : `${this.getJupyterBaseUrl()}_solara/cdn`;
    },
  },
};
</script>
"""


class CourseChartWidget(ipyvuetify.VuetifyTemplate):
    """The clinical course drawn in the browser (:data:`CHART_TEMPLATE`). The option and
    its data are JSON text rather than dicts and lists: the page's renderer walks and
    compares the arguments of its elements item by item, which for the thousand-odd points
    of a course took most of the server's redraw of a step; a text is compared in one go."""

    template = traitlets.Unicode(CHART_TEMPLATE).tag(sync=True)
    #: The ECharts option without the lines' data (JSON).
    chart_option = traitlets.Unicode("{}").tag(sync=True)
    #: The data of the first lines of ``chart_option``: ``[[[day, value], ...], ...]`` (JSON).
    lines = traitlets.Unicode("[]").tag(sync=True)
    box_style = traitlets.Unicode("height: 440px; width: 100%").tag(sync=True)


@solara.component
def CourseChart(option: tuple[str, str], height: str = "440px"):
    """A chart split by :func:`chart_json`, drawn in the browser; a new day updates the
    lines in place."""
    skeleton, lines = option
    return CourseChartWidget.element(
        chart_option=skeleton, lines=lines, box_style=f"height: {height}; width: 100%"
    )


scenario_name = solara.reactive(SCENARIO.name)
compare_name = solara.reactive(NO_COMPARISON)
settings = solara.reactive(Settings.from_scenario(SCENARIO))
#: Days stepped in this tab: bumped after each step so that the page redraws the run's
#: latest frame. The page shows the frame of the current runs only, so a play loop that
#: finishes its day on a run just replaced by Reset changes nothing on screen.
days_stepped = solara.reactive(0)
playing = solara.reactive(False)
speed = solara.reactive(DEFAULT_SPEED)
#: The day the scrubber shows, or None for the latest.
scrub_day: solara.Reactive[float | None] = solara.reactive(None)
show_damage = solara.reactive(True)
#: Whether the runs of this tab reached the end of their follow-up.
finished_run = solara.reactive(False)
#: Why the server did not run what was asked (every simulation slot taken), or "".
notice = solara.reactive("")


@dataclasses.dataclass(frozen=True)
class Course:
    """The runs of a tab: the chosen therapy, and the one compared with it on the same
    patient (same seed, same cached run-in), if any."""

    runs: tuple[LiveRun, ...]

    @property
    def main(self) -> LiveRun:
        return self.runs[0]

    @property
    def finished(self) -> bool:
        return all(r.frame.finished for r in self.runs)

    def step(self) -> None:
        for r in self.runs:
            r.step()

    def labels(self) -> list[str]:
        return [r.therapy for r in self.runs]

    def csv(self) -> bytes:
        """The time series of every run, one row per run and day, as CSV."""
        parts = []
        for r in self.runs:
            df = r.frame.timeseries
            head = pd.DataFrame(
                {"scenario": r.scenario.name, "therapy": r.therapy, "seed": r.settings.seed},
                index=df.index,
            )
            parts.append(pd.concat([head, df], axis=1))
        return pd.concat(parts, ignore_index=True).to_csv(index=False).encode()


def _tab_gone() -> Callable[[], bool]:
    """A test of whether this tab is gone: its virtual kernel closed (the tab was closed),
    or none of its pages is connected any more (the browser went away without saying so).
    Outside a kernel (tests) it never is."""
    try:
        from solara.server import kernel_context

        context = kernel_context.get_current_context()
    except Exception:  # no kernel context: nothing to watch
        return lambda: False

    def gone() -> bool:
        if context.closed_event.is_set():
            return True
        status = dict(getattr(context, "page_status", None) or {})
        return bool(status) and all(getattr(v, "name", "") != "CONNECTED" for v in status.values())

    return gone


def _comparison(name: str, compare: str, chosen: Settings) -> Scenario | None:
    """The scenario to compare with, when it is another one with the same patient."""
    if compare in (NO_COMPARISON, name) or compare not in SCENARIOS:
        return None
    main, other = SCENARIOS[name], SCENARIOS[compare]
    return other if same_patient(main, other, chosen) else None


@task
def build(name: str, chosen: Settings, compare: str) -> Course:
    """New runs of scenario ``name`` (and ``compare``) with the ``chosen`` settings, through
    the run-in (progress in percent), once a simulation slot is free."""
    build.progress = 0.0
    gone = _tab_gone()
    if not SLOTS.try_acquire():
        notice.value = SLOTS.busy_message() + " Your run starts as soon as one is free."
        if not SLOTS.acquire(stop=lambda: gone() or not build.is_current()):
            raise RuntimeError("stopped while waiting for a free simulation slot")
    notice.value = ""
    try:
        scenarios = [SCENARIOS[name]]
        other = _comparison(name, compare, chosen)
        if other is not None:
            # the compared therapy keeps its own dose; the patient is the same
            own = Settings.from_scenario(other)
            scenarios.append(other)
        runs = []
        for k, s in enumerate(scenarios):
            mine = chosen if k == 0 else dataclasses.replace(
                own, autoreactive_fraction=chosen.autoreactive_fraction, seed=chosen.seed
            )  # fmt: skip

            def report(fraction: float, k: int = k) -> None:
                done = 100.0 * (k + fraction) / len(scenarios)
                if int(done) != int(build.progress or 0):
                    build.progress = done

            runs.append(LiveRun(s, mine, progress=report))
        course = Course(tuple(runs))
    finally:
        SLOTS.release()
    prefetch(course)
    return course


@task
def play(course: Course) -> None:
    """Step ``course`` at :data:`speed` days per second while :data:`playing` is set (and
    the tab is open), holding a simulation slot."""
    if not SLOTS.acquire(timeout=PLAY_WAIT_S):
        notice.value = SLOTS.busy_message()
        playing.value = False
        return
    notice.value = ""
    gone = _tab_gone()
    try:
        due = drawn = time.monotonic()
        while playing.value and play.is_current() and not gone():
            course.step()
            now = time.monotonic()
            due += 1.0 / max(speed.value, 1)
            # draw each day while on time; when behind, the simulation goes on at its
            # speed and the page shows every day it can (at least FRAME_GAP_S apart)
            if now <= due or now - drawn >= FRAME_GAP_S or course.finished:
                days_stepped.value += 1
                drawn = time.monotonic()
            if course.finished:
                finished_run.value = True
                playing.value = False
                break
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                time.sleep(0.001)  # let the page's messages through
                if pause < -1.0:  # far behind: do not try to catch up later
                    due = time.monotonic()
    finally:
        SLOTS.release()
    if not gone():
        prefetch(course)


def step(course: Course) -> None:
    """Advance ``course`` one day and redraw (or, after :data:`STEP_WAIT_S` without a free
    simulation slot, say why not)."""
    if not SLOTS.acquire(timeout=STEP_WAIT_S):
        notice.value = SLOTS.busy_message()
        return
    notice.value = ""
    try:
        course.step()
    finally:
        SLOTS.release()  # the slot bounds simulations, not the redrawing that follows
    scrub_day.value = None
    days_stepped.value += 1
    finished_run.value = course.finished
    prefetch(course)


def prefetch(course: Course) -> None:
    """Compute the runs' next day in the background while the page shows this one, when a
    simulation slot is free (:meth:`LiveRun.prefetch`): the next Step then only shows it.
    The slot is held while the day is computed, as for a Step."""
    if course.finished or not SLOTS.try_acquire():
        return

    def ahead() -> None:
        try:
            for r in course.runs:
                r.prefetch()
        finally:
            SLOTS.release()

    threading.Thread(target=ahead, name="immunesim-prefetch", daemon=True).start()


def reset() -> None:
    """Stop playing and build new runs with the current choices."""
    playing.value = False
    scrub_day.value = None
    notice.value = ""
    finished_run.value = False
    build(scenario_name.value, settings.value, compare_name.value)


def update(**changes) -> None:
    """Change some of the settings (they apply at the next reset)."""
    settings.value = dataclasses.replace(settings.value, **changes)


def choose_scenario(name: str) -> None:
    """Choose another scenario: its own settings, with this tab's patient (autoreactive
    fraction and seed); they apply at the next reset."""
    own = Settings.from_scenario(SCENARIOS[name])
    now = settings.value
    scenario_name.value = name
    settings.value = dataclasses.replace(
        own, autoreactive_fraction=now.autoreactive_fraction, seed=now.seed
    )
    if compare_name.value == name:
        compare_name.value = NO_COMPARISON


@solara.component
def Controls(course: Course | None):
    """The sidebar: the choices for the next run, and those of the one running."""
    s = settings.value
    chosen = SCENARIOS[scenario_name.value]
    solara.Text("Therapy and patient", style={"font-size": "1.25em", "font-weight": "500"})
    solara.Text("Changes apply when you press Reset.", style={"font-size": "0.85em"})
    solara.Select(
        "Scenario",
        values=list(SCENARIOS),
        value=scenario_name.value,
        on_value=choose_scenario,
        classes=["immunesim-scenario"],
    )
    solara.Text(
        f"{therapy_label(chosen)}: {chosen.description}",
        style={"font-size": "0.8em", "margin-top": "-14px"},
    )
    others = solara.use_memo(
        lambda: [
            n
            for n, sc in SCENARIOS.items()
            if n != scenario_name.value and same_patient(chosen, sc, s)
        ],
        [scenario_name.value, s],
    )
    solara.Select(
        "Compare with (same patient)",
        values=[NO_COMPARISON, *others],
        value=compare_name.value if compare_name.value in others else NO_COMPARISON,
        on_value=compare_name.set,
        classes=["immunesim-compare"],
    )
    if s.dose_per_kg is not None:
        with solara.Column(gap="0px", classes=["immunesim-dose"]):
            solara.Text(f"CAR-T dose: {s.dose_per_kg:,.0f} cells/kg")
            dose = s.dose_per_kg
            dose_index = min(range(len(DOSE_CHOICES)), key=lambda i: abs(DOSE_CHOICES[i] - dose))
            solara.SliderInt(
                "",
                value=dose_index,
                min=0,
                max=len(DOSE_CHOICES) - 1,
                thumb_label=False,
                on_value=lambda i: update(dose_per_kg=DOSE_CHOICES[i]),
            )
        with solara.Column(gap="0px", classes=["immunesim-targets"]):
            solara.Text("CAR-T target markers")
            for marker in TARGET_CHOICES:

                def toggle(on: bool, marker: str = marker) -> None:
                    chosen = set(settings.value.targets) - {marker} | ({marker} if on else set())
                    update(targets=tuple(m for m in TARGET_CHOICES if m in chosen))

                solara.Checkbox(
                    label=f"{marker} (on {TARGET_HINTS[marker]})",
                    value=marker in s.targets,
                    on_value=toggle,
                )
    with solara.Column(gap="0px", classes=["immunesim-autoreactive"]):
        solara.Text(f"Autoreactive fraction of marrow output: {s.autoreactive_fraction:.0%}")
        solara.SliderFloat(
            "",
            value=s.autoreactive_fraction,
            min=0.0,
            max=1.0,
            step=0.05,
            thumb_label=False,
            on_value=lambda v: update(autoreactive_fraction=round(v, 2)),
        )
    solara.InputInt(
        "Seed", value=s.seed, on_value=lambda v: update(seed=v), classes=["immunesim-seed"]
    )
    solara.Checkbox(label="Tint damaged tissue red", value=show_damage)
    problem = s.problem()
    pending = course is not None and (
        s != course.main.settings
        or scenario_name.value != course.main.scenario.name
        or (compare_name.value if compare_name.value in others else NO_COMPARISON)
        != (course.runs[1].scenario.name if len(course.runs) > 1 else NO_COMPARISON)
    )
    if problem:
        solara.Error(problem, dense=True)
    elif pending:
        solara.Warning("Press Reset to start a run with these settings.", dense=True)
    if course is not None:
        running = "; ".join(f"{r.scenario.name}: {r.describe()}" for r in course.runs)
        solara.Text(
            f"Running: {running}",
            classes=["immunesim-in-use"],
            style={"font-size": "0.85em"},
        )


def _built(course: Course | None) -> Course:
    """The runs a button acts on (the buttons that need them are disabled until built)."""
    if course is None:
        raise RuntimeError("no run yet: it is still being built")
    return course


@solara.component
def Buttons(course: Course | None):
    """Step, Play/Pause, Reset and the play speed."""
    # After Pause the loop still finishes the day it is on: Step and Play wait for it.
    idle = course is not None and not build.pending and not play.pending
    finished = course is not None and finished_run.value

    def toggle_play() -> None:
        playing.value = not playing.value
        if playing.value:
            scrub_day.value = None
            play(_built(course))

    with solara.Row(gap="8px", style={"align-items": "center", "flex-wrap": "wrap"}):
        solara.Button(
            "Step (+1 day)",
            icon_name="mdi-step-forward",
            small=True,
            on_click=lambda: step(_built(course)),
            disabled=not idle or finished,
        )
        if playing.value:
            solara.Button(
                "Pause", icon_name="mdi-pause", on_click=toggle_play, color="primary", small=True
            )
        else:
            solara.Button(
                "Play",
                icon_name="mdi-play",
                small=True,
                on_click=toggle_play,
                color="primary",
                disabled=not idle or finished,
            )
        solara.Button(
            "Reset",
            icon_name="mdi-restart",
            small=True,
            on_click=reset,
            disabled=build.pending or settings.value.problem() is not None,
        )
        solara.Text("Speed (days/s):", style={"margin-left": "4px", "font-size": "0.85em"})
        with solara.ToggleButtonsSingle(
            value=speed.value, on_value=speed.set, dense=True, classes=["immunesim-speed"]
        ):
            for v in SPEEDS:
                solara.Button(str(v), value=v)


@solara.component
def Legend():
    """Colour chips of the cell categories and zones, as
    :func:`~immunesim.viz.animate.cells_to_rgb` paints them."""

    def chip(rgb, label: str) -> str:
        colour = "rgb({},{},{})".format(*(int(c) for c in rgb))
        return (
            f'<span style="display:inline-flex;align-items:center;margin:1px 8px 1px 0">'
            f'<span style="width:12px;height:12px;background:{colour};'
            f'border:1px solid #888;margin-right:4px"></span>{label}</span>'
        )

    cells = "".join(chip(PALETTE[i], CATEGORIES[i]) for i in range(1, len(CATEGORIES)))
    zones = "".join(
        chip(ZONE_COLOURS[z], f"{ZONE_NAMES[z]} zone (empty site)") for z in range(len(ZONE_NAMES))
    )
    damage = chip((200, 30, 30), "damaged tissue") if show_damage.value else ""  # full tint
    solara.HTML(
        unsafe_innerHTML=f"<div>{cells}</div><div>{zones}{damage}</div>",
        style="font-size:0.78em;line-height:1.3",
        classes=["immunesim-legend"],
    )


def shown_day(course: Course) -> float:
    """The day the page shows: the scrubber's, or the latest. Reads :data:`days_stepped`,
    so that a component calling it is redrawn at each step."""
    _ = days_stepped.value
    latest = course.main.frame.day
    chosen = scrub_day.value
    return latest if chosen is None or chosen > latest else chosen


# Each step redraws only the components below that call shown_day() (the day, the caption,
# the lattices, the chart and the scrubber), not the page around them.


@solara.component
def DayLabel(course: Course | None):
    day = "Day …" if course is None else f"Day {course.main.at(shown_day(course)).day:.0f}"
    solara.Text(
        day,
        classes=["immunesim-day"],
        style={"font-size": "1.4em", "font-weight": "bold", "min-width": "4.2em"},
    )


@solara.component
def Caption(course: Course):
    caption = course.main.at(shown_day(course)).caption
    solara.Text(caption, classes=["immunesim-caption"], style={"font-size": "1.1em"})


@solara.component
def Lattice(course: Course, index: int, label: str | None):
    """One run's lattice on the day shown, one pixel per site scaled up by the browser."""
    run = course.runs[index]
    frame = run.at(shown_day(course))
    png = solara.use_memo(
        lambda: lattice_png(frame, run.zones, scale=1, damage=show_damage.value, compress=1),
        [frame, show_damage.value],
    )
    with solara.Column(gap="2px", style={"flex": "1 1 0", "min-width": "0"}):
        if label:
            solara.Text(label, style={"font-size": "0.85em", "font-weight": "500"})
        solara.Image(png, width="100%", classes=["immunesim-lattice"])


@solara.component
def Chart(course: Course):
    """The clinical course of every run up to the day shown, with the published targets."""
    shown = shown_day(course)
    frames = [r.at(shown) for r in course.runs]
    first, last = chart_days(course.main.start_day, course.main.frame.day)
    option = solara.use_memo(
        lambda: chart_json(
            course_chart(
                [
                    (label, f, r.scenario)
                    for label, f, r in zip(course.labels(), frames, course.runs, strict=True)
                ],
                first,
                last,
                TARGETS,
            )
        ),
        [*frames, first, last],
    )
    CourseChart(option, height="370px")


@solara.component
def Scrubber(course: Course):
    """A slider over the days run so far (the latest day follows the run), and the run's
    download. While playing it is disabled and left as it was (it follows the run again at
    Pause), which spares the page a message a day."""
    frozen = solara.use_ref((0.0, 0.0, [0.0]))
    if playing.value:
        shown, latest_day, days = frozen.current
    else:
        shown = shown_day(course)
        latest_day = course.main.frame.day
        df = course.main.frame.timeseries
        days = df.loc[df["day"] >= course.main.start_day - 1e-9, "day"].tolist()
        frozen.current = (shown, latest_day, days)
    index = min(range(len(days)), key=lambda i: abs(days[i] - shown))

    def go(i: int) -> None:
        scrub_day.value = None if i >= len(days) - 1 else float(days[i])

    with solara.Row(style={"align-items": "center"}, classes=["immunesim-scrubber"]):
        solara.Text(
            "Day scrubber"
            if shown >= latest_day
            else f"Showing day {shown:.0f} (latest {latest_day:.0f})",
            style={"min-width": "12em", "font-size": "0.9em"},
            classes=["immunesim-scrub-day"],
        )
        with solara.Column(style={"flex": "1 1 auto"}):
            solara.SliderInt(
                "",
                value=index,
                min=0,
                max=max(len(days) - 1, 0),
                thumb_label=False,
                on_value=go,
                disabled=playing.value or len(days) < 2,
            )
        solara.FileDownload(
            course.csv,
            filename=f"immunesim_{course.main.scenario.name}_seed{course.main.settings.seed}.csv",
            label="Download the run (CSV)",
        )


@solara.component
def Views(course: Course):
    """The lattices with their legend, and the clinical course."""
    L = course.main.scenario.lattice.size
    labels = course.labels()
    # the runs' names under their lattices say which lines are theirs
    styles = [f"{lab} ({RUN_STYLES[k % len(RUN_STYLES)]} lines)" for k, lab in enumerate(labels)]
    with solara.Columns([1, 1.9], gutters_dense=True):
        with solara.Card(margin=0, style={"padding": "8px"}):
            with solara.Column(gap="4px"):
                solara.Text(f"Tissue lattice ({L} x {L} sites)", style={"font-weight": "500"})
                solara.Text(
                    "Marrow (left) makes B cells; they meet T helpers in the lymphoid zone "
                    "(middle); autoantibodies damage the tissue (right).",
                    style={"font-size": "0.78em", "line-height": "1.25"},
                )
                with solara.Row(gap="6px"):
                    for k in range(len(course.runs)):
                        Lattice(course, k, styles[k] if len(course.runs) > 1 else None)
                Legend()
        with solara.Card(margin=0, style={"padding": "4px 8px"}):
            Chart(course)
            sources = "; ".join(f"{t.label}: {t.source}" for t in TARGETS)
            solara.Text(
                f"Shaded bands and lines: published targets. {sources}.",
                style={"font-size": "0.68em", "line-height": "1.2", "color": "#555"},
                classes=["immunesim-sources"],
            )


STYLE = """
.immunesim-lattice { image-rendering: pixelated; image-rendering: crisp-edges; }
.immunesim-speed .v-btn { min-width: 30px !important; padding: 0 4px !important; }
.v-navigation-drawer { min-width: 270px !important; max-width: 290px !important; }
.immunesim-controls .v-input { margin-top: 0; }
"""


@solara.component
def Live(course: Course | None):
    """The day, the buttons and what the runs show."""
    with solara.Row(style={"align-items": "center", "flex-wrap": "wrap"}):
        DayLabel(course)
        Buttons(course)
    if notice.value:
        solara.Warning(notice.value, dense=True, classes=["immunesim-busy"])
    if build.pending:
        start = SCENARIOS[scenario_name.value].endpoints.baseline_day
        solara.Text(
            f"Running the untreated disease up to day {start:.0f} ({build.progress or 0:.0f}%) ...",
            classes=["immunesim-building"],
        )
        solara.ProgressLinear(build.progress or True)
    elif build.error:
        solara.Error(f"The model could not be built: {build.exception}")
    elif play.error:
        solara.Error(f"The run stopped: {play.exception}")
    elif course is not None:
        Caption(course)
        Views(course)
        Scrubber(course)


@solara.component
def Page():
    """The app: a run is built when the page opens."""
    solara.Title("immunesim: the CAR-T immune reset")
    solara.Style(STYLE)

    def on_open() -> Callable[[], None]:
        reset()

        def on_close() -> None:  # the tab is gone: stop its play loop (and free its slot)
            try:
                playing.value = False
            except Exception:  # the kernel's state may be gone already; the loop sees it too
                pass

        return on_close

    solara.use_effect(on_open, [])
    course = build.value if build.finished else None
    with solara.Sidebar():
        Controls(course)
    with solara.AppBarTitle():
        solara.Text("immunesim: the CAR-T immune reset in lupus")
    Live(course)

"""The interactive educator app: the CAR-T immune reset in the browser (``immunesim app``).

A Solara page over :class:`immunesim.viz.live.LiveRun`. The sidebar sets the CAR-T dose,
the markers the CAR-T cells target, the autoreactive fraction of the marrow's B-cell output
and the seed; **Reset** builds a new run with them (the untreated run-in up to the baseline
day is computed then, behind a progress bar). **Step** advances one simulated day, **Play**
keeps stepping until **Pause** or the end of the follow-up. The page shows the day, the
phase of the course, the lattice (one pixel block per site, drawn from the arrays) with its
colour legend, and the time series so far.

Every browser tab gets its own run (Solara keeps reactive variables and tasks per virtual
kernel). Serve it with ``immunesim app`` or ``solara run immunesim.viz.app``; the scenario is
``$IMMUNESIM_APP_SCENARIO`` (default: ``scenarios/sle_cd19_cart.toml``).
"""

from __future__ import annotations

import dataclasses
import time

import solara
from solara.lab import task

from immunesim.viz.animate import PALETTE, ZONE_COLOURS, ZONE_NAMES
from immunesim.viz.live import (
    DOSE_CHOICES,
    HISTORY_DAYS,
    TARGET_CHOICES,
    Frame,
    LiveRun,
    Settings,
    course_png,
    lattice_png,
    load_app_scenario,
)
from immunesim.viz.snapshots import CATEGORIES

#: Seconds between days while playing (on top of the step and the redraw).
PLAY_PAUSE_S = 0.05
#: What each target marker is on (immunesim/model/cells.py), shown next to its checkbox.
TARGET_HINTS = {
    "CD19": "B cells and plasmablasts",
    "CD20": "B cells",
    "BCMA": "plasmablasts and long-lived plasma cells",
}

SCENARIO = load_app_scenario()

settings = solara.reactive(Settings.from_scenario(SCENARIO))
#: Days stepped in this tab: bumped after each step so that the page redraws the run's
#: latest frame. The page shows the frame of the current run only, so a play loop that
#: finishes its day on a run just replaced by Reset changes nothing on screen.
days_stepped = solara.reactive(0)
playing = solara.reactive(False)
show_damage = solara.reactive(True)


@task
def build(chosen: Settings) -> LiveRun:
    """A new run with ``chosen`` settings, through the run-in (progress in percent)."""
    build.progress = 0.0

    def report(fraction: float) -> None:
        if int(100 * fraction) != int(build.progress or 0):
            build.progress = 100.0 * fraction

    return LiveRun(SCENARIO, chosen, progress=report)


@task
def play(run: LiveRun) -> None:
    """Step ``run`` one day at a time while :data:`playing` is set."""
    while playing.value and play.is_current():
        step(run)
        if run.frame.finished:
            playing.value = False
        time.sleep(PLAY_PAUSE_S)


def step(run: LiveRun) -> None:
    """Advance ``run`` one day and redraw."""
    run.step()
    days_stepped.value += 1


def reset() -> None:
    """Stop playing and build a new run with the current settings."""
    playing.value = False
    build(settings.value)


def update(**changes) -> None:
    """Change some of the settings (they apply at the next reset)."""
    settings.value = dataclasses.replace(settings.value, **changes)


@solara.component
def Controls(run: LiveRun | None):
    """The sidebar: the settings of the next run, and those of the one running."""
    s = settings.value
    solara.Text("Therapy and patient", style={"font-size": "1.25em", "font-weight": "500"})
    solara.Text("Changes apply when you press Reset.", style={"font-size": "0.85em"})
    with solara.Column(gap="0px", classes=["immunesim-dose"]):
        solara.Text(f"CAR-T dose: {s.dose_per_kg:,.0f} cells/kg")
        dose_index = min(
            range(len(DOSE_CHOICES)), key=lambda i: abs(DOSE_CHOICES[i] - s.dose_per_kg)
        )
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
    if problem:
        solara.Error(problem, dense=True)
    elif run is not None and s != run.settings:
        solara.Warning("Press Reset to start a run with these settings.", dense=True)
    if run is not None:
        solara.Text(
            f"Running: {run.settings.describe()}",
            classes=["immunesim-in-use"],
            style={"font-size": "0.85em"},
        )


def _built(run: LiveRun | None) -> LiveRun:
    """The run a button acts on (the buttons that need one are disabled until it is built)."""
    if run is None:
        raise RuntimeError("no run yet: it is still being built")
    return run


@solara.component
def Buttons(run: LiveRun | None):
    """Step, Play/Pause and Reset."""
    # After Pause the loop still finishes the day it is on: Step and Play wait for it.
    idle = run is not None and not build.pending and not play.pending
    finished = run is not None and run.frame.finished

    def toggle_play() -> None:
        playing.value = not playing.value
        if playing.value:
            play(_built(run))

    with solara.Row():
        solara.Button(
            "Step (+1 day)",
            icon_name="mdi-step-forward",
            on_click=lambda: step(_built(run)),
            disabled=not idle or finished,
        )
        if playing.value:
            solara.Button("Pause", icon_name="mdi-pause", on_click=toggle_play, color="primary")
        else:
            solara.Button(
                "Play",
                icon_name="mdi-play",
                on_click=toggle_play,
                color="primary",
                disabled=not idle or finished,
            )
        solara.Button(
            "Reset",
            icon_name="mdi-restart",
            on_click=reset,
            disabled=build.pending or settings.value.problem() is not None,
        )


@solara.component
def Legend():
    """Colour chips of the cell categories and zones, as
    :func:`~immunesim.viz.animate.cells_to_rgb` paints them."""

    def chip(rgb, label: str) -> str:
        colour = "rgb({},{},{})".format(*(int(c) for c in rgb))
        return (
            f'<span style="display:inline-flex;align-items:center;margin:2px 10px 2px 0">'
            f'<span style="width:14px;height:14px;background:{colour};'
            f'border:1px solid #888;margin-right:5px"></span>{label}</span>'
        )

    cells = "".join(chip(PALETTE[i], CATEGORIES[i]) for i in range(1, len(CATEGORIES)))
    zones = "".join(
        chip(ZONE_COLOURS[z], f"{ZONE_NAMES[z]} zone (empty site)") for z in range(len(ZONE_NAMES))
    )
    damage = chip((200, 30, 30), "damaged tissue") if show_damage.value else ""  # full tint
    solara.HTML(
        unsafe_innerHTML=f"<div>{cells}</div><div>{zones}{damage}</div>",
        style="font-size:0.85em;max-width:480px",
        classes=["immunesim-legend"],
    )


@solara.component
def Views(run: LiveRun, current: Frame):
    """The lattice with its legend, and the time series, of the current frame."""
    lattice = solara.use_memo(
        lambda: lattice_png(current, run.zones, damage=show_damage.value),
        [current, show_damage.value],
    )
    course = solara.use_memo(
        lambda: course_png(current, run.scenario, run.start_day - HISTORY_DAYS), [current]
    )
    L = run.scenario.lattice.size
    with solara.Columns([1, 1.25]):
        with solara.Card(f"Tissue lattice ({L} x {L} sites)"):
            solara.Text(
                "Bone marrow (left) makes B cells; they meet T helpers in the lymphoid "
                "zone (middle); autoantibodies damage the tissue (right).",
                style={"font-size": "0.85em"},
            )
            solara.Image(lattice, classes=["immunesim-lattice"])
            Legend()
        with solara.Card():
            solara.Image(course, width="100%", classes=["immunesim-course"])


@solara.component
def Page():
    """The app: a run is built when the page opens."""
    solara.Title("immunesim: the CAR-T immune reset")
    solara.use_effect(reset, [])
    _ = days_stepped.value  # read, so that every step redraws the page
    run = build.value if build.finished else None
    current = run.frame if run is not None else None
    with solara.Sidebar():
        Controls(run)
    with solara.AppBarTitle():
        solara.Text("immunesim: the CAR-T immune reset in lupus")
    with solara.Row(style={"align-items": "center", "flex-wrap": "wrap"}):
        day = "Day …" if current is None else f"Day {current.day:.0f}"
        solara.Text(
            day,
            classes=["immunesim-day"],
            style={"font-size": "1.8em", "font-weight": "bold", "min-width": "5.5em"},
        )
        Buttons(run)
    if build.pending:
        start = SCENARIO.endpoints.baseline_day
        solara.Text(
            f"Running the untreated disease up to day {start:.0f} ({build.progress or 0:.0f}%) ...",
            classes=["immunesim-building"],
        )
        solara.ProgressLinear(build.progress or True)
    elif build.error:
        solara.Error(f"The model could not be built: {build.exception}")
    elif play.error:
        solara.Error(f"The run stopped: {play.exception}")
    elif current is not None:
        solara.Text(current.caption, classes=["immunesim-caption"], style={"font-size": "1.2em"})
        Views(run, current)

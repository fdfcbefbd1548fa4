"""The model behind the interactive app (``immunesim app``), free of any UI code.

A :class:`LiveRun` is one :class:`~immunesim.mesa_model.ImmuneModel` built from a scenario
and the app's :class:`Settings` on a small lattice. It starts at the scenario's baseline day,
just before the therapy course, from the run-in cache (:mod:`immunesim.runin`): the untreated
run-in is computed once per seed and disease setting (a few seconds) and shared by every
browser tab and every dose. After that each :meth:`LiveRun.step` advances one Mesa step
(one sampled day) and returns a :class:`Frame`: an immutable picture of the model (cell
categories, tissue damage, the time series so far, the phase caption), so a display never
reads the cell arrays while a step is changing them.

The pictures reuse the animation's pieces: :func:`~immunesim.viz.snapshots.lattice_picture`
for the cell categories and damage, :func:`~immunesim.viz.animate.cells_to_rgb` for the
colours, and :func:`~immunesim.viz.animate.caption_for` for the caption, read from the
state of the course so far.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from immunesim.engine import Event
from immunesim.mesa_model import ImmuneModel
from immunesim.observe import baseline, endpoints
from immunesim.plot import COLOURS
from immunesim.scenario import CarT, Scenario, ScenarioError, load_scenario
from immunesim.viz.animate import caption_for, cells_to_rgb
from immunesim.viz.snapshots import lattice_picture

#: The scenario the app opens when none is given: the default scenario
#: (``scenarios/sle_cd19_cart.toml``), of which the package keeps a copy so that the app also
#: works from a plain install (a test keeps the two identical).
DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "data" / "sle_cd19_cart.toml"
#: Environment variable through which ``immunesim app`` names the scenario to the server.
SCENARIO_ENV = "IMMUNESIM_APP_SCENARIO"
#: Lattice side of the app's runs: one anatomical unit (100 sites), small enough that a
#: simulated day takes some 40 ms.
LATTICE_SIZE = 100
#: Markers the app offers as CAR-T targets.
TARGET_CHOICES = ("CD19", "CD20", "BCMA")
#: CAR-T doses the app offers (cells per kg body weight; the published range is 2.5e5-5e6).
DOSE_CHOICES = (1.0e5, 2.5e5, 5.0e5, 1.0e6, 2.0e6, 5.0e6, 1.0e7)
#: Days of the untreated run-in shown in the time series before the baseline day.
HISTORY_DAYS = 30.0
#: Colour of the protective (vaccine) titre, as in the animations.
VACCINE_COLOUR = "#009E73"


def car_t_index(s: Scenario) -> int:
    """Index of the scenario's first CAR-T entry, the one the app's controls change.

    Raises:
        ScenarioError: if the scenario has no CAR-T infusion.
    """
    for i, t in enumerate(s.therapy):
        if isinstance(t, CarT):
            return i
    raise ScenarioError(
        f"<scenario {s.name}>",
        "therapy",
        "a car_t entry (the app's dose and target controls act on it)",
    )


def load_app_scenario(path: str | os.PathLike[str] | None = None) -> Scenario:
    """The scenario the app runs: ``path``, else ``$IMMUNESIM_APP_SCENARIO``, else the
    default scenario; on the app's small lattice and checked to have a CAR-T entry.

    Raises:
        ScenarioError: naming the file, the key path and what was expected.
    """
    source = path or os.environ.get(SCENARIO_ENV) or DEFAULT_SCENARIO
    s = load_scenario(source, [f"lattice.size={LATTICE_SIZE}"])
    car_t_index(s)
    return s


@dataclass(frozen=True)
class Settings:
    """What the app's controls set; they take effect when a run is (re)built."""

    dose_per_kg: float
    targets: tuple[str, ...]
    autoreactive_fraction: float
    seed: int

    @classmethod
    def from_scenario(cls, s: Scenario) -> Settings:
        """The scenario's own values."""
        car = s.therapy[car_t_index(s)]
        if not isinstance(car, CarT):  # what car_t_index finds
            raise TypeError(f"expected a car_t therapy entry, got {type(car).__name__}")
        return cls(
            dose_per_kg=car.dose_per_kg,
            targets=tuple(m.upper() for m in car.targets),
            autoreactive_fraction=s.specificities.autoreactive_fraction,
            seed=s.run.seed,
        )

    def problem(self) -> str | None:
        """Why a run cannot be built with these settings, or ``None``."""
        if not self.targets:
            return "Tick at least one target marker."
        if not 0 <= self.seed < 2**63:
            return "The seed is a whole number from 0 to 2**63-1."
        return None

    def overrides(self, s: Scenario) -> list[str]:
        """``key.path=value`` overrides that put these settings into scenario ``s``."""
        i = car_t_index(s)
        return [
            f"therapy.{i}.dose_per_kg={self.dose_per_kg!r}",
            f"therapy.{i}.targets={json.dumps(list(self.targets))}",
            f"specificities.autoreactive_fraction={self.autoreactive_fraction!r}",
        ]

    def describe(self) -> str:
        """One line for the user, e.g. ``CD19 CAR-T at 1,000,000 cells/kg, ...``."""
        return (
            f"{'+'.join(self.targets)} CAR-T at {self.dose_per_kg:,.0f} cells/kg, "
            f"{self.autoreactive_fraction:.0%} autoreactive marrow output, "
            f"seed {self.seed}"
        )


@dataclass(frozen=True)
class Frame:
    """The model at the end of a day, as the app shows it."""

    day: float
    #: uint8[L, L] cell category per site (:data:`immunesim.viz.snapshots.CATEGORIES`).
    cells: np.ndarray
    #: float32[L, L] tissue damage per site (user units).
    damage: np.ndarray
    #: Every sampled row so far (from the start of the run-in), with the disease score.
    timeseries: pd.DataFrame
    #: The therapy events so far.
    events: tuple[Event, ...]
    #: Phase of the course, e.g. ``"B-cell aplasia: no B cells left"``.
    caption: str
    #: True when the scenario's follow-up is over.
    finished: bool


class LiveRun:
    """A model built from ``scenario`` and ``settings``, run up to the baseline day.

    Args:
        scenario: the app's scenario (see :func:`load_app_scenario`).
        settings: the control values.
        progress: called with the fraction of the run-in done, after each simulated day.

    Attributes:
        frame: the latest :class:`Frame`.
        start_day: the day the user starts from (the baseline day, or day 0 of the run-in
            when that is later).
    """

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        progress: Callable[[float], None] | None = None,
    ):
        self.settings = settings
        self.scenario = load_scenario(scenario, settings.overrides(scenario))
        s = self.scenario
        with _one_numba_thread():
            # The CPU backend: on a lattice this small a GPU would only add launch overheads.
            # The run starts just before the first therapy, from the run-in cache: computed
            # once per seed and disease setting, shared by every tab and every dose.
            self.model = ImmuneModel(
                s, seed=settings.seed, backend="numba", start="treatment", progress=progress
            )
            sim = self.model.simulation
            self.start_day = max(sim.day, s.endpoints.baseline_day)
            while self.model.day < self.start_day and self.model.running:
                self.model.step()
        if progress is not None:
            progress(1.0)
        self.zones = sim.state.zone.reshape(s.lattice.size, s.lattice.size)
        self._lock = threading.Lock()
        self.frame = self._snapshot()

    @property
    def day(self) -> float:
        return self.frame.day

    def step(self) -> Frame:
        """Advance one sampled day (nothing once the follow-up is over); the new frame."""
        with self._lock, _one_numba_thread():
            if self.model.running:
                self.model.step()
                self.frame = self._snapshot()
            return self.frame

    def _snapshot(self) -> Frame:
        sim = self.model.simulation
        cells, damage = lattice_picture(sim)
        damage = damage.astype(np.float32)
        df = self.model.timeseries()
        ends = endpoints(df, self.scenario, sim.infused_car_t)
        events = tuple(sim.events)
        e = self.scenario.endpoints
        caption = caption_for(
            df,
            sim.day,
            [dataclasses.asdict(ev) for ev in events],
            ends,
            e.baseline_day,
            e.depletion_fraction,
        )
        return Frame(
            day=sim.day,
            cells=cells,
            damage=damage,
            timeseries=df,
            events=events,
            caption=caption,
            finished=not self.model.running,
        )


@contextmanager
def _one_numba_thread() -> Iterator[None]:
    """Run the kernels called from this thread on one thread. On the app's small lattice the
    parallel kernels' start-up and barriers cost more than the work they share: a simulated
    day took 4-8 times longer on two threads than on one on a busy 2-core machine. Results
    do not depend on the number of threads (the same seed gives the same bits)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # thread-local: other threads keep their setting
    try:
        yield
    finally:
        numba.set_num_threads(before)


def lattice_png(frame: Frame, zones: np.ndarray, scale: int = 6, damage: bool = True) -> bytes:
    """The lattice of a frame as a PNG, ``scale`` pixels per site; with ``damage``, empty
    tissue sites are tinted red by their damage."""
    from PIL import Image

    rgb = cells_to_rgb(frame.cells, zones, frame.damage if damage else None)
    L = rgb.shape[0]
    image = Image.fromarray(rgb).resize((L * scale, L * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def course_png(
    frame: Frame,
    scenario: Scenario,
    first_day: float,
    size: tuple[float, float] = (5.6, 4.6),
    dpi: int = 100,
) -> bytes:
    """The time series of a frame from ``first_day`` as a PNG: B cells and CAR-T on the
    lattice (log scale) above, anti-dsDNA and the protective vaccine titre relative to
    baseline below, the therapy events as vertical lines named in the legend. The day axis
    shows at least two months from ``first_day`` and grows with the run."""
    from matplotlib.figure import Figure

    df = frame.timeseries
    base = baseline(df, scenario)
    df = df[df["day"] >= first_day]
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax_cells, ax_titre = fig.subplots(2, 1, sharex=True)
    ax_cells.plot(
        df["day"],
        df["b_cells"].clip(lower=0.5),
        color=COLOURS["b_cells"],
        lw=1.8,
        label="B cells (CD19+)",
    )
    ax_cells.plot(
        df["day"], df["car_t"].clip(lower=0.5), color=COLOURS["car_t"], lw=1.8, label="CAR-T cells"
    )
    ax_cells.set_yscale("log")
    ax_cells.set_ylim(0.5, max(10.0, float(df[["b_cells", "car_t"]].max().max()) * 3))
    ax_cells.set_ylabel("cells on the lattice")
    ax_cells.set_title("Clinical course", loc="left", fontsize=11, weight="bold")

    vaccines = scenario.specificities.vaccines
    protective = sum(df[f"antibody_{v}"] / base[f"antibody_{v}"] for v in vaccines) / len(vaccines)
    ax_titre.plot(
        df["day"],
        df["anti_dsdna"] / base["anti_dsdna"],
        color=COLOURS["anti_dsdna"],
        lw=1.8,
        label="anti-dsDNA (autoantibody)",
    )
    ax_titre.plot(
        df["day"],
        protective,
        color=VACCINE_COLOUR,
        lw=1.8,
        label=f"vaccine titre ({', '.join(vaccines)})",
    )
    ax_titre.set_ylim(0, max(1.3, float(np.nanmax(protective.to_numpy())) * 1.1))
    ax_titre.set_ylabel("titre / baseline")
    ax_titre.set_xlabel("day (0 = CAR-T infusion)")

    last = max(frame.day, first_day + 60.0)
    ax_titre.set_xlim(first_day, last + 0.05 * (last - first_day))
    labelled = set()
    for e in frame.events:
        if e.kind == "standard_of_care":  # a change of drug level, not a dated intervention
            continue
        style = _EVENT_STYLES.get(e.kind, "-")
        for ax in (ax_cells, ax_titre):
            ax.axvline(
                e.day,
                color="#888888",
                lw=0.9,
                ls=style,
                zorder=0,
                label=None if ax is ax_titre or e.kind in labelled else e.label,
            )
        labelled.add(e.kind)
    ax_cells.legend(loc="best", fontsize=7)
    ax_titre.legend(loc="best", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


#: Line style of each therapy event in the time series.
_EVENT_STYLES = {"lymphodepletion": ":", "car_t": "--", "anti_cd20": "-.", "vaccination": "-"}


__all__ = [
    "DOSE_CHOICES",
    "LATTICE_SIZE",
    "TARGET_CHOICES",
    "Frame",
    "LiveRun",
    "Settings",
    "car_t_index",
    "course_png",
    "lattice_png",
    "load_app_scenario",
]

"""The model behind the interactive app (``immunesim app``), free of any UI code.

A :class:`LiveRun` is one :class:`~immunesim.mesa_model.ImmuneModel` built from a scenario
and the app's :class:`Settings` on a small lattice. It starts at the scenario's baseline day,
just before the therapy course, from the run-in cache (:mod:`immunesim.runin`): the untreated
run-in is computed once per seed and disease setting (a few seconds) and shared by every
browser tab, every dose and every therapy that leaves the run-in alone. After that each
:meth:`LiveRun.step` advances one Mesa step (one sampled day) and returns a :class:`Frame`:
an immutable picture of the model (cell categories, tissue damage, the time series so far,
the phase caption), so a display never reads the cell arrays while a step is changing them.
A run keeps a bounded history of its pictures (:class:`History`), so that the app's day
scrubber can show any day run so far.

The pictures reuse the animation's pieces: :func:`~immunesim.viz.snapshots.lattice_picture`
for the cell categories and damage, :func:`~immunesim.viz.animate.cells_to_rgb` for the
colours, and :func:`~immunesim.viz.animate.caption_for` for the caption, read from the
state of the course so far. The clinical course is drawn in the browser: :func:`course_chart`
turns the time series of one or more runs, with the published targets
(:func:`chart_targets`), into an ECharts option.

:class:`RunSlots` bounds the simulations that the server computes at once (builds, steps,
play loops), whatever the number of browser tabs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

from immunesim import runin
from immunesim.engine import Event
from immunesim.mesa_model import ImmuneModel
from immunesim.observe import endpoints
from immunesim.plot import COLOURS, relative_course
from immunesim.scenario import AntiCD20, CarT, Scenario, ScenarioError, load_scenario
from immunesim.viz.animate import DAMAGE_SCALE, caption_for, cells_to_rgb
from immunesim.viz.snapshots import lattice_picture

#: The scenario the app opens when none is given: the default scenario
#: (``scenarios/sle_cd19_cart.toml``), of which the package keeps a copy so that the app also
#: works from a plain install (a test keeps the two identical).
DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "data" / "sle_cd19_cart.toml"
#: The shipped scenarios of a checkout (absent from a plain install, where the app offers the
#: packaged default and the scenario it was given).
SHIPPED_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
#: Environment variable through which ``immunesim app`` names the scenario to the server.
SCENARIO_ENV = "IMMUNESIM_APP_SCENARIO"
#: Environment variable: a folder of scenarios for the page to offer (default: the shipped
#: scenarios of a checkout).
SCENARIOS_ENV = "IMMUNESIM_APP_SCENARIOS"
#: Lattice side of the app's runs: one anatomical unit (100 sites), small enough that a
#: simulated day takes some 40 ms.
LATTICE_SIZE = 100
#: Environment variable that sets another lattice side (e.g. 80 for a slower machine); a side
#: that is not a whole number of the scenario's anatomical units becomes one unit.
LATTICE_ENV = "IMMUNESIM_APP_LATTICE"
#: Environment variable: the most simulations the server computes at once (:class:`RunSlots`).
MAX_RUNS_ENV = "IMMUNESIM_APP_MAX_RUNS"
#: Its default, suited to two cores: the simulations of all tabs run in the server's one
#: process, one numba thread each, and more at once only slow every one of them down.
DEFAULT_MAX_RUNS = 2
#: Markers the app offers as CAR-T targets.
TARGET_CHOICES = ("CD19", "CD20", "BCMA")
#: CAR-T doses the app offers (cells per kg body weight; the published range is 2.5e5-5e6).
DOSE_CHOICES = (1.0e5, 2.5e5, 5.0e5, 1.0e6, 2.0e6, 5.0e6, 1.0e7)
#: Days of the untreated run-in shown in the time series before the baseline day.
HISTORY_DAYS = 30.0
#: Lattice pictures a run keeps for the day scrubber: the whole default course (7 days before
#: the infusion and 540 after). Past it, every other kept picture is dropped (:class:`History`).
HISTORY_PICTURES = 600
#: Colour of the protective (vaccine) titre, as in the animations.
VACCINE_COLOUR = "#009E73"


def _env_int(name: str, default: int, low: int, high: int, what: str) -> int:
    """``$name`` as a whole number from ``low`` to ``high``, or ``default`` if unset.

    Raises:
        ValueError: for any other value, naming the variable and what it should be.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"${name}: a whole number {what}from {low} to {high} (got {raw!r})")
    return value


def lattice_size() -> int:
    """The app's lattice side: ``$IMMUNESIM_APP_LATTICE`` or :data:`LATTICE_SIZE`.

    Raises:
        ValueError: for a value that is not a whole number from 16 to 1000.
    """
    return _env_int(LATTICE_ENV, LATTICE_SIZE, 16, 1000, "of sites ")


def max_runs() -> int:
    """The most simulations computed at once: ``$IMMUNESIM_APP_MAX_RUNS`` or
    :data:`DEFAULT_MAX_RUNS`.

    Raises:
        ValueError: for a value that is not a whole number from 1 to 1000.
    """
    return _env_int(MAX_RUNS_ENV, DEFAULT_MAX_RUNS, 1, 1000, "")


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


def has_car_t(s: Scenario) -> bool:
    """Whether the scenario has a CAR-T infusion (the app then offers its dose and targets)."""
    return any(isinstance(t, CarT) for t in s.therapy)


def therapy_label(s: Scenario) -> str:
    """The therapy the app shows: the label of the scenario's first CAR-T or anti-CD20 entry,
    e.g. ``anti-CD19 CAR-T`` or ``rituximab 1 g``."""
    for t in s.therapy:
        if isinstance(t, (CarT, AntiCD20)):
            return t.label or t.type
    return "no therapy"


def load_app_scenario(path: str | os.PathLike[str] | None = None) -> Scenario:
    """The scenario the app runs: ``path``, else ``$IMMUNESIM_APP_SCENARIO``, else the
    default scenario; on the app's small lattice (:func:`lattice_size`) and checked to have
    a therapy the app can show (a CAR-T or an anti-CD20 entry).

    Raises:
        ScenarioError: naming the file, the key path and what was expected.
    """
    source = path or os.environ.get(SCENARIO_ENV) or DEFAULT_SCENARIO
    size = lattice_size()
    overrides = [f"lattice.size={size}"]
    if size != LATTICE_SIZE:
        zones = load_scenario(source).lattice.zones
        if zones.layout == "bands" and size % zones.unit_sites:
            overrides.append(f"lattice.zones.unit_um={size * 10}")  # one unit of 10 um sites
    s = load_scenario(source, overrides)
    if not any(isinstance(t, (CarT, AntiCD20)) for t in s.therapy):
        raise ScenarioError(
            str(source),
            "therapy",
            "a car_t or anti_cd20 entry (the therapy the app shows)",
        )
    return s


def app_scenarios(
    first: Scenario, folder: str | os.PathLike[str] | None = None
) -> dict[str, Scenario]:
    """The scenarios the app offers, by name: ``first`` (the one it was given), then those of
    ``folder`` (default ``$IMMUNESIM_APP_SCENARIOS``, else the shipped scenarios of a
    checkout) that it can run, by file name, then the packaged default."""
    where = Path(folder or os.environ.get(SCENARIOS_ENV) or SHIPPED_SCENARIOS)
    files = sorted(where.glob("*.toml")) if where.is_dir() else []
    out = {first.name: first}
    for f in [*files, DEFAULT_SCENARIO]:
        try:
            s = load_app_scenario(f)
        except (ScenarioError, OSError):
            continue  # e.g. an untreated scenario: nothing to show
        out.setdefault(s.name, s)
    return out


def same_patient(a: Scenario, b: Scenario, settings: Settings) -> bool:
    """Whether runs of ``a`` and ``b`` with ``settings`` start from the same run-in (the
    same patient before therapy): the same run-in key once the settings are applied."""
    return runin.key(load_scenario(a, settings.overrides(a))) == runin.key(
        load_scenario(b, settings.overrides(b))
    )


@dataclass(frozen=True)
class Settings:
    """What the app's controls set; they take effect when a run is (re)built.

    ``dose_per_kg`` is ``None`` (and ``targets`` empty) for a scenario without CAR-T, whose
    therapy the app runs as the scenario gives it.
    """

    dose_per_kg: float | None
    targets: tuple[str, ...]
    autoreactive_fraction: float
    seed: int

    @classmethod
    def from_scenario(cls, s: Scenario) -> Settings:
        """The scenario's own values."""
        if not has_car_t(s):
            return cls(None, (), s.specificities.autoreactive_fraction, s.run.seed)
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
        if self.dose_per_kg is not None and not self.targets:
            return "Tick at least one target marker."
        if not 0 <= self.seed < 2**63:
            return "The seed is a whole number from 0 to 2**63-1."
        return None

    def overrides(self, s: Scenario) -> list[str]:
        """``key.path=value`` overrides that put these settings into scenario ``s`` (the
        CAR-T dose and targets only where ``s`` has a CAR-T entry)."""
        out = [f"specificities.autoreactive_fraction={self.autoreactive_fraction!r}"]
        if self.dose_per_kg is not None and has_car_t(s):
            i = car_t_index(s)
            out = [
                f"therapy.{i}.dose_per_kg={self.dose_per_kg!r}",
                f"therapy.{i}.targets={json.dumps(list(self.targets))}",
                *out,
            ]
        return out

    def describe(self, therapy: str | None = None) -> str:
        """One line for the user, e.g. ``CD19 CAR-T at 1,000,000 cells/kg, ...``; without
        CAR-T settings, ``therapy`` (the scenario's therapy label) in their place."""
        if self.dose_per_kg is None:
            what = therapy or "the scenario's therapy"
        else:
            what = f"{'+'.join(self.targets)} CAR-T at {self.dose_per_kg:,.0f} cells/kg"
        return (
            f"{what}, {self.autoreactive_fraction:.0%} autoreactive marrow output, seed {self.seed}"
        )


@dataclass(frozen=True, eq=False)
class Frame:
    """The model at the end of a day, as the app shows it (frames are equal only to
    themselves: a display redraws when it is given another one)."""

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


@dataclass(frozen=True, eq=False)
class Picture:
    """What the day scrubber shows of a past day, in little memory."""

    day: float
    #: uint8[L, L] cell category per site.
    cells: np.ndarray
    #: uint8[L, L] damage tint per site: 255 is :data:`DAMAGE_SCALE` or more.
    tint: np.ndarray
    caption: str

    @classmethod
    def of(cls, frame: Frame) -> Picture:
        tint = np.clip(frame.damage / DAMAGE_SCALE, 0.0, 1.0) * 255.0
        return cls(frame.day, frame.cells, np.round(tint).astype(np.uint8), frame.caption)

    @property
    def damage(self) -> np.ndarray:
        """float32[L, L] damage in user units (exact below :data:`DAMAGE_SCALE` to 1/255
        of it, and capped there: the tint does not grow beyond)."""
        return self.tint.astype(np.float32) * np.float32(DAMAGE_SCALE / 255.0)


class History:
    """The pictures of the days a run has reached, for the day scrubber, in bounded memory:
    every day up to ``limit`` pictures; past that, every other picture is dropped (the
    latest day is always kept), so that a long run keeps pictures at a coarser spacing.

    Args:
        limit: the most pictures kept (at least 2).
    """

    def __init__(self, limit: int = HISTORY_PICTURES):
        if limit < 2:
            raise ValueError(f"limit: at least 2 pictures (got {limit})")
        self.limit = limit
        self._pictures: list[Picture] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pictures)

    def add(self, picture: Picture) -> None:
        with self._lock:
            if self._pictures and picture.day <= self._pictures[-1].day:
                raise ValueError(f"day {picture.day} is not after {self._pictures[-1].day}")
            self._pictures.append(picture)
            if len(self._pictures) > self.limit:
                # drop every other picture, keeping the first and the latest
                kept = self._pictures[:-1:2]
                self._pictures = [*kept, self._pictures[-1]]

    @property
    def days(self) -> list[float]:
        with self._lock:
            return [p.day for p in self._pictures]

    def at(self, day: float) -> Picture:
        """The picture of ``day``, or of the latest kept day before it (the first kept day
        for a day before every picture).

        Raises:
            LookupError: when no picture is kept yet.
        """
        with self._lock:
            if not self._pictures:
                raise LookupError("no pictures yet")
            days = [p.day for p in self._pictures]
            i = int(np.searchsorted(days, day + 1e-9, side="right")) - 1
            return self._pictures[max(i, 0)]


class LiveRun:
    """A model built from ``scenario`` and ``settings``, run up to the baseline day.

    Args:
        scenario: the app's scenario (see :func:`load_app_scenario`).
        settings: the control values.
        progress: called with the fraction of the run-in done, after each simulated day.
        history: the most lattice pictures kept for the day scrubber (:class:`History`).

    Attributes:
        frame: the latest :class:`Frame`.
        history: pictures of the days reached so far, from ``start_day``.
        start_day: the day the user starts from (the baseline day, or day 0 of the run-in
            when that is later).
    """

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        progress: Callable[[float], None] | None = None,
        history: int = HISTORY_PICTURES,
    ):
        self.settings = settings
        self.scenario = load_scenario(scenario, settings.overrides(scenario))
        s = self.scenario
        self.therapy = therapy_label(s)
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
        self.history = History(history)
        self.frame = self._snapshot()
        self.history.add(Picture.of(self.frame))
        #: The next day's frame, computed ahead by :meth:`prefetch` and not shown yet.
        self._ahead: Frame | None = None

    @property
    def day(self) -> float:
        return self.frame.day

    def describe(self) -> str:
        """The run in one line (:meth:`Settings.describe`)."""
        return self.settings.describe(self.therapy)

    def step(self) -> Frame:
        """Advance one sampled day (nothing once the follow-up is over); the new frame. A day
        computed ahead (:meth:`prefetch`) is shown at once."""
        with self._lock:
            if self._ahead is None:
                self._ahead = self._next()
            if self._ahead is not None:
                self.frame, self._ahead = self._ahead, None
                self.history.add(Picture.of(self.frame))
            return self.frame

    def prefetch(self) -> None:
        """Compute the next day ahead, while the page shows this one, without showing it:
        the next :meth:`step` then only shows it. The frames are those :meth:`step` alone
        would make (the model takes the same steps); only their timing differs."""
        with self._lock:
            if self._ahead is None:
                self._ahead = self._next()

    def _next(self) -> Frame | None:
        """The model one sampled day on (under the lock), or None after the follow-up."""
        if not self.model.running:
            return None
        with _one_numba_thread():
            self.model.step()
            return self._snapshot()

    def at(self, day: float) -> Frame:
        """The frame of a day reached so far, as the scrubber shows it: the lattice and
        caption of that day (or of the latest kept picture before it), the time series and
        events up to it. The latest day gives :attr:`frame` itself."""
        latest = self.frame
        if day >= latest.day:
            return latest
        p = self.history.at(day)
        df = latest.timeseries
        return Frame(
            day=p.day,
            cells=p.cells,
            damage=p.damage,
            timeseries=df[df["day"] <= p.day + 1e-9],
            events=tuple(e for e in latest.events if e.day <= p.day + 1e-9),
            caption=p.caption,
            finished=False,
        )

    def csv(self) -> bytes:
        """The time series so far as CSV (one row per simulated day, from the start of the
        run-in), for the app's download."""
        return self.frame.timeseries.to_csv(index=False).encode()

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


class RunSlots:
    """A process-wide bound on the simulations computed at once (building a run, a step,
    a play loop), shared by every browser tab: past it a tab is told to wait instead of
    slowing every run down.

    Args:
        limit: the most slots held at once (at least 1).
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit: at least 1 (got {limit})")
        self.limit = limit
        self._held = 0
        self._free = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._free:
            return self._held

    def try_acquire(self) -> bool:
        """Take a slot if one is free; whether it was taken."""
        with self._free:
            if self._held >= self.limit:
                return False
            self._held += 1
            return True

    def acquire(
        self,
        stop: Callable[[], bool] | None = None,
        poll_s: float = 0.25,
        timeout: float | None = None,
    ) -> bool:
        """Wait for a free slot and take it; ``False`` when ``stop()`` turns true first (the
        tab closed, the request was replaced) or ``timeout`` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._free:
            while self._held >= self.limit:
                if stop is not None and stop():
                    return False
                wait = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
                if wait <= 0:
                    return False
                self._free.wait(wait)
            self._held += 1
            return True

    def release(self) -> None:
        with self._free:
            if self._held <= 0:
                raise RuntimeError("release() without a slot held")
            self._held -= 1
            self._free.notify()

    def busy_message(self) -> str:
        """What a tab is told when every slot is taken."""
        return (
            f"The server is already computing {self.limit} simulation"
            f"{'s' if self.limit != 1 else ''}, the most it runs at once "
            f"(${MAX_RUNS_ENV}={self.limit}); more would slow every one of them down. "
            "Try again when another tab pauses."
        )


def lattice_png(
    frame: Frame, zones: np.ndarray, scale: int = 6, damage: bool = True, compress: int = 6
) -> bytes:
    """The lattice of a frame as a PNG, ``scale`` pixels per site; with ``damage``, empty
    tissue sites are tinted red by their damage. ``compress`` is the zlib level (1 is
    fastest)."""
    from PIL import Image

    rgb = cells_to_rgb(frame.cells, zones, frame.damage if damage else None, DAMAGE_SCALE)
    L = rgb.shape[0]
    image = Image.fromarray(rgb)
    if scale != 1:
        image = image.resize((L * scale, L * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress)
    return buf.getvalue()


# ------------------------------------------------------------------------ the course chart

#: The chart's panels, top to bottom: (title, y-axis type).
PANELS = (
    ("cells per µL of blood", "log"),
    ("titre / baseline", "value"),
    ("disease score", "value"),
)
#: Line styles of the runs compared on one chart (the first run solid).
RUN_STYLES = ("solid", "dashed", "dotted")


@dataclass(frozen=True)
class ChartTarget:
    """A published target as the chart draws it: a shaded band of days on one panel, and of
    values where ``y0``/``y1`` are set (a box)."""

    name: str  # the entry of immunesim/data/clinical_targets.toml
    panel: int  # index into PANELS
    x0: float
    x1: float
    y0: float | None
    y1: float | None
    label: str  # short, on the chart, e.g. "CAR-T peak 7-14 d"
    cited: str  # first author and year, e.g. "Stein 2019" (:func:`short_source`)
    published: str  # what was published
    source: str  # where, in full
    colour: str
    #: Where the label goes (an ECharts label position): inside the band's top, with the
    #: citation on a second line, or above or below a small box, on one line.
    place: str = "insideTop"

    @property
    def text(self) -> str:
        """The label on the chart, with its citation."""
        sep = "\n" if self.place.startswith("inside") else " "
        return f"{self.label}{sep}({self.cited})"


def short_source(source: str) -> str:
    """First author (or group) and year of a source: ``"Mackensen et al., Nat Med 2022"``
    gives ``"Mackensen 2022"``."""
    first = source.split(";")[0]
    year = re.search(r"\b(19|20)\d\d\b", first)
    author = first.split()[0].rstrip(",") if first.split() else source
    return f"{author} {year.group(0)}" if year else author


def chart_targets(scenario: Scenario, targets: Sequence[Any] | None = None) -> list[ChartTarget]:
    """The published targets (``immunesim/data/clinical_targets.toml``, read by
    :func:`immunesim.report.load_targets`) that the course chart draws: the CAR-T peak window
    and the B-cell return window (cells panel), anti-dsDNA below the seronegative fraction at
    month 3 and vaccine titres within +/-20% at months 3 and 12 (titre panel), and remission
    by day 90 (disease panel: a box below the scenario's remission score up to that day)."""
    if targets is None:
        from immunesim.report import load_targets

        targets = load_targets()
    by_name = {t.name: t for t in targets}
    out: list[ChartTarget] = []

    def add(name: str, panel: int, x: tuple[float, float], y: tuple[float, float] | None,
            label: str, colour: str, place: str = "insideTop") -> None:  # fmt: skip
        t = by_name[name]
        out.append(
            ChartTarget(
                name, panel, float(x[0]), float(x[1]),
                None if y is None else float(y[0]), None if y is None else float(y[1]),
                label, short_source(t.source), t.published, t.source, colour, place,
            )
        )  # fmt: skip

    def band(name: str) -> tuple[Any, float, float] | None:
        t = by_name.get(name)
        if t is None or t.low is None or t.high is None:
            return None
        return t, float(t.low), float(t.high)

    if b := band("car_t_peak_day"):
        _, lo, hi = b
        add("car_t_peak_day", 0, (lo, hi), None, f"CAR-T peak {lo:g}-{hi:g} d", "#E69F00")
    if b := band("b_cell_reconstitution_day"):
        t, lo, hi = b
        mid = (lo + hi) / 2 if t.point is None else float(t.point)
        label = f"B cells return {mid:g} ± {(hi - lo) / 2:g} d"
        add("b_cell_reconstitution_day", 0, (lo, hi), None, label, "#0072B2")
    if b := band("anti_dsdna_seronegative_month3"):
        _, lo, hi = b
        label = f"anti-dsDNA < {hi:g} at month 3"
        add("anti_dsdna_seronegative_month3", 1, (85, 95), (lo, hi), label, "#D55E00", "top")
    for name, day, month in (("vaccine_titres_month3", 90, 3), ("vaccine_titres_month12", 365, 12)):
        if b := band(name):
            _, lo, hi = b
            label = f"vaccine {lo:g}-{hi:g} at month {month}"
            add(name, 1, (day - 5, day + 5), (lo, hi), label, VACCINE_COLOUR, "bottom")
    if b := band("remission_by_month3"):
        _, lo, hi = b
        score = scenario.endpoints.remission_score
        label = f"remission by day {hi:g}"
        add("remission_by_month3", 2, (lo, hi), (0.0, score), label, "#555555", "top")
    return out


def _points(days: np.ndarray, values: np.ndarray, log: bool) -> list[list[float | None]]:
    """``[[day, value], ...]`` for ECharts, with ``None`` (a gap) for values a log axis cannot
    show (zero or less) and for missing ones."""
    out: list[list[float | None]] = []
    for d, v in zip(days.tolist(), values.tolist(), strict=True):
        if v != v or (log and v <= 0):
            out.append([d, None])
        else:
            out.append([d, round(v, 4)])
    return out


def chart_days(start_day: float, day: float) -> tuple[float, float]:
    """The chart's day axis: from :data:`HISTORY_DAYS` before ``start_day`` to at least day
    150 (the B-cell return window), growing with the run in steps of 50 days."""
    first = start_day - HISTORY_DAYS
    last = max(150.0, 50.0 * math.ceil((day + 20.0) / 50.0))
    return first, last


def course_chart(
    runs: Sequence[tuple[str, Frame, Scenario]],
    first_day: float,
    last_day: float,
    targets: Sequence[ChartTarget] = (),
) -> dict[str, Any]:
    """The ECharts option of the clinical course of one or more runs from ``first_day``:
    B cells, CAR-T and CD4 T cells per µL of blood (log axis, zeros as gaps), anti-dsDNA and the
    protective vaccine titre relative to each run's baseline, and the disease score; the
    published ``targets`` as shaded bands and lines, named with their source; the therapy
    events of the first run as dashed vertical lines. Each run (label, frame, scenario) is
    drawn in the line style of its place (:data:`RUN_STYLES`); every panel shares the day
    axis ``first_day``-``last_day``."""
    n = len(PANELS)
    # percent of the chart's height: a legend row or two above three panels
    wide = len(runs) > 1
    tops, height = ([17, 47, 72], [23, 18, 16]) if wide else ([12, 45, 71], [28, 20, 17])
    grids = [
        {"left": 64, "right": 16, "top": f"{tops[i]}%", "height": f"{height[i]}%"} for i in range(n)
    ]
    x_axes = [
        {
            "type": "value",
            "gridIndex": i,
            "min": first_day,
            "max": last_day,
            "axisLabel": {"show": i == n - 1},
            "name": "day (0 = first dose of the therapy)" if i == n - 1 else "",
            "nameLocation": "middle",
            "nameGap": 24,
            "splitLine": {"show": False},
        }
        for i in range(n)
    ]
    y_axes: list[dict[str, Any]] = []
    for i, (title, kind) in enumerate(PANELS):
        axis: dict[str, Any] = {
            "type": kind,
            "gridIndex": i,
            "name": title,
            "nameTextStyle": {"align": "left", "padding": [0, 0, 0, -40]},
            "splitLine": {"lineStyle": {"color": "#eeeeee"}},
        }
        if kind == "log":
            axis["logBase"] = 10
            axis["min"] = 0.01
        else:
            axis["min"] = 0
        y_axes.append(axis)

    series: list[dict[str, Any]] = []
    legend: list[str] = []  # the first run's lines: the colours of the quantities

    def line(name: str, panel: int, points: list, colour: str, style: str) -> None:
        series.append(
            {
                "name": name,
                "type": "line",
                "xAxisIndex": panel,
                "yAxisIndex": panel,
                "data": points,
                "showSymbol": False,
                "connectNulls": False,
                "lineStyle": {"color": colour, "width": 1.8, "type": style},
                "itemStyle": {"color": colour},
            }
        )

    titre_max = 1.3
    for k, (label, frame, scenario) in enumerate(runs):
        style = RUN_STYLES[k % len(RUN_STYLES)]
        suffix = f" ({label})" if k > 0 else ""  # the first run's lines name the legend
        first = len(series)
        # anti-dsDNA and the protective titre relative to the run's baseline, as the
        # report's figures compute them
        keys = {
            "endpoints": {"baseline_day": scenario.endpoints.baseline_day},
            "specificities": {"vaccines": scenario.specificities.vaccines},
        }
        rel = relative_course(frame.timeseries.assign(run=0, group=label), keys)
        shown = (frame.timeseries["day"] >= first_day - 1e-9).to_numpy()
        df, rel = frame.timeseries[shown], rel[shown]
        days = df["day"].to_numpy(dtype=float)
        for col, name, colour in (
            ("b_cells_per_ul", "B cells", COLOURS["b_cells"]),
            ("car_t_per_ul", "CAR-T", COLOURS["car_t"]),
            ("cd4_per_ul", "CD4 T cells", COLOURS["t_helper"]),
        ):
            if col not in df:  # a run written before the CD4 pool
                continue
            values = df[col].to_numpy(dtype=float)
            line(f"{name}{suffix}", 0, _points(days, values, log=True), colour, style)
        dsdna = rel["anti_dsdna_relative"].to_numpy(dtype=float)
        line(f"anti-dsDNA{suffix}", 1, _points(days, dsdna, False), COLOURS["anti_dsdna"], style)
        if scenario.specificities.vaccines:
            protective = rel["protective_relative"].to_numpy(dtype=float)
            name = f"vaccine titre{suffix}"
            line(name, 1, _points(days, protective, False), VACCINE_COLOUR, style)
            finite = protective[np.isfinite(protective)]
            if finite.size:
                titre_max = max(titre_max, float(finite.max()) * 1.1)
        score = df["disease_score"].to_numpy(dtype=float)
        line(
            f"disease score{suffix}",
            2,
            _points(days, score, False),
            COLOURS["disease_score"],
            style,
        )
        if k == 0:
            legend += [x["name"] for x in series[first:]]
    y_axes[1]["max"] = round(titre_max, 1)

    if runs:
        remission = runs[0][2].endpoints.remission_score
        series.append(
            {
                "name": "remission threshold",
                "type": "line",
                "xAxisIndex": 2,
                "yAxisIndex": 2,
                "data": [],
                "lineStyle": {"color": "#999999"},
                "itemStyle": {"color": "#999999"},
                "markLine": {
                    "silent": True,
                    "symbol": "none",
                    "lineStyle": {"color": "#999999", "type": "dotted"},
                    "label": {"formatter": "remission", "position": "insideEndTop"},
                    "data": [{"yAxis": remission}],
                },
            }
        )
        events = [e for e in runs[0][1].events if e.kind != "standard_of_care"]
        seen: dict[str, float] = {}
        for e in events:  # one line a kind and day: a course of three doses is three lines
            seen.setdefault(f"{e.kind}@{e.day:g}", e.day)
        if seen:
            series.append(
                {
                    "name": "therapy",
                    "type": "line",
                    "xAxisIndex": 0,
                    "yAxisIndex": 0,
                    "data": [],
                    "lineStyle": {"color": "#888888", "type": "dashed"},
                    "itemStyle": {"color": "#888888"},
                    "markLine": {
                        "silent": True,
                        "symbol": "none",
                        "lineStyle": {"color": "#888888", "type": "dashed", "width": 0.8},
                        "label": {"show": False},
                        "data": [{"xAxis": d} for d in sorted(set(seen.values()))],
                    },
                }
            )

    for t in targets:
        lo: dict[str, Any] = {"xAxis": t.x0}
        hi: dict[str, Any] = {"xAxis": t.x1}
        if t.y0 is not None and t.y1 is not None:
            lo["yAxis"], hi["yAxis"] = t.y0, t.y1
        mark = {
            "markArea": {
                "silent": True,
                "itemStyle": {"color": t.colour, "opacity": 0.15},
                "label": {
                    "formatter": t.text,
                    "position": t.place,
                    "fontSize": 10,
                    "color": "#333333",
                },
                "data": [[lo, hi]],
            }
        }
        colour = t.colour
        series.append(
            {
                "name": f"published: {t.label} ({t.cited})",
                "type": "line",
                "xAxisIndex": t.panel,
                "yAxisIndex": t.panel,
                "data": [],
                "lineStyle": {"color": colour},
                "itemStyle": {"color": colour},
                **mark,
            }
        )

    return {
        "animation": False,
        "grid": grids,
        "xAxis": x_axes,
        "yAxis": y_axes,
        "axisPointer": {"link": [{"xAxisIndex": "all"}]},
        "tooltip": {"trigger": "axis"},
        "legend": {
            "top": 0,
            "left": 8,
            "right": 8,
            "itemWidth": 14,
            "itemGap": 6,
            "textStyle": {"fontSize": 10},
            "data": legend,
        },
        "series": series,
    }


__all__ = [
    "DOSE_CHOICES",
    "LATTICE_SIZE",
    "TARGET_CHOICES",
    "ChartTarget",
    "Frame",
    "History",
    "LiveRun",
    "Picture",
    "RunSlots",
    "Settings",
    "app_scenarios",
    "car_t_index",
    "chart_targets",
    "course_chart",
    "has_car_t",
    "lattice_png",
    "load_app_scenario",
    "max_runs",
    "same_patient",
    "therapy_label",
]


def chart_json(option: dict[str, Any]) -> tuple[str, str]:
    """An ECharts option whose data lines come first, before the series that carry only
    marks (as :func:`course_chart` makes it), split as the app's chart takes it
    (:class:`immunesim.viz.app.CourseChartWidget`): the option without the lines' data, and
    the lines' data, each as JSON (strict: a NaN is an error, not invalid JSON)."""
    series = option["series"]
    n = next((i for i, s in enumerate(series) if not s["data"]), len(series))
    skeleton = {
        **option,
        "series": [{**s, "data": []} if i < n else s for i, s in enumerate(series)],
    }
    lines = [s["data"] for s in series[:n]]
    return json.dumps(skeleton, allow_nan=False), json.dumps(lines, allow_nan=False)

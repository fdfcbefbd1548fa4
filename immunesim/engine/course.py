"""The course of a run: its clock and its therapy schedule.

:class:`Course` turns a scenario's ``[[therapy]]`` entries into events at steps and applies
them, through their registered effects (:mod:`immunesim.engine.therapies`), to a
:class:`~immunesim.engine.therapies.Patient`. The fast engine and the Mesa reference each
hold one, so both give the same therapies at the same steps.
"""

from __future__ import annotations

from collections.abc import Callable

from immunesim.engine.therapies import EFFECTS, Event, Patient
from immunesim.scenario import Scenario


class Clocked:
    """The clock of a run that holds ``scenario``, ``step_index`` (steps done) and
    ``course`` (its :class:`Course`): the fast engine and the Mesa reference both do."""

    scenario: Scenario
    step_index: int
    course: Course

    @property
    def total_steps(self) -> int:
        return self.scenario.total_steps

    @property
    def day(self) -> float:
        """Simulated day of the current state (day 0: end of the run-in, infusion)."""
        return self.scenario.day_of_step(self.step_index)

    @property
    def finished(self) -> bool:
        return self.step_index >= self.total_steps

    @property
    def events(self) -> list[Event]:
        """Therapy events that have happened."""
        return self.course.events


class Course:
    """Clock and therapy schedule of one run.

    Args:
        scenario: the validated scenario.
        seed: the run's seed (for the events each patient meets at random).
        on_immunosuppression: called with the factor on B-cell activation whenever it
            changes (and once at the first step).

    Attributes:
        events: the therapy events as they happened.
        factor: the factor on B-cell activation in force (``None`` before the first step).
    """

    def __init__(
        self, scenario: Scenario, seed: int, on_immunosuppression: Callable[[float], None]
    ):
        self.scenario = scenario
        self.events: list[Event] = []
        self.factor: float | None = None
        self._on_factor = on_immunosuppression
        self._schedule: dict[int, list] = {}
        for t in scenario.therapy:
            effect = EFFECTS[t.type]
            for d in [*effect.event_days(t), *effect.drawn_event_days(t, scenario, seed)]:
                # the first step at or after the day; the start of the run-in (step 0, the
                # initial state) has no step of its own, so its events happen in step 1
                step = max(1, scenario.step_of_day(d))
                self._schedule.setdefault(step, []).append(t)

    @property
    def total_steps(self) -> int:
        return self.scenario.total_steps

    def day(self, step: int) -> float:
        """Simulated day at the end of ``step`` (day 0: end of the run-in, infusion)."""
        return self.scenario.day_of_step(step)

    def apply(self, patient: Patient, step: int) -> None:
        """The therapies of ``step``: its events in scenario order, then every therapy's
        continuous effect, then the immunosuppression in force."""
        s = self.scenario
        day = s.day_of_step(step)
        for t in self._schedule.get(step, ()):
            effect = EFFECTS[t.type]
            detail = effect.on_event(t, s, patient, step)
            self.log(step, t.type, effect.label(t), **detail)
        for t in s.therapy:
            EFFECTS[t.type].each_step(t, s, patient, step, day)
        factor = 1.0
        for t in s.therapy:
            factor *= EFFECTS[t.type].activation_factor(t, day)
        if factor != self.factor:
            if self.factor is not None:
                self.log(step, "standard_of_care", f"immunosuppression factor {factor:g}")
            self.factor = factor
            self._on_factor(factor)

    def log(self, step: int, kind: str, label: str, **detail) -> None:
        """Record an event."""
        self.events.append(Event(step, self.scenario.day_of_step(step), kind, label, detail))


__all__ = ["Clocked", "Course"]

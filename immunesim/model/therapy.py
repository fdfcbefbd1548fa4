"""What a therapy is: a scenario entry (its schema) and an effect on a patient.

A ``[[therapy]]`` entry of a scenario is validated by its schema class (a
:class:`~immunesim.sections.TherapyEntry` with a ``type`` tag) and acts through a
:class:`TherapyEffect`: on its event days (its schedule) it does something once
(:meth:`TherapyEffect.on_event`: conditioning, an infusion, a vaccine), and on every step it
may act continuously (:meth:`TherapyEffect.each_step`: a drug level) or scale B-cell
activation (:meth:`TherapyEffect.activation_factor`: immunosuppression). Effects act on a
:class:`Patient`: the fast engine and the Mesa reference both are one, so they give the same
therapies at the same steps.

This module imports nothing of immunesim, so that an extension can declare a therapy
(:mod:`immunesim.extend`); the built-in ones are in :mod:`immunesim.engine.therapies`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np


@dataclass
class Event:
    """A therapy event as it happened in a run."""

    step: int
    day: float
    kind: str
    label: str
    detail: dict = field(default_factory=dict)


class Patient(Protocol):
    """What a therapy can do to a simulated patient."""

    def deplete(self, step: int, target_mask: int, thr_zone: np.ndarray, car_mask: int = 0) -> int:
        """Kill cells bearing a marker of ``target_mask`` with each zone's threshold
        (uint64[3]: marrow, lymphoid, tissue; or uint64[kinds, 3], a threshold per kind and
        zone); with ``car_mask`` non-zero, only the CAR-T cells whose receptor recognises one
        of its markers. Returns how many died."""
        ...

    def count_kind(self, kind: int) -> int:
        """Cells of a kind alive at the start of this step."""
        ...

    def count_car_t(self) -> dict[int, int]:
        """CAR-T cells alive now (memory cells included) by receptor: the marker mask their
        CAR recognises."""
        ...

    def infuse(self, step: int, count: int, target_mask: int) -> int:
        """Infuse ``count`` CAR-T cells recognising ``target_mask`` at free sites; returns
        how many found a site."""
        ...

    def add_antigen(self, layer: str, zone: str, amount: int) -> None:
        """Add ``amount`` internal units of a layer (by name: ``"antigen_tetanus"``) to
        every site of a zone."""
        ...


class TherapyEffect:
    """How one kind of therapy entry acts. Subclasses set ``schema`` (the entry's schema
    class; its ``type`` tag becomes :attr:`type`) and override what applies; the base does
    nothing. Every method gets the validated entry ``t``; ``s`` is the scenario."""

    schema: ClassVar[type]
    type: ClassVar[str]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        schema = cls.__dict__.get("schema")
        if schema is not None:
            cls.type = schema.model_fields["type"].annotation.__args__[0]

    def event_days(self, t: Any) -> list[float]:
        """Days of the entry's one-off events."""
        return []

    def drawn_event_days(self, t: Any, s: Any, seed: int) -> list[float]:
        """Days of the entry's one-off events that each patient meets at random: drawn from
        the run's ``seed`` (with :func:`~immunesim.rng.hash64_py`, so the same on every
        backend and on resuming), in addition to :meth:`event_days`."""
        return []

    def on_event(self, t: Any, s: Any, patient: Patient, step: int) -> dict:
        """The event of one of its days; returns the detail to log with it."""
        return {}

    def each_step(self, t: Any, s: Any, patient: Patient, step: int, day: float) -> None:
        """What it does on every step (after the day's events)."""

    def activation_factor(self, t: Any, day: float) -> float:
        """Factor on B-cell activation on ``day`` (1: none)."""
        return 1.0

    def blood_kill(
        self, t: Any, s: Any, day: float, car_t_per_ul: dict[int, float]
    ) -> list[tuple[int, float]]:
        """``[(target marker mask, rate per day), ...]``: how fast it kills the cells bearing
        one of a mask's markers while they cross the blood on ``day``, when the blood holds
        ``car_t_per_ul[receptor]`` CAR-T cells per microlitre of each receptor given so far
        (:mod:`immunesim.model.blood`); a cell bearing markers of several pairs dies at the
        sum of their rates. Empty for none."""
        return []

    def acts_from_day(self, t: Any) -> float:
        """The first day on which the entry may act on the patient other than through
        :meth:`activation_factor`: the run before it is the same whatever the entry says, so
        runs that differ in it can start from one cached run-in (:mod:`immunesim.runin`).

        The default is its first event day when the effect has no :meth:`each_step`, and
        minus infinity (it may act from the start) when it has one; an effect whose
        continuous action starts later says so by overriding this.
        """
        if type(self).each_step is not TherapyEffect.each_step:
            return -math.inf
        return min(self.event_days(t), default=math.inf)

    def label(self, t: Any) -> str:
        """Name of its events in outputs."""
        return t.label or t.type.replace("_", " ")


__all__ = ["Event", "Patient", "TherapyEffect"]

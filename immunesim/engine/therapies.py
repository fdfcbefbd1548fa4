"""The therapies' effects on a patient, one registered effect per kind of ``[[therapy]]``.

A therapy entry of a scenario (its schema: :mod:`immunesim.scenario`) acts through a
:class:`TherapyEffect`: on its event days (its schedule) it does something once
(:meth:`TherapyEffect.on_event`: conditioning, an infusion, a vaccine), and on every step it
may act continuously (:meth:`TherapyEffect.each_step`: a drug level) or scale B-cell
activation (:meth:`TherapyEffect.activation_factor`: immunosuppression). Effects act on a
:class:`Patient`: the fast engine and the Mesa reference both are one, so they give the same
therapies at the same steps. A new kind of therapy is its schema class and one registered
effect here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from immunesim.model.cells import marker_mask
from immunesim.model.params import MOL_SCALE
from immunesim.rng import rate_threshold, threshold
from immunesim.scenario import Scenario


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

    def deplete(self, step: int, target_mask: int, thr_zone: np.ndarray) -> int:
        """Kill cells bearing a marker of ``target_mask`` with each zone's threshold
        (uint64[3]); returns how many died."""
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
    """How one kind of therapy entry acts. Subclasses set ``type`` (the entry's ``type``
    tag) and override what applies; the base does nothing."""

    type: ClassVar[str]

    def event_days(self, t: Any) -> list[float]:
        """Days of the entry's one-off events."""
        return []

    def on_event(self, t: Any, s: Scenario, patient: Patient, step: int) -> dict:
        """The event of one of its days; returns the detail to log with it."""
        return {}

    def each_step(self, t: Any, s: Scenario, patient: Patient, step: int, day: float) -> None:
        """What it does on every step (after the day's events)."""

    def activation_factor(self, t: Any, day: float) -> float:
        """Factor on B-cell activation on ``day`` (1: none)."""
        return 1.0

    def label(self, t: Any) -> str:
        """Name of its events in outputs."""
        return t.label or t.type.replace("_", " ")


#: The effect of each therapy type.
EFFECTS: dict[str, TherapyEffect] = {}


def effect(cls: type[TherapyEffect]) -> type[TherapyEffect]:
    """Register a therapy effect under its ``type``."""
    EFFECTS[cls.type] = cls()
    return cls


@effect
class Lymphodepletion(TherapyEffect):
    """Conditioning: on each day of the course, each marker-bearing cell dies with the
    course's daily kill fraction, in every zone."""

    type = "lymphodepletion"

    def event_days(self, t):
        return list(t.days)

    def on_event(self, t, s, patient, step):
        thr = np.full(3, threshold(t.kill_fraction_per_day), np.uint64)
        return {"killed": int(patient.deplete(step, marker_mask(t.targets), thr))}


@effect
class CarT(TherapyEffect):
    """CAR-T infusion: the dose per kg becomes agents on this lattice through the patient's
    scale (cells per site)."""

    type = "car_t"

    def event_days(self, t):
        return [t.day]

    def on_event(self, t, s, patient, step):
        sites = s.lattice.size**2
        count = int(round(t.dose_per_kg * s.scale.weight_kg * sites / s.scale.body_cells))
        return {"cells": patient.infuse(step, count, marker_mask(t.targets))}

    def label(self, t):
        return t.label or f"CAR-T ({'+'.join(t.targets)})"


@effect
class AntiCD20(TherapyEffect):
    """Anti-CD20 antibody: each infusion is logged; on every step the drug level (first-order
    elimination of the infusions so far, in grams) kills CD20+ cells at a rate scaled by
    each zone's efficacy."""

    type = "anti_cd20"

    def event_days(self, t):
        return list(t.days)

    def each_step(self, t, s, patient, step, day):
        level = sum(
            t.dose_mg / 1000.0 * 0.5 ** ((day - d) / t.half_life_days) for d in t.days if d <= day
        )
        if level > 1e-3:
            eff = (t.marrow_efficacy, t.lymphoid_efficacy, t.tissue_efficacy)
            thr = np.array(
                [rate_threshold(t.kill_rate_per_day * level * e, s.time.dt_hours) for e in eff],
                np.uint64,
            )
            patient.deplete(step, marker_mask(t.targets), thr)

    def label(self, t):
        return t.label or "anti-CD20 infusion"


@effect
class Vaccination(TherapyEffect):
    """A vaccine: an antigen pulse over the lymphoid zone."""

    type = "vaccination"

    def event_days(self, t):
        return [t.day]

    def on_event(self, t, s, patient, step):
        patient.add_antigen(
            f"antigen_{t.antigen}", "lymphoid", int(round(t.amount_per_site * MOL_SCALE))
        )
        return {}

    def label(self, t):
        return t.label or f"vaccination ({t.antigen})"


@effect
class StandardOfCare(TherapyEffect):
    """Standard-of-care immunosuppression: B-cell activation scaled while it is given."""

    type = "standard_of_care"

    def activation_factor(self, t, day):
        return t.activation_factor if t.start_day <= day < t.stop_day else 1.0


__all__ = ["EFFECTS", "Event", "Patient", "TherapyEffect", "effect"]

"""The therapies' effects on a patient, one registered effect per kind of ``[[therapy]]``.

A therapy is its schema class (:mod:`immunesim.scenario`) and its
:class:`~immunesim.model.therapy.TherapyEffect` (what it does to a
:class:`~immunesim.model.therapy.Patient`), registered here under the schema's ``type`` tag.
A new kind of therapy is those two: here, or in an extension
(:mod:`immunesim.model.extensions`), whose effects are registered after the built-in ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from immunesim import scenario as entries
from immunesim.model import cd4, extensions
from immunesim.model.blood import car_t_in_blood, kind_rates, transit_kill_rates
from immunesim.model.cells import MARKERS, Kind
from immunesim.model.description import marker_mask
from immunesim.model.params import MOL_SCALE
from immunesim.model.therapy import Event, Patient, TherapyEffect
from immunesim.rng import ONE53, S_FLARE, hash64_py, rate_threshold, threshold

#: The effect of each therapy type.
EFFECTS: dict[str, TherapyEffect] = {}


def effect(cls: type[TherapyEffect]) -> type[TherapyEffect]:
    """Register a therapy effect under its ``type`` (its schema's tag)."""
    if cls.type in EFFECTS:
        raise ValueError(f"therapy type {cls.type!r} is registered twice")
    EFFECTS[cls.type] = cls()
    return cls


def kill_with_transit(s, patient, step, kills, zone_rates=(0.0, 0.0, 0.0)):
    """Kill the cells bearing a marker of the masks of ``kills`` (``(mask, kappa)`` pairs):
    at ``zone_rates`` (per day, one per zone), plus those that cross the blood while it kills
    them there at the sum of the ``kappa`` (per day) of the pairs whose markers they bear
    (:func:`immunesim.model.blood.transit_kill_rates`), as one threshold per kind and zone."""
    mask = 0
    for m, _ in kills:
        mask |= m
    targeted = (MARKERS & mask) != 0
    rates = transit_kill_rates(s, kind_rates(kills)) + np.asarray(zone_rates)
    if not rates[targeted].any():
        return
    thr = np.array([[rate_threshold(r, s.time.dt_hours) for r in row] for row in rates], np.uint64)
    patient.deplete(step, mask, thr)


@effect
class Lymphodepletion(TherapyEffect):
    """Conditioning: on each day of the course, each marker-bearing cell dies with the
    course's daily kill fraction, in every zone."""

    schema = entries.Lymphodepletion

    def event_days(self, t):
        return list(t.days)

    def on_event(self, t, s, patient, step):
        thr = np.full(3, threshold(t.kill_fraction_per_day), np.uint64)
        return {"killed": int(patient.deplete(step, marker_mask(t.targets), thr))}


def car_binders(cars: list) -> dict[str, tuple[float, float, Any]]:
    """Each target marker of a scenario's CAR-T entries (one binder each): the day of the
    first infusion that carries it and of the second (``inf`` if none), in the order of the
    infusions, and the first entry that carries it (whose immunity keys every entry that
    carries it shares)."""
    days: dict[str, list[float]] = {}
    first: dict[str, Any] = {}
    for e in sorted(cars, key=lambda e: e.day):
        for marker in e.targets:
            days.setdefault(marker, []).append(e.day)
            first.setdefault(marker, e)
    return {m: (d[0], d[1] if len(d) > 1 else math.inf, first[m]) for m, d in days.items()}


@effect
class CarT(TherapyEffect):
    """CAR-T infusion: the dose per kg becomes agents on this lattice through the patient's
    scale (cells per site)."""

    schema = entries.CarT

    def event_days(self, t):
        return [t.day]

    def on_event(self, t, s, patient, step):
        count = int(round(s.car_t_agents(t)))
        return {"cells": patient.infuse(step, count, marker_mask(t.targets))}

    def each_step(self, t, s, patient, step, day):
        """Host immunity against the CAR (once per scenario, from its first CAR-T entry). It
        is raised against each binder, the part of a CAR that recognises one target marker,
        with the immunity keys of the first entry that carries it: from
        ``anti_car_onset_days`` after the first infusion of a product that carries a binder,
        every CAR-T cell that carries it dies at
        ``anti_car_kill_rate_per_day * (1 - exp(-(days since onset) / rise))``, times the
        CD4 pool's :func:`~immunesim.model.cd4.anti_car_factor` (the host's T cells make
        it; lymphodepletion holds them low for months). Once a
        product carrying the binder is infused again, the immunity's memory recalls it at
        ``anti_car_recall_factor`` times that rate, whatever the pool (in the anti-Jo-1
        myositis case the re-infused cells failed despite full-dose lymphodepletion); a
        product against other markers only (BCMA after CD19) meets none until its own
        onset. A cell with two recognised binders dies at the higher of their rates (the
        draws are shared)."""
        cars = [e for e in s.therapy if e.type == "car_t"]
        if t is not cars[0]:
            return
        # CAR-T in blood kill the target-bearing cells crossing it (counted before the
        # host's immunity acts this step), each product's cells those bearing its targets
        in_blood = car_t_in_blood(s, day, patient.count_kind(Kind.CAR_T), patient.count_car_t)
        kills = self.blood_kill(t, s, day, in_blood)
        if kills:
            kill_with_transit(s, patient, step, kills)
        for marker, (first_day, again, own) in car_binders(cars).items():
            since = day - first_day - own.anti_car_onset_days
            if own.anti_car_kill_rate_per_day <= 0 or since <= 0:
                continue
            rate = own.anti_car_kill_rate_per_day * -np.expm1(-since / own.anti_car_rise_days)
            if day >= again:  # memory's recall: it survives conditioning
                rate *= own.anti_car_recall_factor
            else:  # the primary response, made by the host's T cells as they come back
                rate *= cd4.anti_car_factor(s, day)
            thr = np.full(3, rate_threshold(rate, s.time.dt_hours), np.uint64)
            patient.deplete(step, marker_mask(["CAR"]), thr, car_mask=marker_mask([marker]))

    def blood_kill(self, t, s, day, car_t_per_ul):
        """The CAR-T cells of each receptor in blood kill the cells bearing one of its
        markers (once per scenario, from its first CAR-T entry: ``car_t_per_ul`` holds every
        product's cells)."""
        cars = [e for e in s.therapy if e.type == "car_t"]
        if t is not cars[0]:
            return []
        rate = t.blood_kill_per_car_t_per_ul
        return [(receptor, rate * ul) for receptor, ul in car_t_per_ul.items() if ul > 0]

    def acts_from_day(self, t):
        return t.day  # host immunity starts after the first infusion

    def label(self, t):
        return t.label or f"CAR-T ({'+'.join(t.targets)})"


@effect
class AntiCD20(TherapyEffect):
    """Anti-CD20 antibody: each infusion is logged; on every step the drug level (first-order
    elimination of the infusions so far, in grams) kills CD20+ cells at a rate scaled by
    each zone's efficacy, and, much faster, those that cross the blood."""

    schema = entries.AntiCD20

    def event_days(self, t):
        return list(t.days)

    @staticmethod
    def level(t, day):
        """Circulating drug on ``day``, in grams (first-order elimination of the infusions
        so far)."""
        return sum(
            t.dose_mg / 1000.0 * 0.5 ** ((day - d) / t.half_life_days) for d in t.days if d <= day
        )

    def blood_kill(self, t, s, day, car_t_per_ul):
        return [(marker_mask(t.targets), t.blood_kill_rate_per_day * self.level(t, day))]

    def each_step(self, t, s, patient, step, day):
        """The kill in each zone, plus the kill in transit of the cells that cross the
        blood."""
        level = self.level(t, day)
        if level > 1e-3:
            kills = self.blood_kill(t, s, day, {})
            zones = (
                t.kill_rate_per_day
                * level
                * np.array([t.marrow_efficacy, t.lymphoid_efficacy, t.tissue_efficacy])
            )
            kill_with_transit(s, patient, step, kills, zones)

    def acts_from_day(self, t):
        return min(t.days)  # no drug before the first infusion

    def label(self, t):
        return t.label or "anti-CD20 infusion"


@effect
class Vaccination(TherapyEffect):
    """A vaccine: an antigen pulse over the lymphoid zone."""

    schema = entries.Vaccination

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
class Trigger(TherapyEffect):
    """A flare trigger: an autoantigen pulse over the target tissue."""

    schema = entries.Trigger

    def event_days(self, t):
        return list(t.days)

    def on_event(self, t, s, patient, step):
        patient.add_antigen("autoantigen", "tissue", int(round(t.autoantigen_per_site * MOL_SCALE)))
        return {}

    def label(self, t):
        return t.label or "flare trigger (autoantigen release)"


def flare_starts(t: entries.FlareTriggers, seed: int, last_day: float) -> list[float]:
    """First days of the flare triggers a patient meets: a Poisson process at
    ``t.rate_per_year`` from ``t.start_day`` until ``t.stop_day`` or ``last_day``, its
    exponential gaps drawn from ``hash64_py(seed, 0, k, S_FLARE)`` for the k-th gap."""
    rate = t.rate_per_year / 365.25
    stop = min(t.stop_day, last_day)
    starts: list[float] = []
    day = t.start_day
    while rate > 0:
        u = (hash64_py(seed, 0, len(starts), S_FLARE) >> 11) / ONE53  # uniform in [0, 1)
        day += -math.log1p(-u) / rate
        if day >= stop:
            break
        starts.append(day)
    return starts


@effect
class FlareTriggers(TherapyEffect):
    """Flare triggers at random: on each day of each trigger a patient meets
    (:func:`flare_starts`), an autoantigen pulse over the target tissue."""

    schema = entries.FlareTriggers

    def drawn_event_days(self, t, s, seed):
        last = s.time.follow_up_days
        return [
            d + i
            for d in flare_starts(t, seed, last)
            for i in range(t.duration_days)
            if d + i <= last
        ]

    def on_event(self, t, s, patient, step):
        return EFFECTS["trigger"].on_event(t, s, patient, step)

    def acts_from_day(self, t):
        return t.start_day  # whatever the seed draws, nothing happens before it

    def label(self, t):
        return t.label or "flare trigger at random (autoantigen release)"


@effect
class StandardOfCare(TherapyEffect):
    """Standard-of-care immunosuppression: B-cell activation scaled while it is given."""

    schema = entries.StandardOfCare

    def activation_factor(self, t, day):
        return t.activation_factor if t.start_day <= day < t.stop_day else 1.0


for _cls in extensions.declared("THERAPIES"):
    effect(_cls)


__all__ = ["EFFECTS", "Event", "Patient", "TherapyEffect", "effect"]

"""Blood: a compartment that cells cross on their way between the lattice's zones.

A lymphocyte spends about half an hour in blood on each passage (``blood.transit_hours``),
much less than one step, so blood is kept in quasi-steady state with the lattice instead of
holding agents of its own: a cell of kind ``k`` enters blood at its kind's rate
(``cells.<kind>.blood_egress_per_day`` in its home zone, ``blood_egress_away_per_day``
outside it or, for a kind with no home, anywhere) and leaves it at ``1 / transit``, back to
the lattice, or dies there at a therapy's blood kill rate ``kappa`` (an anti-CD20 antibody
opsonises the CD20+ cells it meets in blood, and the liver's macrophages clear them; CAR-T
cells in blood kill the target-bearing cells they meet, at a rate proportional to their
count per microlitre). So
the cells in blood at any time are::

    blood[k] = sum over zones z of  N[k, z] * egress(k, z) * transit / (1 + kappa[k] * transit)

and a cell that enters blood dies there with probability ``kappa * transit / (1 + kappa *
transit)``: the kill in transit, which the therapy applies on the lattice as a rate
``egress(k, z) * that probability`` in each zone (:func:`transit_kill_rates`). Cells that
rarely leave their zone (B cells resident in lymph-node follicles, long-lived plasma cells)
are thus spared by a drug that empties the blood; cells that must cross it (new B cells
leaving the marrow) are not.

The blood volume and the cells one agent stands for (``scale``) turn ``blood`` into cells
per microlitre, the unit of a clinic's flow cytometry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from immunesim.model.cells import KIND_NAMES, MARKERS, N_KINDS, Kind, marker_mask
from immunesim.model.params import ZONE_CODE, ZONE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from immunesim.scenario import Scenario


def egress_rates(s: Scenario) -> np.ndarray:
    """float64[N_KINDS, 3]: the rate (per day) at which a cell of each kind in each zone
    enters blood."""
    out = np.zeros((N_KINDS, len(ZONE_NAMES)))
    for k, name in enumerate(KIND_NAMES):
        c = getattr(s.cells, name)
        out[k, :] = c.blood_egress_away_per_day
        if c.home in ZONE_CODE:
            out[k, ZONE_CODE[c.home]] = c.blood_egress_per_day
    return out


def transit_days(s: Scenario) -> float:
    """Mean time a cell spends in blood on one passage, in days."""
    return s.blood.transit_hours / 24.0


def death_in_transit(kappa: np.ndarray | float, transit: float) -> np.ndarray:
    """Probability that a cell entering blood dies there at kill rate ``kappa`` (per day)."""
    kt = np.asarray(kappa, np.float64) * transit
    return kt / (1.0 + kt)


def blood_cells(counts_kz: np.ndarray, s: Scenario, kappa: np.ndarray) -> np.ndarray:
    """float64[N_KINDS]: agents of each kind in blood (an expectation, not whole agents).

    Args:
        counts_kz: agents on the lattice by kind and zone, ``[N_KINDS, 3]``.
        s: the scenario (egress rates and transit time).
        kappa: float64[N_KINDS], each kind's kill rate in blood now (per day).
    """
    tau = transit_days(s)
    inflow = (counts_kz * egress_rates(s)).sum(axis=1)  # agents entering blood per day
    return inflow * tau / (1.0 + np.asarray(kappa, np.float64) * tau)


def per_ul(s: Scenario) -> float:
    """Cells per microlitre of blood that one agent in blood stands for."""
    L = s.lattice.size
    return s.scale.body_cells / (L * L) / s.scale.blood_volume_ul


def car_t_per_ul(s: Scenario, n_car_t: int) -> float:
    """CAR-T cells per microlitre of blood when the lattice holds ``n_car_t`` (they cross
    the blood at one rate wherever they are; nothing kills them there)."""
    k = Kind.CAR_T
    return n_car_t * float(egress_rates(s)[k, 0]) * transit_days(s) * per_ul(s)


def receptors_given(s: Scenario, day: float) -> list[int]:
    """The receptors (marker masks a CAR recognises) of the CAR-T products infused by
    ``day``, each once, in the order of their first infusion."""
    cars = sorted((e for e in s.therapy if e.type == "car_t" and e.day <= day), key=lambda e: e.day)
    return list(dict.fromkeys(marker_mask(e.targets) for e in cars))


def car_t_in_blood(
    s: Scenario, day: float, n_car_t: int, by_receptor: Callable[[], dict[int, int]]
) -> dict[int, float]:
    """CAR-T cells per microlitre of blood by receptor (the marker mask their CAR
    recognises), for each product infused by ``day``.

    Args:
        n_car_t: the CAR-T cells on the lattice (all products); it is the count when one
            receptor has been infused.
        by_receptor: a callable giving ``{receptor: cells on the lattice}``, called only
            when products with different receptors have been infused (it reads the cells).
    """
    receptors = receptors_given(s, day)
    if len(receptors) <= 1:
        return {r: car_t_per_ul(s, n_car_t) for r in receptors}
    counts = by_receptor()
    return {r: car_t_per_ul(s, counts.get(r, 0)) for r in receptors}


def kind_rates(kills: Iterable[tuple[int, float]]) -> np.ndarray:
    """float64[N_KINDS]: each kind's kill rate in blood, summed over ``(marker mask, rate)``
    pairs (a cell bearing a marker of a pair's mask dies at its rate)."""
    kappa = np.zeros(N_KINDS)
    for mask, rate in kills:
        if mask and rate > 0:
            kappa += np.where(MARKERS & mask, rate, 0.0)
    return kappa


def kill_rates(s: Scenario, day: float, car_t_ul: dict[int, float]) -> np.ndarray:
    """float64[N_KINDS]: each kind's kill rate in blood on ``day`` (per day), summed over the
    scenario's therapies (:meth:`~immunesim.model.therapy.TherapyEffect.blood_kill`), with
    ``car_t_ul`` CAR-T cells per microlitre of blood by receptor
    (:func:`car_t_in_blood`)."""
    from immunesim.engine.therapies import EFFECTS

    return kind_rates(
        pair for t in s.therapy for pair in EFFECTS[t.type].blood_kill(t, s, day, car_t_ul)
    )


def transit_kill_rates(s: Scenario, kappa: np.ndarray) -> np.ndarray:
    """float64[N_KINDS, 3]: the rate (per day) at which cells of each kind in each zone die
    in blood, at blood kill rates ``kappa`` (float64[N_KINDS])."""
    return egress_rates(s) * death_in_transit(kappa, transit_days(s))[:, None]


__all__ = [
    "blood_cells",
    "car_t_in_blood",
    "car_t_per_ul",
    "death_in_transit",
    "egress_rates",
    "kill_rates",
    "kind_rates",
    "per_ul",
    "receptors_given",
    "transit_days",
    "transit_kill_rates",
]

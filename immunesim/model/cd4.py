"""The CD4 T-cell pool: the body's CD4 T cells outside the follicles, in blood units.

The lattice holds the T helpers of the follicles, a small part of the CD4 T cells a clinic
counts in blood; the rest recirculate through blood, lymph nodes and tissue and are kept
here as one number, ``P``, in CD4 T cells per microlitre of blood (``[cd4]``). Nothing on
the lattice acts on it, so it is a function of the scenario and the day alone (the same at
any lattice size, time step, backend and seed):

- before the first lymphodepletion it is at its baseline ``B``;
- on each day of a lymphodepletion course whose targets a CD4 T cell bears (``CD3`` or
  ``CD4``), the course's ``kill_fraction_per_day`` of it dies;
- in between it grows back by thymic output ``theta`` and homeostatic proliferation at rate
  ``r``, both slowing as the pool fills::

      dP/dt = (theta + r * P) * (1 - P / B)

  whose solution from ``P0`` is ``P(t) = B - (r B + theta) / (r + Q0 exp(lambda t))``
  with ``Q0 = (theta + r P0) / (B - P0)`` and ``lambda = (theta + r B) / B``: a logistic
  return when ``theta = 0``, an exponential one when ``r = 0``.

The pool is the ``cd4_per_ul`` output, and the follicles' T-helper production follows it
(:func:`help_factor`): follicular helpers differentiate from the CD4 T cells that reach a
lymph node, so after lymphodepletion T help comes back as the pool does, over months.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from immunesim.model.cells import MARKERS, Kind, marker_mask

if TYPE_CHECKING:  # pragma: no cover
    from immunesim.scenario import Scenario


def depletions(s: Scenario) -> list[tuple[float, float]]:
    """``(day, surviving fraction)`` of each day of each lymphodepletion course that hits
    CD4 T cells, in order of day."""
    t_cell = int(MARKERS[Kind.T_HELPER])
    out = [
        (float(day), 1.0 - t.kill_fraction_per_day)
        for t in s.therapy
        if t.type == "lymphodepletion" and marker_mask(t.targets) & t_cell
        for day in t.days
    ]
    return sorted(out)


def regrow(s: Scenario, p0: float, days: float) -> float:
    """The pool ``days`` after it held ``p0`` cells per microlitre, with no depletion in
    between (the closed form of the module docstring)."""
    c = s.cd4
    b, r, theta = c.baseline_per_ul, c.homeostatic_rate_per_day, c.thymic_per_ul_per_day
    if p0 >= b or days <= 0:
        return min(p0, b)
    q0 = (theta + r * p0) / (b - p0)
    growth = (theta + r * b) / b * days
    if growth > 700.0:  # exp would overflow: the pool is at its baseline
        return b
    return b - (r * b + theta) / (r + q0 * math.exp(growth)) if r + q0 > 0 else p0


def pool_per_ul(s: Scenario, day: float) -> float:
    """CD4 T cells per microlitre of blood on ``day`` (a depletion on ``day`` counts)."""
    p, last = s.cd4.baseline_per_ul, -math.inf
    for when, survive in depletions(s):
        if when > day:
            break
        if last > -math.inf:
            p = regrow(s, p, when - last)
        p *= survive
        last = when
    return p if last == -math.inf else regrow(s, p, day - last)


def follows(s: Scenario, day: float, f: float) -> float:
    """``1 - f + f * pool / baseline`` on ``day``: the factor on what follows the pool to
    the extent ``f`` (1 on a day the pool is at its baseline, whatever ``f``)."""
    if f == 0:
        return 1.0
    return 1.0 - f + f * pool_per_ul(s, day) / s.cd4.baseline_per_ul


def help_factor(s: Scenario, day: float) -> float:
    """The factor on the follicles' T-helper target density on ``day``
    (``cd4.help_follows_pool``; :func:`follows`)."""
    return follows(s, day, s.cd4.help_follows_pool)


def anti_car_factor(s: Scenario, day: float) -> float:
    """The factor on the clearance rate of host immunity against the CAR on ``day``
    (``cd4.anti_car_follows_pool``; :func:`follows`): the host's T cells make that
    immunity, and lymphodepletion removed most of them."""
    return follows(s, day, s.cd4.anti_car_follows_pool)


def pool_series(s: Scenario, days: np.ndarray) -> np.ndarray:
    """:func:`pool_per_ul` on each of ``days``."""
    return np.array([pool_per_ul(s, float(d)) for d in days], np.float64)


__all__ = [
    "anti_car_factor",
    "depletions",
    "follows",
    "help_factor",
    "pool_per_ul",
    "pool_series",
    "regrow",
]

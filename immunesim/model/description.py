"""The vocabulary of the model description: markers, cell kinds and molecular layers.

This module imports nothing of immunesim, so that an extension (:mod:`immunesim.extend`)
can declare kinds and layers with it before the tables derived from them
(:mod:`immunesim.model.cells`, :mod:`immunesim.model.layers`) are made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Marker(IntEnum):
    """Surface markers as bit positions of a marker mask (``uint8``)."""

    CD19 = 0
    CD20 = 1
    BCMA = 2
    CD3 = 3
    CD4 = 4
    CAR = 5  #: the chimeric antigen receptor: what host immunity against CAR-T cells sees


MARKER_NAMES: tuple[str, ...] = tuple(m.name for m in Marker)


def marker_mask(names: list[str] | tuple[str, ...]) -> int:
    """Return the bit mask for a list of marker names, e.g. ``["CD19", "BCMA"]``.

    Raises:
        ValueError: if a name is not a known marker.
    """
    mask = 0
    for name in names:
        try:
            mask |= 1 << Marker[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown marker {name!r}; expected one of {', '.join(MARKER_NAMES)}"
            ) from None
    return mask


@dataclass(frozen=True)
class CellKind:
    """One cell kind.

    Attributes:
        name: name in outputs and scenario files (``[cells.<name>]``, time-series columns).
        label: name in figures and legends.
        markers: surface markers it carries (:class:`Marker` names).
        lineage: ``"B"`` for the B lineage (its autoreactive cells are counted apart and
            drawn as autoreactive B when ``autoreactive_shown``), ``"T"`` for T cells.
        colour: RGB colour in lattice pictures (Okabe-Ito colour-blind-safe palette).
        params: default values of its ``[cells.<name>]`` table (lifespan, movement, homing,
            homeostatic division: the keys of ``scenario.CellKindParams``).
        autoreactive_shown: whether lattice pictures draw its autoreactive cells as
            "autoreactive B" instead of in its own colour.
        initial: ``(zone, density)`` for a kind an extension seeds at the start: the zone
            and the default of its ``[initial]`` key (cells per site of that zone). The
            built-in kinds are seeded by :mod:`immunesim.engine.initial` itself.
    """

    name: str
    label: str
    markers: tuple[str, ...]
    lineage: str
    colour: tuple[int, int, int]
    params: Mapping[str, Any] = field(default_factory=dict)
    autoreactive_shown: bool = False
    initial: tuple[str, float] | None = None


@dataclass(frozen=True)
class Layer:
    """One molecular species (or one family of them).

    Attributes:
        name: name of the layer, or prefix of its members (``antibody_self``,
            ``antigen_tetanus``).
        per: ``None`` for one layer, ``"specificity"`` for one per specificity class,
            ``"vaccine"`` for one per vaccine antigen.
        unit: user unit of the quantity per site.
        half_life: key of its half-life in days in the scenario's ``[molecules]`` table.
        diffuses: whether it diffuses between neighbouring sites.
        circulates: whether it exchanges with the well-mixed circulation.
        source: what adds it (for the documentation).
        secreted_by: ``(kind name, [molecules] key of the amount per cell per day)`` of each
            kind that secretes it onto its site (a kind secretes at most one layer; into a
            per-specificity layer, the member of the cell's specificity).
        metric: its time-series column(s): ``"site"`` mean per site, ``"tissue"`` mean per
            tissue site, ``None`` none.
        defaults: ``[molecules]`` keys this layer adds, with their defaults (for a layer an
            extension declares; the built-in layers' keys are part of the schema).
    """

    name: str
    per: str | None
    unit: str
    half_life: str
    diffuses: bool
    circulates: bool
    source: str
    secreted_by: tuple[tuple[str, str], ...] = ()
    metric: str | None = "site"
    defaults: Mapping[str, float] = field(default_factory=dict)


__all__ = ["MARKER_NAMES", "CellKind", "Layer", "Marker", "marker_mask"]

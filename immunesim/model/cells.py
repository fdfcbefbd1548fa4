"""Cell kinds, their surface markers and the specificity classes, declared once.

This module is the single place that says which cell carries which marker, how it is
named in outputs and scenario files, how figures label and colour it. Therapies (CAR-T,
anti-CD20, lymphodepletion) name markers, never cell kinds, so a new therapy or a new kind
needs no special case anywhere else. Everything that lists kinds (the ``Kind`` codes, the
marker table, the count classes of the metrics, snapshot categories, palettes and legends)
is derived from :data:`KINDS`.

The kind and marker codes are small integers because they are stored in the cell arrays
(``int8``) and read by compiled kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Marker(IntEnum):
    """Surface markers as bit positions of a marker mask."""

    CD19 = 0
    CD20 = 1
    BCMA = 2
    CD3 = 3
    CD4 = 4


MARKER_NAMES: tuple[str, ...] = tuple(m.name for m in Marker)


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
        autoreactive_shown: whether lattice pictures draw its autoreactive cells as
            "autoreactive B" instead of in its own colour.
    """

    name: str
    label: str
    markers: tuple[str, ...]
    lineage: str
    colour: tuple[int, int, int]
    autoreactive_shown: bool = False


#: The cell kinds of DESIGN section 2, in code order (the code is the index).
KINDS: tuple[CellKind, ...] = (
    CellKind("naive_b", "naive B", ("CD19", "CD20"), "B", (86, 180, 233), True),  # sky blue
    CellKind("activated_b", "activated B", ("CD19", "CD20"), "B", (0, 114, 178), True),  # blue
    CellKind("memory_b", "memory B", ("CD19", "CD20"), "B", (204, 121, 167), True),  # purple
    # white: antibody factories stand out on the dark zones
    CellKind("plasmablast", "plasmablast", ("CD19", "BCMA"), "B", (245, 245, 245)),
    CellKind("llpc", "long-lived plasma cell", ("BCMA",), "B", (0, 158, 115)),  # bluish green
    CellKind("t_helper", "T helper", ("CD3", "CD4"), "T", (170, 170, 170)),  # grey
    CellKind("car_t", "CAR-T", ("CD3",), "T", (240, 228, 66)),  # yellow
)

#: Cell kinds (stored as ``int8`` in ``cells.kind``); ``Kind.NAIVE_B`` ... ``Kind.CAR_T``.
Kind = IntEnum("Kind", [(k.name.upper(), i) for i, k in enumerate(KINDS)])  # type: ignore[misc]

N_KINDS = len(KINDS)

#: Names used in outputs and scenario files, indexed by ``Kind``.
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)


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


#: The marker table: ``MARKERS[kind]`` is the marker mask of that kind.
MARKERS = np.array([marker_mask(k.markers) for k in KINDS], dtype=np.uint8)


def kinds_bearing(marker: str) -> tuple[int, ...]:
    """Codes of the kinds that carry ``marker``."""
    bit = 1 << Marker[marker]
    return tuple(i for i in range(N_KINDS) if MARKERS[i] & bit)


def kinds_of_lineage(lineage: str) -> tuple[int, ...]:
    """Codes of the kinds of a lineage (``"B"`` or ``"T"``)."""
    return tuple(i for i, k in enumerate(KINDS) if k.lineage == lineage)


# Cell state bits (``cells.state``, int8).
#: CAR-T cell in the persistent memory pool (long-lived, lower killing).
STATE_CAR_T_MEMORY = 1
#: Bits 1..6 of a CAR-T cell's state count its divisions since infusion (its generation).
GENERATION_SHIFT = 1
GENERATION_MAX = 63

#: Classes of cells that live, die and are counted apart: every kind, then memory CAR-T
#: cells (a CAR-T cell whose state has ``STATE_CAR_T_MEMORY``). The class of a cell is
#: :func:`immunesim.kernels.lifecycle.cell_class`.
CLASS_NAMES: tuple[str, ...] = (*KIND_NAMES, "car_t_memory")
N_CLASSES = len(CLASS_NAMES)
#: Class index of memory CAR-T cells.
CAR_T_MEMORY_CLASS = N_KINDS

#: Cell categories of lattice pictures (the code stored in snapshots; 0 = empty): every
#: kind in code order, autoreactive B after the first kind that shows it.
CATEGORIES: tuple[str, ...]
#: RGB of each category (index 0, empty, is replaced by the zone backdrop).
PALETTE: np.ndarray
#: Category code of each kind (``KIND_CATEGORY[kind]``) and of an autoreactive B cell.
KIND_CATEGORY: np.ndarray
AUTOREACTIVE_CATEGORY: int
AUTOREACTIVE_COLOUR = (213, 94, 0)  # vermillion


def _categories() -> tuple[tuple[str, ...], np.ndarray, np.ndarray, int]:
    labels, colours, of_kind, auto = ["empty"], [(0, 0, 0)], [], 0
    for k in KINDS:
        of_kind.append(len(labels))
        labels.append(k.label)
        colours.append(k.colour)
        if k.autoreactive_shown and not auto:
            auto = len(labels)
            labels.append("autoreactive B")
            colours.append(AUTOREACTIVE_COLOUR)
    return (tuple(labels), np.array(colours, np.uint8), np.array(of_kind, np.uint8), auto)


CATEGORIES, PALETTE, KIND_CATEGORY, AUTOREACTIVE_CATEGORY = _categories()
#: Kinds whose autoreactive cells are drawn as "autoreactive B".
AUTOREACTIVE_SHOWN: tuple[int, ...] = tuple(i for i, k in enumerate(KINDS) if k.autoreactive_shown)


def specificity_names(vaccines: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Names of the specificity classes: ``self``, one per vaccine antigen, ``other``.

    The class index is stored as ``int8`` in ``cells.spec``; 0 is always ``self`` and the
    last is always ``other``.
    """
    return ("self", *vaccines, "other")


__all__ = [
    "AUTOREACTIVE_CATEGORY",
    "AUTOREACTIVE_SHOWN",
    "CAR_T_MEMORY_CLASS",
    "CATEGORIES",
    "CLASS_NAMES",
    "CellKind",
    "KINDS",
    "KIND_CATEGORY",
    "KIND_NAMES",
    "Kind",
    "MARKERS",
    "MARKER_NAMES",
    "Marker",
    "N_CLASSES",
    "N_KINDS",
    "PALETTE",
    "STATE_CAR_T_MEMORY",
    "kinds_bearing",
    "kinds_of_lineage",
    "marker_mask",
    "specificity_names",
]

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

from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from immunesim.model import extensions
from immunesim.model.description import MARKER_NAMES, CellKind, Marker, marker_mask


def _params(lifespan, move, home, homing=0.5, stay=0.9, division=0.0, blood=(0.0, 0.0)):
    """Default ``[cells.<kind>]`` values: lifespan (days), move rate (mean moves of one site
    per day; the values are those the schema-1 calibration realised at a 1-hour step), home zone,
    homing and stay probabilities, homeostatic division rate (per day), and the rates (per
    day) at which a cell enters the blood in its home zone and outside it
    (:mod:`immunesim.model.blood`)."""
    return {
        "lifespan_days": lifespan,
        "move_rate_per_day": move,
        "home": home,
        "homing": homing,
        "stay": stay,
        "division_rate_per_day": division,
        "blood_egress_per_day": blood[0],
        "blood_egress_away_per_day": blood[1],
    }


#: The built-in cell kinds of DESIGN section 2, in code order (the code is the index). Blood
#: (home, away): B cells in lymph-node follicles rarely leave them (0.02/d) and new B cells
#: cross the blood from the marrow (2/d); germinal-centre B cells and long-lived plasma cells
#: stay; plasmablasts mostly walk to the marrow (0.1/d through blood); T helpers recirculate
#: (2/d, a 12-hour stay in a lymph node); CAR-T cells, with no home, 1/d. Markers: BCMA is
#: on germinal-centre (activated) B cells, plasmablasts and plasma cells, not on naive and
#: most memory B cells (membrane BCMA on activated B cells and Ig-secreting cells: Laurent
#: et al., Nat Commun 2015, doi:10.1038/ncomms8333); long-lived plasma cells have lost CD19.
CORE_KINDS: tuple[CellKind, ...] = (
    # sky blue
    CellKind("naive_b", "naive B", ("CD19", "CD20"), "B", (86, 180, 233),
             _params(40.0, 15.2, "lymphoid", division=0.0046, blood=(0.02, 2.0)),
             autoreactive_shown=True),
    # blue
    CellKind("activated_b", "activated B", ("CD19", "CD20", "BCMA"), "B", (0, 114, 178),
             _params(10.0, 5.3, "lymphoid"), autoreactive_shown=True),
    # purple
    CellKind("memory_b", "memory B", ("CD19", "CD20"), "B", (204, 121, 167),
             _params(35.0, 9.4, "lymphoid", division=0.0266, blood=(0.02, 2.0)),
             autoreactive_shown=True),
    # white: antibody factories stand out on the dark zones
    CellKind("plasmablast", "plasmablast", ("CD19", "BCMA"), "B", (245, 245, 245),
             _params(4.0, 15.2, "marrow", homing=0.9, stay=0.95, blood=(0.0, 0.1))),
    # bluish green
    CellKind("llpc", "long-lived plasma cell", ("BCMA",), "B", (0, 158, 115),
             _params(7300.0, 0.0, "marrow", homing=0.0, stay=1.0)),
    # grey
    CellKind("t_helper", "T helper", ("CD3", "CD4"), "T", (170, 170, 170),
             _params(120.0, 15.2, "lymphoid", blood=(2.0, 2.0))),
    # yellow
    CellKind("car_t", "CAR-T", ("CD3", "CAR"), "T", (240, 228, 66),
             _params(6.2, 15.2, "none", homing=0.0, stay=0.0, blood=(1.0, 1.0))),
)  # fmt: skip


def _all_kinds() -> tuple[CellKind, ...]:
    kinds = CORE_KINDS + extensions.declared("KINDS")
    seen: set[str] = set()
    for k in kinds:
        if k.name in seen or not k.name.isidentifier():
            raise ValueError(f"cell kind {k.name!r}: a name must be a new identifier")
        seen.add(k.name)
        marker_mask(k.markers)  # raises on an unknown marker
    return kinds


#: Every cell kind: the built-in ones, then those of the extensions.
KINDS: tuple[CellKind, ...] = _all_kinds()

#: Cell kinds (stored as ``int8`` in ``cells.kind``); ``Kind.NAIVE_B`` ... ``Kind.CAR_T``.
if TYPE_CHECKING:

    class Kind(IntEnum):
        """The built-in kinds, as the type checker sees them (extensions add more)."""

        NAIVE_B = 0
        ACTIVATED_B = 1
        MEMORY_B = 2
        PLASMABLAST = 3
        LLPC = 4
        T_HELPER = 5
        CAR_T = 6

else:
    Kind = IntEnum("Kind", [(k.name.upper(), i) for i, k in enumerate(KINDS)])

N_KINDS = len(KINDS)

#: Names used in outputs and scenario files, indexed by ``Kind``.
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)


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


def specificity_names(
    vaccines: list[str] | tuple[str, ...], autoantibodies: list[str] | tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Names of the specificity classes: ``self`` (anti-dsDNA), one per further
    autoantibody, one per vaccine antigen, ``other``.

    The class index is stored as ``int8`` in ``cells.spec``; 0 is always ``self``, the
    autoreactive classes come first (``1 + len(autoantibodies)`` of them) and the last is
    always ``other``.
    """
    return ("self", *autoantibodies, *vaccines, "other")


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

"""Cell kinds, their surface markers and the specificity classes.

This module is the single place that says which cell carries which marker. Therapies
(CAR-T, anti-CD20, lymphodepletion) name markers, never cell kinds, so a new therapy or a
new kind needs no special case anywhere else.

The kind and marker codes are small integers because they are stored in the cell arrays
(``int8``) and read by compiled kernels.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    """Cell kinds (stored as ``int8`` in ``CellState.kind``)."""

    NAIVE_B = 0
    ACTIVATED_B = 1
    MEMORY_B = 2
    PLASMABLAST = 3
    LLPC = 4
    T_HELPER = 5
    CAR_T = 6


N_KINDS = len(Kind)

#: Names used in outputs and scenario files, indexed by ``Kind``.
KIND_NAMES: tuple[str, ...] = (
    "naive_b",
    "activated_b",
    "memory_b",
    "plasmablast",
    "llpc",
    "t_helper",
    "car_t",
)


class Marker(IntEnum):
    """Surface markers as bit positions of a marker mask."""

    CD19 = 0
    CD20 = 1
    BCMA = 2
    CD3 = 3
    CD4 = 4


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


def _bits(*markers: Marker) -> int:
    out = 0
    for m in markers:
        out |= 1 << m
    return out


#: The marker table of DESIGN section 2: ``MARKERS[kind]`` is the marker mask of that kind.
MARKERS = np.array(
    [
        _bits(Marker.CD19, Marker.CD20),  # naive B
        _bits(Marker.CD19, Marker.CD20),  # activated / germinal-centre B
        _bits(Marker.CD19, Marker.CD20),  # memory B
        _bits(Marker.CD19, Marker.BCMA),  # plasmablast
        _bits(Marker.BCMA),  # long-lived plasma cell
        _bits(Marker.CD3, Marker.CD4),  # T helper
        _bits(Marker.CD3),  # CAR-T
    ],
    dtype=np.uint8,
)

# Cell state bits (``State.state``, int8).
#: CAR-T cell in the persistent memory pool (long-lived, lower killing).
STATE_CAR_T_MEMORY = 1
#: Bits 1..6 of a CAR-T cell's state count its divisions since infusion (its generation).
GENERATION_SHIFT = 1
GENERATION_MAX = 63


def specificity_names(vaccines: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Names of the specificity classes: ``self``, one per vaccine antigen, ``other``.

    The class index is stored as ``int8`` in ``CellState.spec``; 0 is always ``self`` and the
    last is always ``other``.
    """
    return ("self", *vaccines, "other")

"""What an extension of the model description uses (see :mod:`immunesim.model.extensions`).

An extension module imports these names only from here, declares ``KINDS``, ``LAYERS`` and
``THERAPIES``, and is named in ``IMMUNESIM_EXTENSIONS`` (or installed under the entry-point
group ``immunesim.extensions``) before immunesim is imported::

    from typing import Literal
    from immunesim.extend import CellKind, Fraction, Layer, TherapyEffect, TherapyEntry

    KINDS = (CellKind("nk", "NK cell", ("CD3",), "T", (0, 0, 0),
                      {"lifespan_days": 10.0, "move_rate_per_day": 24.0, "home": "none"},
                      initial=("lymphoid", 0.02)),)
    LAYERS = (Layer("interferon", None, "units", "interferon_half_life_days", True, True,
                    "secreted by NK cells", secreted_by=(("nk", "nk_secretion_per_day"),),
                    defaults={"interferon_half_life_days": 0.5, "nk_secretion_per_day": 1.0}),)

A kind gets a ``[cells.<name>]`` table (defaults from its ``params``) and, with ``initial``,
an ``[initial]`` key; a layer's ``defaults`` become ``[molecules]`` keys; a therapy's schema
joins the ``[[therapy]]`` types.
"""

from immunesim.model.description import MARKER_NAMES, CellKind, Layer, Marker, marker_mask
from immunesim.model.therapy import Event, Patient, TherapyEffect
from immunesim.sections import Fraction, NonNeg, Pos, Section, TherapyEntry

__all__ = [
    "MARKER_NAMES",
    "CellKind",
    "Event",
    "Fraction",
    "Layer",
    "Marker",
    "NonNeg",
    "Patient",
    "Pos",
    "Section",
    "TherapyEffect",
    "TherapyEntry",
    "marker_mask",
]

"""The fields of a cell and of a lattice site, declared once.

Everything that lists fields is derived from these tables: the state's allocation
(:func:`immunesim.state.allocate`), the slot writes and copies of births, daughters and
compaction (:mod:`immunesim.kernels.slots`), the CUDA backend's spare buffers and the
memory estimate. The structured arguments the kernels take, :class:`Cells` and
:class:`Sites`, are named tuples of these arrays (numba compiles attribute access on them
to a plain array access).

Adding a cell field is one entry in :data:`CELL_FIELDS` (new cells start with its ``fill``
value; compaction moves it when it is ``persistent``); a rule then reads and writes it as
``cells.<name>[i]``.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: ``claim`` of a site no cell has claimed (conflicts go to the lowest key).
CLAIM_FREE = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Field:
    """One array of the state.

    Attributes:
        name: attribute name (``cells.<name>``, ``sites.<name>``).
        dtype: numpy dtype of the array.
        meaning: what a value means, with its unit.
        fill: value of an unused slot and of a newborn cell.
        persistent: whether the value belongs to the cell and moves with it when slots are
            compacted (``False`` for scratch that a phase fills before it reads it).
    """

    name: str
    dtype: type
    meaning: str
    fill: int = 0
    persistent: bool = True


#: The fields of a cell, one array each of length ``capacity`` (slots ``>= n`` unused).
CELL_FIELDS: tuple[Field, ...] = (
    Field("uid", np.int64, "persistent identity; every random number of a cell is keyed by it"),
    Field("kind", np.int8, "cell kind (immunesim.model.cells.Kind)"),
    Field("state", np.int8, "state bits: CAR-T memory flag (bit 0), generation (bits 1..6)"),
    Field("spec", np.int8, "specificity class: 0 self, 1..V vaccine antigens, V+1 other"),
    Field("x", np.int32, "lattice column, sites"),
    Field("y", np.int32, "lattice row, sites"),
    Field("age", np.int32, "steps since birth"),
    Field("counter", np.int16, "divisions left (activated B) or stimulated steps left (CAR-T)"),
    Field("car_mask", np.uint8, "marker mask a CAR-T cell's receptor recognises (0 otherwise)"),
    Field("alive", np.uint8, "1, or 0 once the cell has died in this step (removed at compaction)"),
    Field(
        "want",
        np.int32,
        "scratch: site or victim slot a cell proposes (-1 none)",
        fill=-1,
        persistent=False,
    ),
    Field("key", np.int64, "scratch: priority key of the proposal (lowest wins)", persistent=False),
)

#: Fields that move with a cell (everything but the scratch).
PERSISTENT_CELL_FIELDS: tuple[str, ...] = tuple(f.name for f in CELL_FIELDS if f.persistent)

#: The per-site arrays (length ``L*L``, site index ``y*L + x``), plus ``toward`` and ``mol``.
SITE_FIELDS: tuple[Field, ...] = (
    Field("occ", np.int32, "slot of the cell on the site, or -1", fill=-1),
    Field("zone", np.uint8, "zone code: 0 marrow, 1 lymphoid, 2 tissue"),
    Field("niche", np.uint8, "1 on a long-lived plasma cell niche"),
    Field(
        "claim",
        np.int64,
        "scratch: lowest priority key proposing the site or victim; in the production "
        "phase, what a free site makes",
        fill=CLAIM_FREE,
        persistent=False,
    ),
)

if TYPE_CHECKING:
    # What the type checker sees of the named tuples made from the tables below: their
    # fields, with the numpy types of the host arrays (on a GPU they are CuPy arrays). Keep
    # in step with CELL_FIELDS and SITE_FIELDS (tests/unit/test_static_checks.py checks).

    class Cells(NamedTuple):
        uid: NDArray[np.int64]
        kind: NDArray[np.int8]
        state: NDArray[np.int8]
        spec: NDArray[np.int8]
        x: NDArray[np.int32]
        y: NDArray[np.int32]
        age: NDArray[np.int32]
        counter: NDArray[np.int16]
        car_mask: NDArray[np.uint8]
        alive: NDArray[np.uint8]
        want: NDArray[np.int32]
        key: NDArray[np.int64]

    class Sites(NamedTuple):
        occ: NDArray[np.int32]
        zone: NDArray[np.uint8]
        niche: NDArray[np.uint8]
        claim: NDArray[np.int64]
        toward: NDArray[np.uint8]
        mol: NDArray[np.int32]
        saturated: NDArray[np.uint8]

else:
    #: The cell arrays as one argument of a kernel: ``cells.kind[i]`` is the kind of slot
    #: ``i``.
    Cells = namedtuple("Cells", [f.name for f in CELL_FIELDS])

    #: The site arrays as one argument of a kernel. ``toward`` is uint8[3, L*L] (a bit
    #: mask of the Moore steps toward the nearest site of each zone, 0 inside it); ``mol`` is
    #: int32[n_layers, L*L] (molecular layers in internal units, see
    #: :mod:`immunesim.model.layers`); ``saturated`` uint8[n_layers] flags a layer that
    #: reached :data:`~immunesim.model.params.MOL_MAX` somewhere.
    Sites = namedtuple("Sites", [f.name for f in SITE_FIELDS] + ["toward", "mol", "saturated"])


def bytes_per_slot() -> int:
    """Bytes of one cell slot: every cell field."""
    return sum(np.dtype(f.dtype).itemsize for f in CELL_FIELDS)


def bytes_per_site(n_layers: int, slots_per_site: float = 1.0) -> float:
    """Bytes of state per lattice site on the CPU: the site arrays, ``toward``, every
    molecular layer (int32, diffused in place, so one copy of it) and ``slots_per_site``
    cell slots (the default, one, is the most a state ever holds: an upper bound)."""
    site = sum(np.dtype(f.dtype).itemsize for f in SITE_FIELDS)
    return slots_per_site * bytes_per_slot() + site + 3 + 4 * n_layers


__all__ = [
    "CELL_FIELDS",
    "CLAIM_FREE",
    "Cells",
    "Field",
    "PERSISTENT_CELL_FIELDS",
    "SITE_FIELDS",
    "Sites",
    "bytes_per_site",
    "bytes_per_slot",
]

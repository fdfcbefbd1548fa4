"""Struct-of-arrays state of a simulation: cells, lattice sites and molecular layers.

Cells live in slots ``0 .. n-1`` of arrays whose capacity is at most the number of sites
(volume exclusion: never more cells than sites). The capacity follows the cells: a state
starts with a quarter more slots than cells (:func:`slots_for`), and a backend that grows
its arrays makes room before each phase that adds cells, for as many as that phase can add
(:meth:`~immunesim.engine.contract.Backend.reserve`). Slots are compacted once per step,
keeping order; a cell's identity is its persistent ``uid``, so the capacity changes no
result. The arrays are those declared in :mod:`immunesim.model.fields`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from immunesim.model.cells import N_KINDS
from immunesim.model.fields import CELL_FIELDS, SITE_FIELDS, Cells, Sites
from immunesim.model.params import MOL_DTYPE

if TYPE_CHECKING:
    from numpy.typing import NDArray

# Ledger columns.
BORN, DIED, CONV_IN, CONV_OUT = 0, 1, 2, 3


@dataclass
class State:
    """All arrays of one simulation.

    Attributes:
        L: sites per side of the lattice.
        cells: the cell arrays (:class:`~immunesim.model.fields.Cells`), each of length
            ``capacity`` (at most ``L*L``); slots ``>= n`` are unused.
        sites: the site arrays (:class:`~immunesim.model.fields.Sites`), length ``L*L``
            (site index ``y*L + x``), with ``toward`` uint8[3, L*L], ``mol``
            int32[n_layers, L*L] and ``saturated`` uint8[n_layers].
        ledger: int64[N_KINDS, 4], cumulative born, died, converted in, converted out per
            kind (columns ``BORN``, ``DIED``, ``CONV_IN``, ``CONV_OUT``).
        n: number of used slots. next_uid: next uid to hand out.
        dead: how many of the slots below ``n`` hold cells that died in an earlier step
            (they have left their sites; compaction, when they are more than
            ``1 / COMPACT_SHARE`` of the slots, gives their slots back).
        aux: the backend's own buffers (the CUDA backend's spare cell arrays, for instance).

    Every field of ``cells`` and ``sites`` can also be read as an attribute of the state
    (``state.kind`` is ``state.cells.kind``). On the CPU the arrays are numpy arrays; a GPU
    backend's ``prepare`` gives a copy whose arrays live on the device (CuPy).
    """

    L: int
    cells: Cells
    sites: Sites
    ledger: np.ndarray
    n: int = 0
    next_uid: int = 0
    dead: int = 0
    aux: dict[str, Any] = field(default_factory=dict)

    if TYPE_CHECKING:
        # The views of the fields of ``cells`` and ``sites`` made below from the field
        # tables, as the type checker sees them (kept in step with the tables by
        # tests/unit/test_static_checks.py).
        @property
        def uid(self) -> NDArray[np.int64]: ...
        @property
        def kind(self) -> NDArray[np.int8]: ...
        @property
        def state(self) -> NDArray[np.int8]: ...
        @property
        def spec(self) -> NDArray[np.int8]: ...
        @property
        def x(self) -> NDArray[np.int32]: ...
        @property
        def y(self) -> NDArray[np.int32]: ...
        @property
        def age(self) -> NDArray[np.int32]: ...
        @property
        def counter(self) -> NDArray[np.int16]: ...
        @property
        def car_mask(self) -> NDArray[np.uint8]: ...
        @property
        def alive(self) -> NDArray[np.uint8]: ...
        @property
        def want(self) -> NDArray[np.int32]: ...
        @property
        def key(self) -> NDArray[np.int64]: ...
        @property
        def occ(self) -> NDArray[np.int32]: ...
        @property
        def zone(self) -> NDArray[np.uint8]: ...
        @property
        def niche(self) -> NDArray[np.uint8]: ...
        @property
        def claim(self) -> NDArray[np.int64]: ...
        @property
        def toward(self) -> NDArray[np.uint8]: ...

    @property
    def capacity(self) -> int:
        return self.cells.uid.shape[0]

    @property
    def live(self) -> int:
        """Live cells at a step's end (the used slots less the dead ones)."""
        return self.n - self.dead

    @property
    def mol(self) -> np.ndarray:
        """int32[n_layers, L*L]: the molecular layers (``sites.mol``)."""
        return self.sites.mol

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the state by name (the backend's buffers under ``aux.<name>``)."""
        out = {
            **self.cells._asdict(),
            **self.sites._asdict(),
            "ledger": self.ledger,
        }
        for key, value in self.aux.items():
            if isinstance(value, tuple) and hasattr(value, "_asdict"):
                out.update({f"aux.{key}.{k}": v for k, v in value._asdict().items()})
            elif hasattr(value, "nbytes"):
                out[f"aux.{key}"] = value
        return out

    def nbytes(self) -> int:
        """Bytes held by the state's arrays, the backend's buffers included."""
        return sum(int(a.nbytes) for a in self.arrays().values())


def _field_view(group: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, group), name), doc=f"``{group}.{name}``")


for _f in CELL_FIELDS:
    setattr(State, _f.name, _field_view("cells", _f.name))
for _name in (*(f.name for f in SITE_FIELDS), "toward"):
    setattr(State, _name, _field_view("sites", _name))


#: Compaction runs when more than ``1 / COMPACT_SHARE`` of the used slots hold cells that
#: died in earlier steps (:meth:`immunesim.engine.phases.Phases.death`); until then the
#: maps skip them. Nothing depends on a cell's slot but the slot itself (draws and priority
#: keys come from uids and sites, new cells take uids in the order of their parents or
#: sites, which compaction keeps), so when it runs changes no result.
COMPACT_SHARE = 16

#: Slots a state keeps beyond its cells, as a fraction of them (:func:`slots_for`).
SLOT_HEADROOM = 0.25
#: Least number of slots beyond the cells (small lattices get a slot per site).
MIN_SPARE_SLOTS = 1024


def slots_for(cells: int, L: int) -> int:
    """Slots for ``cells`` cells (or used slots) on an ``L x L`` lattice: a quarter more, at
    least :data:`MIN_SPARE_SLOTS` more, and no more than the sites unless ``cells`` itself
    is more (live cells never outnumber the sites, but slots of cells that died and await
    compaction come on top of them: at most ``1 / COMPACT_SHARE`` more)."""
    spare = max(int(cells * SLOT_HEADROOM), MIN_SPARE_SLOTS)
    return max(cells, min(L * L, cells + spare))


def empty_cells(capacity: int, xp: Any = np) -> Cells:
    """Cell arrays of ``capacity`` slots, every one unused (each field its fill value), made
    by the array module ``xp`` (numpy, or CuPy on a GPU)."""
    return Cells(*(xp.full(capacity, f.fill, f.dtype) for f in CELL_FIELDS))


def with_capacity(cells: Cells, n: int, capacity: int, xp: Any = np) -> Cells:
    """``cells`` with ``capacity`` slots: the first ``n`` slots copied, the others unused
    (arrays of ``xp``)."""
    out = empty_cells(capacity, xp)
    for f in CELL_FIELDS:
        getattr(out, f.name)[:n] = getattr(cells, f.name)[:n]
    return out


def allocate(
    L: int,
    n_layers: int,
    zone: np.ndarray,
    niche: np.ndarray,
    toward: np.ndarray,
    capacity: int | None = None,
) -> State:
    """Allocate an empty state for an ``L x L`` lattice.

    Args:
        L: sites per side.
        n_layers: rows of the molecular layers.
        zone: uint8[L, L] zone map; niche: uint8[L, L] LLPC niche flags.
        toward: uint8[3, L*L] homing direction masks (:func:`immunesim.engine.geometry.Geometry`).
        capacity: cell slots (at most ``L*L``, the default).
    """
    cap = L * L
    if capacity is not None and not 0 <= capacity <= cap:
        raise ValueError(f"capacity {capacity} is not between 0 and the {cap} sites")
    cells = empty_cells(cap if capacity is None else capacity)
    given = {"zone": zone, "niche": niche}
    site_arrays: dict[str, np.ndarray] = {
        f.name: np.ascontiguousarray(given[f.name].reshape(-1), dtype=f.dtype)
        if f.name in given
        else np.full(cap, f.fill, f.dtype)
        for f in SITE_FIELDS
    }
    sites = Sites(
        **site_arrays,
        toward=np.ascontiguousarray(toward, dtype=np.uint8),
        mol=np.zeros((n_layers, cap), MOL_DTYPE),
        saturated=np.zeros(n_layers, np.uint8),
    )
    return State(
        L=L,
        cells=cells,
        sites=sites,
        ledger=np.zeros((N_KINDS, 4), np.int64),
    )


__all__ = [
    "BORN",
    "CONV_IN",
    "CONV_OUT",
    "DIED",
    "MIN_SPARE_SLOTS",
    "SLOT_HEADROOM",
    "State",
    "allocate",
    "empty_cells",
    "slots_for",
    "with_capacity",
]

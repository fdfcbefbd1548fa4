"""What an execution backend supplies: a few primitives, no biology.

The biology is written once, as the phase bodies of :mod:`immunesim.kernels` (every body
``body(i, t, cells, sites, p) -> (bin, value)``, see :mod:`immunesim.kernels.common`) and
the phases of :mod:`immunesim.engine.phases`, which compose these primitives. A backend maps
bodies over cells and sites, resolves conflicts, appends cells in index order and moves
arrays; its results must not depend on the order in which it runs the items (every tally is
an integer sum, every conflict goes to the lowest priority key, every append takes slots in
index order), so that every backend gives the same bits.

A backend is a module with these functions (``immunesim.backends.numba_cpu``,
``immunesim.backends.cuda``); :func:`immunesim.backends.get_backend` picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from immunesim.model.fields import Cells, Sites

#: A phase body: ``body(i, t, cells, sites, p) -> (bin, value)`` (a compiled function).
CellBody = Callable[..., tuple[int, int]]
#: A site body: ``body(layer, site, x, y, t, cells, sites, p) -> (bin, value)``.
SiteBody = Callable[..., tuple[int, int]]
#: A test of an append: ``wins(i, t, cells, sites, p) -> bool``.
Wins = Callable[..., bool]
#: The body of an append: ``place(i, j, t, cells, sites, p) -> (bin, value)``; ``j`` counts
#: the winners before ``i``.
Place = Callable[..., tuple[int, int]]


class Backend(Protocol):
    """The contract of an execution backend (a module satisfies it structurally)."""

    #: Array module of the backend's arrays (numpy, or CuPy on a GPU).
    xp: ModuleType

    def is_available(self) -> bool:
        """Whether the backend can run on this machine when asked for by name."""
        ...

    def auto_eligible(self) -> bool:
        """Whether ``auto`` may pick it."""
        ...

    def describe(self) -> str:
        """What it runs on, for ``immunesim info`` and manifests."""
        ...

    def unavailable_reason(self) -> str:
        """Why it cannot run here, and how to make it run."""
        ...

    def prepare(self, state: Any, params: Any) -> tuple[Any, Any]:
        """The state and parameters (:class:`~immunesim.model.params.Params`) as its
        kernels take them: on a GPU, copies on the device (the host ones are unchanged)."""
        ...

    def asarray(self, a: np.ndarray) -> Any:
        """A host array as one of the backend's arrays."""
        ...

    def to_host(self, a: Any) -> np.ndarray:
        """One of the backend's arrays as a numpy array."""
        ...

    def synchronize(self) -> None:
        """Wait for every launched kernel."""
        ...

    def mark(self) -> Any:
        """A point in the backend's work, to time phases without waiting for the device: the
        host's clock on a CPU; on a GPU an event that the device reaches once the kernels
        launched before it are done."""
        ...

    def seconds_between(self, start: Any, end: Any) -> float:
        """Seconds from one :meth:`mark` to a later one (on a GPU, waits for ``end``)."""
        ...

    def for_cells(
        self, body: CellBody, n: int, t: tuple, c: Cells, s: Sites, p: tuple, bins: int = 1
    ) -> Any:
        """Run ``body`` for every cell slot ``i < n`` in any order; returns the tally,
        int64[bins] (the sum of each bin's values)."""
        ...

    def for_sites(
        self, body: SiteBody, layers: int, t: tuple, c: Cells, s: Sites, p: tuple, bins: int = 1
    ) -> Any:
        """Run ``body`` for every site of ``layers`` layers (``t.L`` sites a side) in any
        order; returns the tally, int64[bins]."""
        ...

    def diffuse(
        self, t: tuple, c: Cells, s: Sites, p: tuple, layers: int, scratch: Any = None
    ) -> Any:
        """One diffusion sub-step of ``layers`` layers into ``t.dst`` (:meth:`spare_mol`),
        with the buffer ``scratch`` (:meth:`diffusion_scratch`; a new one when ``None``):
        what :func:`immunesim.kernels.molecules.diffuse` does on every site (a backend may
        do it another way with the same bits); returns what each layer gives to the
        circulation, int64[layers]."""
        ...

    def diffusion_scratch(self, state: Any) -> Any:
        """The buffer :meth:`diffuse` needs to write the layers in place (the portions the
        rows around each block of rows send), kept in ``state.aux`` so that it counts in
        the state's bytes."""
        ...

    def scatter_min(self, n: int, c: Cells, s: Sites) -> None:
        """``claim[want[i]] = min(claim[want[i]], key[i])`` over the proposals of cells
        ``i < n`` (``want[i] >= 0``): each site or victim goes to its lowest key."""
        ...

    def append(
        self,
        wins: Wins,
        place: Place,
        n: int,
        t: tuple,
        c: Cells,
        s: Sites,
        p: tuple,
        bins: int = 1,
        room: Callable[[int], Cells] | None = None,
    ) -> tuple[int, Any]:
        """For every ``i < n`` with ``wins(i, ...)``, call ``place(i, j, ...)`` with ``j`` its
        rank among the winners (a prefix sum in index order). ``place`` must not change
        what ``wins`` reads of any other item (the CPU evaluates both in one pass, a GPU
        every ``wins`` first). A backend that counts the winners before placing them (a
        GPU) calls ``room(count)`` then, and places into the cell arrays it returns (made
        room for by :meth:`reserve`); one that places as it counts has had its room made
        before. Returns the number of winners (a host int) and the tally, int64[bins]."""
        ...

    def reserve(self, state: Any, count: Any) -> None:
        """Make room in ``state`` for ``count`` more cells: replace ``state.cells`` (and any
        spare arrays) with larger ones holding the same cells when they would not fit
        (:func:`~immunesim.state.slots_for`). ``count`` is a host int, or the device scalar
        a map's tally gives; a GPU leaves a device scalar alone rather than wait for the
        device, and makes room in :meth:`append` (its ``room``) once it knows the count."""
        ...

    def spare_mol(self, state: Any) -> Any:
        """Layers to diffuse into: the state's own (``sites.mol``) on a backend that
        diffuses in place, spare ones otherwise (the state then swaps them in)."""
        ...

    def spare_cells(self, state: Any) -> Cells:
        """Cell arrays to compact into: the state's own on a backend that compacts in place
        in index order, spare arrays otherwise (the state then swaps them in)."""
        ...


__all__ = ["Backend", "CellBody", "Place", "SiteBody", "Wins"]

"""``ImmuneModel``: the simulation as a well-behaved ``mesa.Model``.

The cells live in arrays (:class:`immunesim.engine.Simulation`); the Mesa facade gives the
ecosystem's conventions: ``step()``, ``steps``, ``running``, and a ``DataCollector`` whose
model reporters read our metrics, so the model works with ``mesa.batch_run`` and Mesa's
visualisation.

One Mesa step advances one sampling interval of the scenario (``time.sample_every_hours``,
a simulated day by default), i.e. several engine steps of ``time.dt_hours``.

Seeds follow Mesa 3: ``seed=`` or ``rng=`` (not both); with neither, a fresh seed from the
operating system's entropy, kept in :attr:`ImmuneModel.seed`, so that ``mesa.batch_run``
replicates differ (``parameters={"seed": [1, 2, 3]}`` makes them reproducible).
``start="treatment"`` starts at the last sampled day before the first therapy acts, from
the run-in cache (:mod:`immunesim.runin`), instead of 240 days before it.

:attr:`ImmuneModel.grid` is a view of the lattice as a Mesa grid with property layers (one
per cell category, the tissue zones and the damage), built on first use and refreshed at
every step, so that Mesa's ``SpaceRenderer`` draws it with :func:`propertylayer_portrayal`
(:mod:`immunesim.viz.solaraviz` is a ready-made SolaraViz page).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import mesa
import numpy as np

from immunesim import runin
from immunesim.engine import Simulation
from immunesim.model import cells as cells_model
from immunesim.observe import with_score
from immunesim.scenario import Scenario, load_scenario

#: Metrics collected by default (time-series column names, see :mod:`immunesim.observe`).
DEFAULT_REPORTERS = (
    "day",
    "b_cells",
    "naive_b",
    "memory_b",
    "plasmablast",
    "llpc",
    "t_helper",
    "car_t",
    "anti_dsdna",
    "damage",
)


class ImmuneModel(mesa.Model):
    """A scenario run as a Mesa model.

    Args:
        scenario: scenario path, dict of raw values or :class:`Scenario`.
        seed: the simulation's seed (a whole number from 0 to 2**63-1); Mesa's own
            ``self.random`` and ``self.rng`` are seeded with it too, but the simulation draws
            only from its counter-based generator.
        overrides: ``key.path=value`` strings.
        backend: ``"auto"`` or a backend name.
        reporters: metric names to collect (default :data:`DEFAULT_REPORTERS`).
        rng: instead of ``seed``, as for any Mesa model: a whole number is the seed, anything
            ``numpy.random.default_rng`` takes draws one.
        start: ``"run_in"`` (the scenario's first day) or ``"treatment"`` (the last sampled
            day before the first therapy acts, from the run-in cache; computed and cached
            the first time).
        cache: the run-in cache for ``start="treatment"`` (see :func:`immunesim.runin.start`).
        progress: with ``start="treatment"``, called with the fraction of the run-in done
            while it is computed (not at all when it comes from the cache).
        **kwargs: Mesa-style keyword overrides of scenario values, with ``__`` for dots
            (``car_t__dose_per_kg`` is not valid: use ``overrides`` for list entries;
            ``lattice__size=100`` works), so that ``mesa.batch_run`` can sweep them.

    Attributes:
        seed: the simulation's seed.
    """

    def __init__(
        self,
        scenario: str | os.PathLike[str] | dict[str, Any] | Scenario,
        seed: int | None = None,
        overrides: list[str] | None = None,
        backend: str = "auto",
        reporters: tuple[str, ...] | list[str] = DEFAULT_REPORTERS,
        *,
        rng: Any = None,
        start: Literal["run_in", "treatment"] = "run_in",
        cache: bool | runin.RunInCache | None = None,
        progress: Callable[[float], None] | None = None,
        **kwargs: Any,
    ):
        # named ``kwargs``: Mesa's SolaraViz checks its model parameters against the
        # signature and accepts unknown ones only under that name
        extra = [f"{k.replace('__', '.')}={_toml_value(v)}" for k, v in kwargs.items()]
        s = load_scenario(scenario, list(overrides or []) + extra)
        if seed is not None and rng is not None:
            raise ValueError("ImmuneModel takes seed or rng, not both (as mesa.Model)")
        if start not in ("run_in", "treatment"):
            raise ValueError(f"start: 'run_in' or 'treatment' (got {start!r})")
        if seed is None:
            if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
                seed = int(rng)
            else:
                seed = int(np.random.default_rng(rng).integers(0, 2**63 - 1))
        if (
            isinstance(seed, bool)
            or not isinstance(seed, (int, np.integer))
            or not (0 <= seed < 2**63)
        ):
            raise ValueError(f"seed: a whole number from 0 to 2**63-1 (got {seed!r})")
        self.seed = int(seed)
        super().__init__(seed=self.seed)
        if start == "run_in":
            self.simulation = Simulation(s, seed=self.seed, backend=backend)
        else:
            every = max(1, int(round(s.time.sample_every_hours / s.time.dt_hours)))
            at = runin.fork_step(s) // every * every  # a sampled step, as every Mesa step
            sim, _ = runin.start(s, self.seed, backend, cache, at_step=at)
            if sim.step_index < at:
                callback = None if progress is None else (lambda x: progress(x.step_index / at))
                sim.run(until_step=at, callback=callback)
            self.simulation = sim
        self.scenario = s
        self._grid: Any = None
        #: (the simulation's rows, the DataFrame of them) for :meth:`timeseries`
        self._frame: tuple[list, Any] = ([], None)
        self.datacollector = mesa.DataCollector(
            model_reporters={name: _reporter(name) for name in reporters}
        )
        self.datacollector.collect(self)

    @property
    def metrics(self) -> dict[str, Any]:
        """The latest row of metrics."""
        return self.simulation.rows[-1]

    @property
    def day(self) -> float:
        return self.simulation.day

    def step(self) -> None:
        """Advance one sampling interval and collect the metrics."""
        sim = self.simulation
        n = len(sim.rows)
        while len(sim.rows) == n and not sim.finished:
            sim.step()
        self.running = not sim.finished
        if self._grid is not None:
            _refresh_grid(self._grid, self.simulation)
        self.datacollector.collect(self)

    @property
    def grid(self) -> Any:
        """The lattice as a ``mesa.discrete_space.OrthogonalMooreGrid`` of property layers,
        for Mesa's space drawing (``SpaceRenderer(model).render(propertylayer_portrayal=
        immunesim.mesa_model.propertylayer_portrayal)``): ``zone`` (0 marrow, 1 lymphoid,
        2 tissue), ``damage`` (the red tint of the app and the animations, 1 from
        :data:`immunesim.viz.animate.DAMAGE_SCALE` up) and one layer per cell category
        (:data:`GRID_LAYERS`: the share of sites holding such a cell). A lattice wider than
        :data:`GRID_VIEW_MAX` sites is shown in square blocks of sites, each grid cell
        being a block. The cells themselves stay in the engine's arrays: the grid holds no
        agents. Built on first use (about a second at 200 x 200), then refreshed by every
        :meth:`step`."""
        if self._grid is None:
            self._grid = _build_grid(self.simulation, self.random)
        return self._grid

    def timeseries(self):
        """All metrics so far as a DataFrame (with the disease score). The rows already
        turned into columns by an earlier call are kept: a call after each step converts
        only the new row (the app calls it every simulated day)."""
        import pandas as pd

        rows = self.simulation.rows
        kept, frame = self._frame
        if kept is not rows or len(frame) > len(rows):  # a restored or new run
            frame = pd.DataFrame(rows)
        elif len(frame) < len(rows):
            new = pd.DataFrame(rows[len(frame) :])
            if list(new.columns) == list(frame.columns) and (new.dtypes == frame.dtypes).all():
                frame = pd.concat([frame, new], ignore_index=True)
            else:  # a column appears or changes type: as pandas reads the rows at once
                frame = pd.DataFrame(rows)
        self._frame = (rows, frame)
        return with_score(frame, self.scenario)


#: The widest grid of :attr:`ImmuneModel.grid` (cells a side); a wider lattice is shown in
#: blocks of sites.
GRID_VIEW_MAX = 200
#: Property layer name of each cell category of :data:`immunesim.model.cells.CATEGORIES`
#: (category 0, empty, has none).
GRID_LAYERS: dict[int, str] = {
    code: label.lower().replace(" ", "_").replace("-", "_")
    for code, label in enumerate(cells_model.CATEGORIES)
    if code > 0
}


def _blocks(a: np.ndarray, block: int) -> np.ndarray:
    """Mean of ``a`` [L, L] over square blocks of ``block`` sites a side (the last blocks of
    a row or column, when narrower, over the sites they have), in Mesa's [x, y] order."""
    L = a.shape[0]
    if block == 1:
        return a.T.astype(float)
    w = -(-L // block)
    pad = w * block - L
    total = np.pad(a.astype(float), ((0, pad), (0, pad))).reshape(w, block, w, block).sum((1, 3))
    count = np.pad(np.ones_like(a, float), ((0, pad), (0, pad))).reshape(w, block, w, block)
    return (total / count.sum((1, 3))).T


def _grid_side(L: int) -> tuple[int, int]:
    block = -(-L // GRID_VIEW_MAX)
    return -(-L // block), block


def _build_grid(sim: Simulation, random: Any) -> Any:
    from mesa.discrete_space import OrthogonalMooreGrid

    L = sim.scenario.lattice.size
    side, _ = _grid_side(L)
    grid = OrthogonalMooreGrid((side, side), torus=False, capacity=None, random=random)
    for name in ("zone", "damage", *GRID_LAYERS.values()):
        grid.create_property_layer(name, 0.0, dtype=float)
    _, block = _grid_side(L)
    zone = sim.backend.to_host(sim.state.zone).reshape(L, L)  # fixed for the run
    grid._mesa_property_layers["zone"].data[...] = np.rint(_blocks(zone, block))
    _refresh_grid(grid, sim)
    return grid


def _refresh_grid(grid: Any, sim: Simulation) -> None:
    """Fill the grid's layers of cells and damage from the simulation's state."""
    from immunesim.viz.animate import DAMAGE_SCALE
    from immunesim.viz.snapshots import lattice_picture

    L = sim.scenario.lattice.size
    _, block = _grid_side(L)
    cells, damage = lattice_picture(sim)
    layers = grid._mesa_property_layers
    layers["damage"].data[...] = _blocks(np.clip(damage / DAMAGE_SCALE, 0.0, 1.0), block)
    for code, name in GRID_LAYERS.items():
        layers[name].data[...] = _blocks(cells == code, block)


def propertylayer_portrayal(layer: Any) -> Any:
    """How Mesa's space drawing (``SpaceRenderer``) draws a layer of
    :attr:`ImmuneModel.grid`, as the app and the animations do: the zones as a dark
    backdrop, damaged tissue tinted red over it, each cell category in its own colour,
    opaque where every site of a grid cell holds one."""
    from matplotlib.colors import ListedColormap
    from mesa.visualization.components import PropertyLayerStyle

    from immunesim.viz.animate import DAMAGE_COLOUR, ZONE_COLOURS

    if layer.name == "zone":
        backdrop = ListedColormap(ZONE_COLOURS / 255.0)
        return PropertyLayerStyle(colormap=backdrop, vmin=0, vmax=2, alpha=1.0, colorbar=False)
    if layer.name == "damage":
        red = "#" + bytes(DAMAGE_COLOUR).hex()
        return PropertyLayerStyle(color=red, vmin=0, vmax=1, alpha=1.0, colorbar=False)
    for code, name in GRID_LAYERS.items():
        if layer.name == name:
            colour = "#" + bytes(cells_model.PALETTE[code]).hex()
            return PropertyLayerStyle(color=colour, vmin=0, vmax=1, alpha=1.0, colorbar=False)
    return None


def _reporter(name: str):
    def read(model: ImmuneModel) -> Any:
        return model.metrics[name]

    read.__name__ = name
    return read


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)

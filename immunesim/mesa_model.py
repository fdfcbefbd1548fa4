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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import mesa
import numpy as np

from immunesim import runin
from immunesim.engine import Simulation
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
        **params: Mesa-style keyword overrides of scenario values, with ``__`` for dots
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
        **params: Any,
    ):
        extra = [f"{k.replace('__', '.')}={_toml_value(v)}" for k, v in params.items()]
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
        self.datacollector.collect(self)

    def timeseries(self):
        """All metrics so far as a DataFrame (with the disease score)."""
        import pandas as pd

        return with_score(pd.DataFrame(self.simulation.rows), self.scenario)


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

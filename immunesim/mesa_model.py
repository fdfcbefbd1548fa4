"""``ImmuneModel``: the simulation as a well-behaved ``mesa.Model``.

The cells live in arrays (:class:`immunesim.engine.Simulation`); the Mesa facade gives the
ecosystem's conventions: ``step()``, ``steps``, ``running``, and a ``DataCollector`` whose
model reporters read our metrics, so the model works with ``mesa.batch_run`` and Mesa's
visualisation.

One Mesa step advances one sampling interval of the scenario (``time.sample_every_hours``,
a simulated day by default), i.e. several engine steps of ``time.dt_hours``.
"""

from __future__ import annotations

import os
from typing import Any

import mesa

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
        seed: random seed (default: the scenario's ``run.seed``). Mesa's own ``self.random``
            and ``self.rng`` are seeded with it too, but the simulation draws only from its
            counter-based generator.
        overrides: ``key.path=value`` strings.
        backend: ``"auto"`` or a backend name.
        reporters: metric names to collect (default :data:`DEFAULT_REPORTERS`).
        **params: Mesa-style keyword overrides of scenario values, with ``__`` for dots
            (``car_t__dose_per_kg`` is not valid: use ``overrides`` for list entries;
            ``lattice__size=100`` works), so that ``mesa.batch_run`` can sweep them.
    """

    def __init__(
        self,
        scenario: str | os.PathLike[str] | dict[str, Any] | Scenario,
        seed: int | None = None,
        overrides: list[str] | None = None,
        backend: str = "auto",
        reporters: tuple[str, ...] | list[str] = DEFAULT_REPORTERS,
        **params: Any,
    ):
        extra = [f"{k.replace('__', '.')}={_toml_value(v)}" for k, v in params.items()]
        s = load_scenario(scenario, list(overrides or []) + extra)
        sim_seed = int(s.run.seed if seed is None else seed)
        super().__init__(seed=sim_seed)
        self.simulation = Simulation(s, seed=sim_seed, backend=backend)
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

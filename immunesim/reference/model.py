"""``ReferenceModel``: the scenario's rules executed the Mesa way, one agent at a time.

The model holds an :class:`~mesa.discrete_space.OrthogonalMooreGrid` (no wrap-around, one
agent per cell: the fast engine's lattice), the zone map and LLPC niches as property layers
of the grid, and the molecular layers as the fast engine's integer array. One ``step()`` is
one step of ``dt`` hours, in the engine's phase order:

1. therapy events (the engine's own schedule code);
2. production of naive B cells at free marrow sites and T helpers at free lymphoid sites;
3. movement, 4. CAR-T killing, B-cell activation and differentiation, division: each a
   ``shuffle_do`` over the agents concerned, in a fresh random order;
5. secretion, then diffusion, decay, circulation and reactions of the molecular layers;
6. death by lifespan;
7. a row of metrics (:func:`immunesim.observe.metrics_row`) on sampling steps.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import mesa
import numpy as np
import pandas as pd
from mesa.discrete_space import OrthogonalMooreGrid, PropertyLayer

from immunesim.engine.course import Clocked, Course
from immunesim.engine.geometry import Geometry
from immunesim.engine.parameters import build_params, t_helper_threshold
from immunesim.engine.simulation import Simulation
from immunesim.kernels.lifecycle import PRODUCE_NAIVE_B, kind_zone_thresholds
from immunesim.model.cells import N_CLASSES, Kind
from immunesim.model.params import IP_THR_PRODUCE, ZONE_CODE, Params
from immunesim.observe import endpoints, metrics_row, with_score
from immunesim.reference import rules
from immunesim.reference.agents import AGENT_CLASS, BCell, CarTCell, ImmuneCell, THelper
from immunesim.runner import RunResult
from immunesim.scenario import Scenario, load_scenario


@dataclass
class Lattice:
    """The lattice's per-site arrays (site index ``y * L + x``) that the rules read.

    Attributes:
        L: sites per side.
        zone: uint8[L*L], 0 marrow, 1 lymphoid, 2 tissue.
        toward: uint8[3, L*L], bit masks of the Moore steps toward the nearest site of each
            zone.
        mol: int64[n_layers, L*L], molecular layers in internal units.
    """

    L: int
    zone: np.ndarray
    toward: np.ndarray
    mol: np.ndarray


class ReferenceModel(Clocked, mesa.Model):
    """A scenario run as a classic Mesa model: cells are agents on a Moore grid.

    Args:
        scenario: scenario path, dict of raw values or :class:`Scenario`.
        seed: random seed (default: the scenario's ``run.seed``); it seeds Mesa's
            ``random``, which every decision draws from, and the initial lattice.
        overrides: ``key.path=value`` strings.
        start: a fast-engine simulation (on the CPU) to continue from, whose scenario and
            seed are then used (see :meth:`from_simulation`).

    The initial lattice is the fast engine's (:class:`~immunesim.engine.Simulation` with
    the same scenario and seed): the two differ only in how they execute the steps. The
    therapies come from the engine's own schedule (:class:`~immunesim.engine.course.Course`,
    to which the model is the patient) and the metrics from its own metrics row.

    Attributes:
        grid: the lattice; ``cell.zone`` and ``cell.niche`` are property layers.
        geometry: the lattice's zones and niches (:class:`~immunesim.engine.geometry.Geometry`).
        state: the per-site arrays (:class:`Lattice`), molecular layers included.
        params: the per-step parameters
            (:func:`~immunesim.engine.parameters.build_params`).
        step_index: engine steps done (step 0 is the start of the run-in); one ``step()``
            is one step of ``time.dt_hours``.
        rows: the sampled metrics, one dict per sampling step (the fast engine's columns).
        events: therapy events as they happened.
    """

    def __init__(
        self,
        scenario: str | os.PathLike[str] | dict[str, Any] | Scenario | None,
        seed: int | None = None,
        *,
        overrides: list[str] | None = None,
        start: Simulation | None = None,
    ):
        if start is None:
            if scenario is None:
                raise ValueError("ReferenceModel needs a scenario or a simulation to start from")
            s = load_scenario(scenario, overrides)
            seed = int(s.run.seed if seed is None else seed)
            start = Simulation(s, seed=seed, backend="numba")
        s, seed = start.scenario, start.seed
        super().__init__(seed=seed)
        self.scenario = s
        self.seed = seed
        self.params: Params = build_params(s)
        self.geometry: Geometry = start.geometry
        self.L = L = s.lattice.size
        st = start.state
        # int64 layers: the numpy rules below compute in the layers' own dtype (the engine
        # stores int32 and computes in int64, with the same values while nothing reaches
        # MOL_MAX; the reactions cap as the engine does)
        self.state = Lattice(
            L, np.array(st.zone), np.array(st.toward), np.array(st.mol, dtype=np.int64)
        )
        self._saturated = np.zeros(st.mol.shape[0], np.uint8)
        self.grid = OrthogonalMooreGrid((L, L), torus=False, capacity=1, random=self.random)
        # property layers are indexed by the cell coordinate (x, y); the arrays by y * L + x
        for name, values in (("zone", st.zone), ("niche", st.niche)):
            layer = PropertyLayer.from_data(name, np.asarray(values).reshape(L, L).T.copy())
            self.grid.add_property_layer(layer)
        self._producing = [
            c for c in self.grid.all_cells if c.zone in (ZONE_CODE["marrow"], ZONE_CODE["lymphoid"])
        ]
        self._n_lymphoid_sites = self.geometry.count("lymphoid")
        self._n_neighbours = self.geometry.von_neumann_neighbours()
        for i in np.flatnonzero(np.asarray(st.alive[: st.n]) != 0):
            self._place(
                int(st.kind[i]),
                self.grid[int(st.x[i]), int(st.y[i])],
                spec=st.spec[i],
                state=st.state[i],
                counter=st.counter[i],
                age=st.age[i],
                car_mask=st.car_mask[i],
            )

        self.step_index = start.step_index
        self.rows: list[dict] = []
        self.kills_since_sample = 0
        self.infused_car_t = start.infused_car_t
        self._sample_every = max(1, int(round(s.time.sample_every_hours / s.time.dt_hours)))
        self.activation_tables = self.params.activation_luts(1.0)
        self.course = Course(s, seed, self._immunosuppress)
        self.wall_seconds = 0.0
        self._record()
        self.running = not self.finished

    @classmethod
    def from_simulation(cls, sim: Simulation) -> ReferenceModel:
        """The reference continuing a fast-engine simulation from its current state (same
        scenario, seed, step, cells and molecular layers; the schedule's events to come)."""
        return cls(None, start=sim)

    def _immunosuppress(self, factor: float) -> None:
        """The activation thresholds of naive and memory B cells by antigen
        (``activation_tables``) scaled by the immunosuppression in force."""
        self.activation_tables = self.params.activation_luts(factor)

    def _record(self) -> None:
        self.rows.append(metrics_row(self))
        self.kills_since_sample = 0

    def _place(self, kind: int, cell, **attrs) -> ImmuneCell:
        """A new agent of ``kind`` on ``cell`` (``car_mask`` is for CAR-T cells only)."""
        car_mask = attrs.pop("car_mask", 0)
        cls = AGENT_CLASS[kind]
        if cls is CarTCell:
            return CarTCell(self, cell, car_mask=car_mask, **attrs)
        return cls(self, cell, kind, **attrs)

    def _agents_of(self, cls: type[ImmuneCell]) -> mesa.agent.AgentSet:
        """The live agents of a class (an empty set before the first one exists)."""
        return self.agents_by_type.get(cls) or mesa.agent.AgentSet([], random=self.random)

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        """Advance one step of ``dt`` hours."""
        if self.finished:
            raise RuntimeError("the model has already reached its last step")
        t0 = time.perf_counter()
        step = self.step_index + 1
        self.course.apply(self, step)
        self.produce(step)
        n = self.params.substeps
        for _ in range(n.move):  # fast rates: several draws a step (the engine's sub-steps)
            self.agents.shuffle_do("move")
        for _ in range(n.kill):
            self._agents_of(CarTCell).shuffle_do("kill")
        self._agents_of(BCell).shuffle_do("activate")
        if self.params.displaces:
            self._agents_of(BCell).shuffle_do("displace")
        self.agents.shuffle_do("divide")
        self.molecules()
        self.agents.do("grow_old")  # independent draws: the order does not matter
        self.step_index = step
        if step % self._sample_every == 0 or step == self.total_steps:
            self._record()
        self.running = not self.finished
        self.wall_seconds += time.perf_counter() - t0

    def produce(self, step: int) -> None:
        """New naive B cells at free marrow sites and T helpers at free lymphoid sites."""
        p = self.params
        thr_t_helper = t_helper_threshold(
            self.scenario,
            self._n_lymphoid_sites,
            len(self._agents_of(THelper)),
            self.scenario.day_of_step(step),
        )
        other = p.layers.n_spec - 1
        for cell in self._producing:
            if not cell.is_empty:
                continue
            code, thr = rules.production(cell.zone, p.k.ip[IP_THR_PRODUCE], thr_t_helper)
            if self.random.getrandbits(53) < thr:
                if code == PRODUCE_NAIVE_B:
                    spec = rules.specificity(self.random.getrandbits(53), p.k.spec_cum)
                    BCell(self, cell, Kind.NAIVE_B, spec)
                else:
                    THelper(self, cell, Kind.T_HELPER, other)

    def molecules(self) -> None:
        """Secretion, then diffusion and decay, exchange with the circulation and the
        disease reactions of every molecular layer (the kernels' rules, site by site)."""
        self.agents.do("secrete")
        k, mol, L = self.params.k, self.state.mol, self.L
        n_sites = L * L
        n = self.params.substeps.diffuse
        for layer in range(mol.shape[0]):
            q = mol[layer].reshape(L, L)  # [y, x]
            d = self.params.diffusion if k.diffuses[layer] else 0
            for sub in range(n):  # decay on the last diffusion sub-step only
                west, east, north, south = (np.zeros_like(q) for _ in range(4))
                west[:, 1:], east[:, :-1] = q[:, :-1], q[:, 1:]
                north[1:, :], south[:-1, :] = q[:-1, :], q[1:, :]
                decay = k.decay[layer] if sub == n - 1 else 0
                q = rules.diffuse_decay(q, west, east, north, south, self._n_neighbours, d, decay)
            c = k.circulate[layer]
            if c > 0:  # the pool is shared equally, the remainder to the lowest sites
                share, rest = divmod(int(rules.portion(q, c).sum()), n_sites)
                extra = (np.arange(n_sites) < rest).astype(np.int64).reshape(L, L)
                q = rules.circulate_site(q, c, share, extra)
            mol[layer] = q.reshape(-1)
        rules.react_sites(mol, self._saturated, self.state.zone, k.ip, k.fx, k.fp)

    # ------------------------------------------------------------------ the patient
    def deplete(self, step: int, target_mask: int, thr_zone: np.ndarray, car_mask: int = 0) -> int:
        """Kill each cell bearing ``target_mask`` (with ``car_mask``, each CAR-T cell whose
        receptor recognises one of its markers) with its kind's threshold in its zone; the number
        killed."""
        markers = self.params.k.markers
        hit = self.agents.select(
            lambda a: (
                rules.bears(markers, a.kind, target_mask)
                and (not car_mask or getattr(a, "car_mask", 0) & car_mask)
            )
        )
        killed = 0
        thr = kind_zone_thresholds(thr_zone)
        for agent in hit:
            if self.random.getrandbits(53) < thr[agent.kind, agent.cell.zone]:
                agent.remove()
                killed += 1
        return killed

    def count_kind(self, kind: int) -> int:
        """Cells of a kind alive now."""
        return sum(1 for a in self._agents_of(AGENT_CLASS[kind]) if a.kind == kind)

    def count_car_t(self) -> dict[int, int]:
        """CAR-T cells alive now (memory cells included) by receptor."""
        counts: dict[int, int] = {}
        for a in self._agents_of(AGENT_CLASS[Kind.CAR_T]):
            counts[a.car_mask] = counts.get(a.car_mask, 0) + 1
        return counts

    def infuse(self, step: int, count: int, target_mask: int) -> int:
        """CAR-T cells at random free sites."""
        free = list(self.grid.empties)
        chosen = self.random.sample(free, min(count, len(free)))
        for cell in chosen:
            CarTCell(self, cell, spec=self.params.layers.n_spec - 1, car_mask=target_mask)
        self.infused_car_t += len(chosen)
        return len(chosen)

    def add_antigen(self, layer: str, zone: str, amount: int) -> None:
        self.state.mol[self.params.layers.index(layer), self.geometry.mask(zone)] += amount

    # ------------------------------------------------------------------ observation
    def count_cells(self) -> np.ndarray:
        """Cell counts, int64[N_CLASSES, n_spec, 3] by class (kinds, then memory CAR-T),
        specificity and zone: what the fast engine's ``count_cells`` returns."""
        out = np.zeros((N_CLASSES, self.params.layers.n_spec, 3), np.int64)
        for a in self.agents:
            out[rules.cell_class(a.kind, a.state), a.spec, a.cell.zone] += 1
        return out

    def layer_totals(self) -> np.ndarray:
        """int64[n_layers]: each layer summed over the lattice."""
        return self.state.mol.sum(axis=1)

    def layer_total(self, row: int, zone: str) -> int:
        """One layer summed over the sites of a zone."""
        return int(self.state.mol[row, self.geometry.mask(zone)].sum())

    def run(self) -> RunResult:
        """Run to the end of the scenario; the time series, endpoints and events in the
        form :func:`immunesim.run` gives them."""
        while not self.finished:
            self.step()
        return self.result()

    def result(self) -> RunResult:
        """The results so far (:class:`~immunesim.runner.RunResult`)."""
        s = self.scenario
        df = with_score(pd.DataFrame(self.rows), s)
        ends = endpoints(df, s, self.infused_car_t) if len(df) else {}
        manifest = {
            "scenario_name": s.name,
            "seed": self.seed,
            "backend": "mesa-reference",
            "steps_done": self.step_index,
            "steps_total": self.total_steps,
            "last_day": self.day,
            "lattice_sites": self.L**2,
            "scenario": s.model_dump(mode="json"),
            "timing": {"wall_seconds": self.wall_seconds},
        }
        return RunResult(df, ends, manifest, [asdict(e) for e in self.events])


def run_reference(
    scenario: str | os.PathLike[str] | dict[str, Any] | Scenario,
    seed: int | None = None,
    overrides: list[str] | None = None,
) -> RunResult:
    """Run a scenario on the reference model (a top-level function, for process pools)."""
    return ReferenceModel(scenario, seed, overrides=overrides).run()


__all__ = ["Lattice", "ReferenceModel", "run_reference"]

"""The simulation loop: one patient's state stepped through the phases, with its schedule.

One step (``dt`` hours) runs these phases in order (DESIGN section 2):

1. scheduled events (lymphodepletion, CAR-T infusion, anti-CD20, vaccination,
   standard-of-care immunosuppression);
2. production of naive B cells and T-helper homeostasis;
3. movement;
4. contact: CAR-T killing, activation and differentiation, competition for marrow
   niches, division;
5. molecules: secretion, diffusion and decay, circulation, reactions;
6. death and removal of dead cells;
7. observation (on sampling steps).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from immunesim.backends import get_backend
from immunesim.engine.course import Clocked, Course
from immunesim.engine.geometry import Geometry
from immunesim.engine.initial import initial_state
from immunesim.engine.parameters import build_params, t_helper_threshold
from immunesim.engine.phases import Phases
from immunesim.model.cells import Kind
from immunesim.model.params import MOL_MAX, MOL_SCALE, Params
from immunesim.model.therapy import Event
from immunesim.observe import metrics_row
from immunesim.rng import S_INFUSE, site_keys
from immunesim.scenario import Scenario
from immunesim.state import BORN, CONV_IN, CONV_OUT, DIED, State, allocate, slots_for

PHASES = ("events", "production", "movement", "contact", "molecules", "death", "observe")


class SaturationWarning(RuntimeWarning):
    """A molecular layer reached the most a site can hold (:data:`MOL_MAX`); the run goes
    on with the values capped there."""


class Simulation(Clocked):
    """One simulated patient: state, schedule and the time series it records.

    Args:
        scenario: a validated :class:`~immunesim.scenario.Scenario`.
        seed: random seed (defaults to ``scenario.run.seed``).
        backend: ``"auto"`` or a backend name (``"numba"``, ``"cuda"``).

    Attributes:
        geometry: the lattice (:class:`~immunesim.engine.geometry.Geometry`).
        params: the per-step parameters as the backend's kernels take them, with the
            activation tables of the immunosuppression in force.
        state: the state, on the backend's device.
        phases: the step's phases on the backend (:class:`~immunesim.engine.phases.Phases`).
        course: clock and therapy schedule (:class:`~immunesim.engine.course.Course`).
        step_index: steps done so far (step 0 is the start of the run-in).
        rows: the sampled metrics, one dict per sampling step.
        phase_seconds: wall seconds spent in each phase. On a GPU, the time between the
            events recorded at the phases' ends (the host does not wait for the device at
            each phase), collected at each sample.
        jit_seconds: seconds of kernel compilation before the run (set by the runner).
        run_in: how the run started, when it came through the run-in cache
            (:meth:`immunesim.runin.Fork.as_dict`; set by :func:`immunesim.runin.start`).
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        backend: str = "auto",
        *,
        _restore: tuple[dict, dict] | None = None,
    ):
        self.scenario = scenario
        self.seed = int(scenario.run.seed if seed is None else seed)
        self.backend_name, self.backend = get_backend(backend)
        self.phases = Phases(self.backend)
        self.geometry = Geometry.of(scenario, self.seed)
        host_params = build_params(scenario)
        self._host_params = host_params
        self.state: State
        self.params: Params
        if _restore is None:
            host_state = initial_state(scenario, host_params, self.geometry, self.seed)
        else:
            host_state = _restored_state(self.geometry, host_params, *_restore)
        self.state, self.params = self.backend.prepare(host_state, host_params)
        self.course = Course(scenario, self.seed, self._immunosuppress)
        self.step_index = 0
        self.rows: list[dict] = []
        self.kills_since_sample = 0
        self.infused_car_t = 0
        self._phase_seconds = dict.fromkeys(PHASES, 0.0)
        #: Phases timed but not yet added up: ``(phase, start mark, end mark)``.
        self._pending: list[tuple[str, Any, Any]] = []
        #: Seconds spent compiling kernels before the run, when the runner measured it.
        self.jit_seconds: float | None = None
        self.run_in: dict[str, Any] | None = None
        self._observers: list[tuple[int, int, Callable[[Simulation], object]]] = []
        self._sample_every = max(
            1, int(round(scenario.time.sample_every_hours / scenario.time.dt_hours))
        )
        self._n_lymphoid_sites = self.geometry.count("lymphoid")
        self._zone_masks: dict[str, object] = {}
        #: Layers already reported as saturated (:meth:`_check_saturation`).
        self._saturated: set[str] = set()
        if _restore is None:
            self._record()
        else:
            self._resume_from(_restore[0])

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint of this simulation (see :mod:`immunesim.checkpoint`): what
        :meth:`load` needs to continue it with the same bits."""
        from immunesim import checkpoint

        return checkpoint.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str = "auto") -> Simulation:
        """The simulation a checkpoint holds, ready to go on from its step, on ``backend``
        (any backend: the state is the same bits on all of them).

        Raises:
            immunesim.checkpoint.CheckpointError: for a missing, unreadable or incompatible
                checkpoint.
        """
        from immunesim import checkpoint
        from immunesim.scenario import ScenarioError, load_scenario

        meta, arrays = checkpoint.read(path)
        try:
            scenario = load_scenario(meta["scenario"])
        except ScenarioError as exc:
            raise checkpoint.CheckpointError(f"{path}: its scenario: {exc}") from None
        return cls(scenario, seed=meta["seed"], backend=backend, _restore=(meta, arrays))

    def _resume_from(self, meta: dict) -> None:
        self.step_index = int(meta["step_index"])
        self.rows = list(meta["rows"])
        self.course.events = [Event(**e) for e in meta["events"]]
        self._saturated = {
            name
            for e in self.course.events
            if e.kind == "saturation"
            for name in e.detail["layers"]
        }
        if meta["factor"] is not None:
            self.course.factor = float(meta["factor"])
            self._immunosuppress(self.course.factor)
        self.kills_since_sample = int(meta["kills_since_sample"])
        self.infused_car_t = int(meta["infused_car_t"])

    # ------------------------------------------------------------------ the patient
    def deplete(self, step: int, target_mask: int, thr_zone: np.ndarray, car_mask: int = 0) -> int:
        return self.phases.deplete(
            self.state, self.params, self.seed, step, target_mask, thr_zone, car_mask
        )

    def count_kind(self, kind: int) -> int:
        """Cells of a kind alive at the start of this step (from the ledger)."""
        row = self.state.ledger[kind]
        return int(row[BORN] - row[DIED] + row[CONV_IN] - row[CONV_OUT])

    def count_car_t(self) -> dict[int, int]:
        """CAR-T cells alive now (memory cells included) by receptor: the marker mask their
        CAR recognises (a byte per CAR-T cell comes to the host)."""
        n, c = self.state.n, self.state.cells
        car = (c.kind[:n] == Kind.CAR_T) & (c.alive[:n] != 0)
        masks = self.backend.to_host(c.car_mask[:n][car])
        counts = np.bincount(masks, minlength=1)
        return {int(r): int(counts[r]) for r in np.flatnonzero(counts)}

    def infuse(self, step: int, count: int, target_mask: int) -> int:
        """CAR-T cells at the free sites with the lowest infusion keys, in site order."""
        n_sites = self.geometry.n_sites
        keys = np.empty(n_sites, np.uint64)
        site_keys(self.seed, step, S_INFUSE, n_sites, keys)
        free = np.flatnonzero(self.backend.to_host(self.state.occ) < 0)
        chosen = np.sort(free[np.argsort(keys[free], kind="stable")[:count]])
        self.phases.infuse(self.state, self.params, chosen.astype(np.int64), target_mask)
        self.infused_car_t += chosen.size
        return int(chosen.size)

    def add_antigen(self, layer: str, zone: str, amount: int) -> None:
        row = self.params.layers.index(layer)
        antigen = self.state.mol[row]  # a view
        mask = self._zone(zone)
        q = antigen[mask].astype(np.int64) + amount  # plain boolean indexing on NumPy and CuPy
        if bool((q > MOL_MAX).any()):  # a host read, at a pulse, not every step
            self.state.sites.saturated[row] = 1
        antigen[mask] = self.backend.xp.minimum(q, MOL_MAX)

    def _zone(self, zone: str):
        """The sites of a zone as a boolean array on the backend (made once per zone)."""
        mask = self._zone_masks.get(zone)
        if mask is None:
            mask = self._zone_masks[zone] = self.backend.asarray(self.geometry.mask(zone))
        return mask

    def _immunosuppress(self, factor: float) -> None:
        naive, memory = self._host_params.activation_luts(factor)
        k = self.params.k._replace(
            lut_naive=self.backend.asarray(naive), lut_memory=self.backend.asarray(memory)
        )
        self.params = dataclasses.replace(self.params, k=k)

    # ------------------------------------------------------------------ observation
    def count_cells(self) -> np.ndarray:
        """Cell counts, int64[N_CLASSES, n_spec, 3] by class, specificity and zone."""
        return self.phases.count_cells(self.state, self.params)

    def layer_totals(self) -> np.ndarray:
        """int64[n_layers]: each molecular layer summed over the lattice, in internal
        units, on the host."""
        return self.backend.to_host(self.state.mol.sum(axis=1))

    def layer_total(self, row: int, zone: str) -> int:
        """One molecular layer summed over the sites of a zone, in internal units."""
        return int(self.state.mol[row][self._zone(zone)].sum())

    def _check_saturation(self, step: int) -> None:
        """Report each molecular layer that reached :data:`MOL_MAX` since the last sample:
        an event (``saturation``) and a warning. Its values were capped there, so the run
        is no longer exact."""
        flags = self.backend.to_host(self.state.sites.saturated)
        names = self.params.layers.names()
        new = [names[r] for r in np.flatnonzero(flags) if names[r] not in self._saturated]
        if not new:
            return
        self._saturated.update(new)
        day = self.scenario.day_of_step(step)
        self.course.log(step, "saturation", ", ".join(new), layers=new, cap=MOL_MAX / MOL_SCALE)
        warnings.warn(
            f"molecular layer(s) {', '.join(new)} reached the most a site can hold "
            f"({MOL_MAX / MOL_SCALE:.0f} units) by day {day:g} (seed {self.seed}): values "
            "above it are capped, so this run is not exact from then on",
            SaturationWarning,
            stacklevel=2,
        )

    def _record(self) -> None:
        self.rows.append(metrics_row(self))
        self.kills_since_sample = 0

    # ------------------------------------------------------------------ one step
    def _timed(self, phase: str, start: Any) -> Any:
        """Mark the end of ``phase`` begun at mark ``start`` (:meth:`Backend.mark`); returns
        the end mark, the next phase's start."""
        end = self.backend.mark()
        self._pending.append((phase, start, end))
        return end

    def _add_up_phases(self) -> None:
        for phase, start, end in self._pending:
            self._phase_seconds[phase] += self.backend.seconds_between(start, end)
        self._pending.clear()

    @property
    def phase_seconds(self) -> dict[str, float]:
        """Seconds spent in each phase so far (the dict itself: it may be added to)."""
        self._add_up_phases()
        return self._phase_seconds

    def step(self) -> None:
        """Advance one step of ``dt`` hours."""
        if self.finished:
            raise RuntimeError("the simulation has already reached its last step")
        ph, st = self.phases, self.state
        step = self.step_index + 1
        seed = self.seed
        t = self.backend.mark()
        self.course.apply(self, step)
        p = self.params
        t = self._timed("events", t)
        th_count = int(st.ledger[Kind.T_HELPER, BORN] - st.ledger[Kind.T_HELPER, DIED])
        day = self.scenario.day_of_step(step)
        thr = t_helper_threshold(self.scenario, self._n_lymphoid_sites, th_count, day)
        ph.produce(st, p, seed, step, thr)
        t = self._timed("production", t)
        ph.move(st, p, seed, step)
        t = self._timed("movement", t)
        self.kills_since_sample += ph.kill(st, p, seed, step)
        ph.activate(st, p, seed, step)
        ph.displace(st, p, seed, step)
        ph.divide(st, p, seed, step)
        t = self._timed("contact", t)
        ph.molecules(st, p)
        t = self._timed("molecules", t)
        ph.death(st, p, seed, step)
        t = self._timed("death", t)
        self.step_index = step
        if step % self._sample_every == 0 or step == self.total_steps:
            self._record()
            self._check_saturation(step)
            self._add_up_phases()  # the sample waited for the device: no wait here
        for every, first, fn in self._observers:
            if step >= first and (step - first) % every == 0:
                fn(self)
        self._timed("observe", t)

    def add_observer(
        self, fn: Callable[[Simulation], object], every_steps: int, first_step: int = 0
    ) -> None:
        """Call ``fn(simulation)`` after every ``every_steps`` steps from ``first_step`` (what
        it returns is ignored)."""
        if every_steps < 1:
            raise ValueError("every_steps must be at least 1")
        self._observers.append((every_steps, max(0, first_step), fn))
        if (
            self.step_index >= max(0, first_step)
            and (self.step_index - max(0, first_step)) % every_steps == 0
        ):
            fn(self)

    # ------------------------------------------------------------------ running
    def run(
        self,
        until_step: int | None = None,
        callback: Callable[[Simulation], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Simulation:
        """Run to ``until_step`` (default: the end), calling ``callback`` after each sample;
        ``stop()``, asked after every step, ends the run early (at a step boundary) when it
        returns true."""
        end = self.total_steps if until_step is None else min(until_step, self.total_steps)
        n_rows = len(self.rows)
        while self.step_index < end:
            if stop is not None and stop():
                break
            self.step()
            if callback is not None and len(self.rows) != n_rows:
                n_rows = len(self.rows)
                callback(self)
        return self

    def wall_seconds(self) -> float:
        return sum(self.phase_seconds.values())


def _restored_state(g: Geometry, p: Params, meta: dict, arrays: dict) -> State:
    """A host state from a checkpoint's arrays (:mod:`immunesim.checkpoint`)."""
    n = int(meta["n"])
    st = allocate(g.L, p.layers.n_layers, g.zone, g.niche, g.toward, slots_for(n, g.L))
    for name, a in arrays.items():
        group, _, field = name.partition(".")
        if group == "cells":
            getattr(st.cells, field)[:n] = a
        elif group == "sites":
            target = getattr(st.sites, field)
            if target.shape != a.shape:
                raise ValueError(f"checkpoint array {name} has shape {a.shape}, not {target.shape}")
            if field == "mol" and a.size and int(a.max()) > MOL_MAX:  # int64 before
                raise ValueError(f"checkpoint array {name} holds more than {MOL_MAX} units")
            target[...] = a
    st.ledger[...] = arrays["ledger"]
    st.n, st.next_uid = n, int(meta["next_uid"])
    st.dead = int(np.count_nonzero(st.cells.alive[:n] == 0))  # cells that await compaction
    return st


def warm_up(backend: str = "auto", sizes: tuple[int, ...] = (16, 256)) -> float:
    """Compile the kernels of a backend that runs on lattices of ``sizes`` use, and return
    the seconds it took, so that timings of real runs leave JIT compilation out: a short run
    that uses every phase and therapy on a lattice of each size (at most 256). A map
    launches serially or in parallel by how many cells or sites it covers, each launch
    compiled on first use: 16 sites a side take the serial launches, 256 (more cells than
    a serial cell map takes, lymphodepletion included) every parallel one. A run passes 16
    and its own size, which compiles what it uses and no more (tests/unit/test_warm_up.py
    checks that it then compiles nothing). Under numba's CUDA simulator, which compiles
    nothing, it does nothing and returns 0."""
    from immunesim.backends import get_backend
    from immunesim.scenario import load_scenario

    if getattr(get_backend(backend)[1], "SIMULATED", False):
        return 0.0
    t0 = time.perf_counter()
    for size in sorted({min(int(n), 256) for n in sizes}):
        s = load_scenario(
            {
                "lattice": {"size": size, "zones": {"unit_um": size * 10.0}},
                "time": {"run_in_days": 1.0, "follow_up_days": 1.0, "dt_hours": 2.0},
                "therapy": [
                    {"type": "lymphodepletion", "days": [-0.5]},
                    {"type": "car_t", "day": 0.0, "dose_per_kg": 5e7, "anti_car_onset_days": 0.5},
                    {"type": "anti_cd20", "days": [0.0]},
                    {"type": "vaccination", "day": 0.0, "antigen": "tetanus"},
                ],
            }
        )
        Simulation(s, seed=0, backend=backend).run()
    return time.perf_counter() - t0


__all__ = ["PHASES", "SaturationWarning", "Simulation", "warm_up"]

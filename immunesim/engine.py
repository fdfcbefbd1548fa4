"""The simulation: initial state, run-in, the phases of a step, the therapy schedule.

One step (``dt`` hours) runs these phases in order (DESIGN section 2):

1. scheduled events (lymphodepletion, CAR-T infusion, anti-CD20, vaccination,
   standard-of-care immunosuppression);
2. production of naive B cells and T-helper homeostasis;
3. movement;
4. contact: CAR-T killing, activation and differentiation, division;
5. molecules: secretion, diffusion and decay, circulation, reactions;
6. death and removal of dead cells;
7. observation (on sampling steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from immunesim.backends import get_backend
from immunesim.model.cells import N_KINDS, Kind, marker_mask
from immunesim.model.params import MOL_SCALE, ZONE_CODE, Params, build_params
from immunesim.observe import metrics_row
from immunesim.rng import (
    ONE53,
    S_INFUSE,
    S_INIT,
    S_INIT_SPEC,
    S_NICHE,
    rate_threshold,
    site_keys,
    threshold,
)
from immunesim.scenario import (
    AntiCD20,
    CarT,
    Lymphodepletion,
    Scenario,
    ScenarioError,
    StandardOfCare,
    Vaccination,
)
from immunesim.state import State, allocate

PHASES = ("events", "production", "movement", "contact", "molecules", "death", "observe")


@dataclass
class Event:
    """A therapy event as it happened in a run."""

    step: int
    day: float
    kind: str
    label: str
    detail: dict = field(default_factory=dict)


def build_zones(s: Scenario, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Zone map ``uint8[L, L]`` and niche flags ``uint8[L, L]`` of a scenario."""
    L = s.lattice.size
    z = s.lattice.zones
    if z.layout == "bands":
        xs = (np.arange(L) + 0.5) / L
        col = np.where(xs < z.marrow, 0, np.where(xs < z.marrow + z.lymphoid, 1, 2))
        zone = np.broadcast_to(col.astype(np.uint8), (L, L)).copy()
    else:
        path = Path(z.file or "")
        try:
            zone = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ScenarioError(path, "lattice.zones.file",
                                f"a readable .npy array ({exc})") from None
        if zone.shape != (L, L) or not np.isin(zone, (0, 1, 2)).all():
            raise ScenarioError(
                path,
                "lattice.zones.file",
                f"an array of shape ({L}, {L}) holding only 0, 1, 2 (got shape {zone.shape})",
            )
        zone = zone.astype(np.uint8)
    keys = np.empty(L * L, np.uint64)
    site_keys(seed, 0, S_NICHE, L * L, keys)
    niche = ((zone.reshape(-1) == 0) & ((keys >> np.uint64(11)) < threshold(z.niche_fraction)))
    return zone, niche.reshape(L, L).astype(np.uint8)


class Course:
    """The clock, the therapy schedule and the metrics hook of a run, shared by the fast
    engine (:class:`Simulation`) and the Mesa reference
    (:class:`immunesim.reference.ReferenceModel`), so both give the same therapies at the same
    steps and record the same metrics.

    A subclass provides ``scenario``, ``seed``, ``params``, ``state`` (``zone`` and ``mol``
    at least), ``backend`` (``deplete``, ``count_cells``, ``xp``, ``to_host``), ``rows``,
    ``events``, ``kills_since_sample``, ``step_index``, ``_infused``, ``_soc_factor``,
    ``_lut_naive``/``_lut_memory``, ``_n_lymphoid_sites``, ``_schedule`` (from
    :meth:`_compile_schedule`) and ``_infuse(step, car_t)``.
    """

    @property
    def total_steps(self) -> int:
        return self.scenario.total_steps

    @property
    def day(self) -> float:
        """Simulated day of the current state (day 0: end of the run-in, infusion)."""
        return self.scenario.day_of_step(self.step_index)

    @property
    def finished(self) -> bool:
        return self.step_index >= self.total_steps

    def _compile_schedule(self) -> dict[int, list]:
        sched: dict[int, list] = {}
        s = self.scenario
        for t in s.therapy:
            if isinstance(t, (Lymphodepletion, AntiCD20)):
                for d in t.days:
                    sched.setdefault(s.step_of_day(d), []).append(t)
            elif isinstance(t, (CarT, Vaccination)):
                sched.setdefault(s.step_of_day(t.day), []).append(t)
        return sched

    def _t_helper_threshold(self, count: int) -> int:
        pr = self.scenario.production
        target = pr.t_helper_target_density * self._n_lymphoid_sites
        if target <= 0:
            return 0
        drive = max(0.0, 1.0 - count / target)
        return rate_threshold(pr.t_helper_per_site_per_day * drive, self.scenario.time.dt_hours)

    def _events(self, step: int) -> None:
        s, st, p = self.scenario, self.state, self.params
        day = s.day_of_step(step)
        for t in self._schedule.get(step, ()):
            if isinstance(t, Lymphodepletion):
                thr = np.full(3, threshold(t.kill_fraction_per_day), np.uint64)
                killed = self.backend.deplete(st, p, self.seed, step, marker_mask(t.targets), thr)
                self._log(step, "lymphodepletion", t.label or "lymphodepletion",
                          killed=int(killed))
            elif isinstance(t, CarT):
                placed = self._infuse(step, t)
                self._log(step, "car_t", t.label or f"CAR-T ({'+'.join(t.targets)})",
                          cells=placed)
            elif isinstance(t, Vaccination):
                layer = p.layers.vaccine_antigen(s.specificities.vaccines.index(t.antigen))
                lymph = st.zone == ZONE_CODE["lymphoid"]  # on the backend's device
                antigen = st.mol[layer]  # a view: plain boolean indexing on NumPy and CuPy
                antigen[lymph] += int(round(t.amount_per_site * MOL_SCALE))
                self._log(step, "vaccination", t.label or f"vaccination ({t.antigen})")
            elif isinstance(t, AntiCD20):  # the infusion; its effect follows the drug level
                self._log(step, "anti_cd20", t.label or "anti-CD20 infusion")
        # anti-CD20: drug level from the infusions given so far (first-order elimination)
        for t in s.therapy:
            if isinstance(t, AntiCD20):
                level = sum(
                    t.dose_mg / 1000.0 * 0.5 ** ((day - d) / t.half_life_days)
                    for d in t.days
                    if d <= day
                )
                if level > 1e-3:
                    eff = (t.marrow_efficacy, t.lymphoid_efficacy, t.tissue_efficacy)
                    thr = np.array(
                        [rate_threshold(t.kill_rate_per_day * level * e, s.time.dt_hours)
                         for e in eff],
                        np.uint64,
                    )
                    self.backend.deplete(st, p, self.seed, step, marker_mask(t.targets), thr)
        factor = 1.0
        for t in s.therapy:
            if isinstance(t, StandardOfCare) and t.start_day <= day < t.stop_day:
                factor *= t.activation_factor
        if factor != self._soc_factor:
            if self._soc_factor is not None:
                self._log(step, "standard_of_care", f"immunosuppression factor {factor:g}")
            self._soc_factor = factor
            self._lut_naive, self._lut_memory = p.activation_luts(factor)

    def _log(self, step: int, kind: str, label: str, **detail) -> None:
        self.events.append(Event(step, self.scenario.day_of_step(step), kind, label, detail))

    def _record(self) -> None:
        row = metrics_row(self)
        self.kills_since_sample = 0
        self.rows.append(row)

    @property
    def infused_car_t(self) -> int:
        return self._infused


class Simulation(Course):
    """One simulated patient: state, schedule and the time series it records.

    Args:
        scenario: a validated :class:`~immunesim.scenario.Scenario`.
        seed: random seed (defaults to ``scenario.run.seed``).
        backend: ``"auto"`` or a backend name (``"numba"``, ``"cuda"``).

    Attributes:
        step_index: steps done so far (step 0 is the start of the run-in).
        rows: the sampled metrics, one dict per sampling step.
        events: therapy events that have happened.
        phase_seconds: wall seconds spent in each phase.
        jit_seconds: seconds of kernel compilation before the run (set by the runner).
    """

    def __init__(self, scenario: Scenario, seed: int | None = None, backend: str = "auto"):
        self.scenario = scenario
        self.seed = int(scenario.run.seed if seed is None else seed)
        self.backend_name, self.backend = get_backend(backend)
        self.params: Params = build_params(scenario, self.seed)
        zone, niche = build_zones(scenario, self.seed)
        self.state: State = allocate(scenario.lattice.size, self.params.layers.n_layers, zone,
                                     niche)
        self.step_index = 0
        self.rows: list[dict] = []
        self.events: list[Event] = []
        self.kills_since_sample = 0
        self.phase_seconds = dict.fromkeys(PHASES, 0.0)
        #: Seconds spent compiling kernels before the run, when the runner measured it.
        self.jit_seconds: float | None = None
        self._observers: list[tuple[int, int, Callable[[Simulation], None]]] = []
        self._sample_every = max(1, int(round(scenario.time.sample_every_hours
                                              / scenario.time.dt_hours)))
        self._infused = 0
        self._soc_factor = None
        self._lut_naive, self._lut_memory = self.params.activation_luts(1.0)
        self._schedule = self._compile_schedule()
        self._n_lymphoid_sites = int(np.count_nonzero(zone == ZONE_CODE["lymphoid"]))
        self._initialise()
        self.state, self.params = self.backend.prepare(self.state, self.params)
        self._record()

    # ------------------------------------------------------------------ set-up
    def _initialise(self) -> None:
        s, p, st = self.scenario, self.params, self.state
        L = st.L
        n_sites = L * L
        keys = np.empty(n_sites, np.uint64)
        site_keys(self.seed, 0, S_INIT, n_sites, keys)
        r = keys >> np.uint64(11)
        spec_keys = np.empty(n_sites, np.uint64)
        site_keys(self.seed, 0, S_INIT_SPEC, n_sites, spec_keys)
        rs = (spec_keys >> np.uint64(11)).astype(np.float64) / ONE53
        zone = st.zone
        ini = s.initial
        n_spec = p.layers.n_spec
        n_vacc = p.layers.n_vaccines
        lymph = zone == ZONE_CODE["lymphoid"]
        c1 = threshold(ini.t_helper)
        c2 = threshold(min(1.0, ini.t_helper + ini.naive_b))
        c3 = threshold(min(1.0, ini.t_helper + ini.naive_b + ini.memory_b))
        kind = np.full(n_sites, -1, np.int8)
        kind[lymph & (r < c1)] = Kind.T_HELPER
        kind[lymph & (r >= c1) & (r < c2)] = Kind.NAIVE_B
        kind[lymph & (r >= c2) & (r < c3)] = Kind.MEMORY_B
        kind[(st.niche != 0) & (r < threshold(ini.llpc))] = Kind.LLPC

        spec = np.full(n_sites, n_spec - 1, np.int8)  # 'other'
        # naive B: the marrow output distribution
        cum = p.spec_cum.astype(np.float64) / ONE53
        naive_spec = np.searchsorted(cum, rs, side="right").clip(0, n_spec - 1)
        spec = np.where(kind == Kind.NAIVE_B, naive_spec, spec)

        def _mixed(self_frac: float, vacc_frac: float) -> np.ndarray:
            edges = np.cumsum([self_frac] + [vacc_frac / n_vacc] * n_vacc)
            return np.searchsorted(edges, rs, side="right").clip(0, n_spec - 1)

        spec = np.where(kind == Kind.MEMORY_B,
                        _mixed(ini.memory_self_fraction, 2 * s.specificities.vaccine_fraction
                               * n_vacc), spec)
        spec = np.where(kind == Kind.LLPC,
                        _mixed(ini.llpc_self_fraction, ini.llpc_vaccine_fraction), spec)

        sites = np.flatnonzero(kind >= 0)
        n = sites.size
        st.uid[:n] = np.arange(n)
        st.kind[:n] = kind[sites]
        st.spec[:n] = spec[sites]
        st.x[:n] = sites % L
        st.y[:n] = sites // L
        st.alive[:n] = 1
        st.occ[sites] = np.arange(n, dtype=np.int32)
        st.n = n
        st.next_uid = n
        for k in range(N_KINDS):
            st.ledger[k, 0] += int(np.count_nonzero(st.kind[:n] == k))
        tissue = zone == ZONE_CODE["tissue"]
        st.mol[p.layers.autoantigen, tissue] = int(round(ini.autoantigen * MOL_SCALE))
        st.mol[p.layers.damage, tissue] = int(round(ini.damage * MOL_SCALE))

    # ------------------------------------------------------------------ one step
    def _timed(self, phase: str, t0: float) -> float:
        self.backend.synchronize()
        t1 = time.perf_counter()
        self.phase_seconds[phase] += t1 - t0
        return t1

    def step(self) -> None:
        """Advance one step of ``dt`` hours."""
        if self.finished:
            raise RuntimeError("the simulation has already reached its last step")
        b, st, p = self.backend, self.state, self.params
        step = self.step_index + 1
        seed = self.seed
        t = time.perf_counter()
        self._events(step)
        t = self._timed("events", t)
        th_count = int(st.ledger[Kind.T_HELPER, 0] - st.ledger[Kind.T_HELPER, 1])
        b.produce(st, p, seed, step, self._t_helper_threshold(th_count))
        t = self._timed("production", t)
        b.move(st, p, seed, step)
        t = self._timed("movement", t)
        self.kills_since_sample += b.kill(st, p, seed, step)
        b.activate(st, p, seed, step, self._lut_naive, self._lut_memory)
        b.divide(st, p, seed, step)
        t = self._timed("contact", t)
        b.molecules(st, p)
        t = self._timed("molecules", t)
        b.death(st, p, seed, step)
        t = self._timed("death", t)
        self.step_index = step
        if step % self._sample_every == 0 or step == self.total_steps:
            self._record()
        for every, first, fn in self._observers:
            if step >= first and (step - first) % every == 0:
                fn(self)
        self._timed("observe", t)

    def add_observer(self, fn: Callable[[Simulation], None], every_steps: int,
                     first_step: int = 0) -> None:
        """Call ``fn(simulation)`` after every ``every_steps`` steps from ``first_step``."""
        if every_steps < 1:
            raise ValueError("every_steps must be at least 1")
        self._observers.append((every_steps, max(0, first_step), fn))
        if self.step_index >= max(0, first_step) and \
                (self.step_index - max(0, first_step)) % every_steps == 0:
            fn(self)

    def _infuse(self, step: int, t: CarT) -> int:
        s, st, xp = self.scenario, self.state, self.backend.xp
        L = st.L
        n_sites = L * L
        count = int(round(t.dose_per_kg * s.scale.weight_kg * n_sites / s.scale.body_cells))
        keys = np.empty(n_sites, np.uint64)
        site_keys(self.seed, step, S_INFUSE, n_sites, keys)
        free = np.flatnonzero(self.backend.to_host(st.occ) < 0)
        count = min(count, free.size)
        chosen = np.sort(free[np.argsort(keys[free], kind="stable")[:count]])
        n = st.n
        sl = slice(n, n + count)
        st.uid[sl] = xp.asarray(np.arange(st.next_uid, st.next_uid + count))
        st.kind[sl] = int(Kind.CAR_T)
        st.state[sl] = 0
        st.spec[sl] = self.params.layers.n_spec - 1
        st.x[sl] = xp.asarray(chosen % L)
        st.y[sl] = xp.asarray(chosen // L)
        st.age[sl] = 0
        st.counter[sl] = 0
        st.car_mask[sl] = marker_mask(t.targets)
        st.alive[sl] = 1
        st.occ[xp.asarray(chosen)] = xp.asarray(np.arange(n, n + count, dtype=np.int32))
        st.n += count
        st.next_uid += count
        st.ledger[Kind.CAR_T, 0] += count
        self._infused += count
        return count

    # ------------------------------------------------------------------ running
    def run(self, until_step: int | None = None,
            callback: Callable[[Simulation], None] | None = None) -> Simulation:
        """Run to ``until_step`` (default: the end), calling ``callback`` after each sample."""
        end = self.total_steps if until_step is None else min(until_step, self.total_steps)
        n_rows = len(self.rows)
        while self.step_index < end:
            self.step()
            if callback is not None and len(self.rows) != n_rows:
                n_rows = len(self.rows)
                callback(self)
        return self

    def wall_seconds(self) -> float:
        return sum(self.phase_seconds.values())


def warm_up(backend: str = "auto") -> float:
    """Compile every kernel of a backend (a tiny run that uses every phase and therapy) and
    return the seconds it took, so that timings of real runs leave JIT compilation out."""
    from immunesim.scenario import load_scenario

    t0 = time.perf_counter()
    s = load_scenario({
        "lattice": {"size": 12},
        "time": {"run_in_days": 1.0, "follow_up_days": 1.0},
        "therapy": [
            {"type": "lymphodepletion", "days": [-0.5]},
            {"type": "car_t", "day": 0.0, "dose_per_kg": 1e9},
            {"type": "anti_cd20", "days": [0.0]},
            {"type": "vaccination", "day": 0.0, "antigen": "tetanus"},
        ],
    })
    Simulation(s, seed=0, backend=backend).run()
    return time.perf_counter() - t0


__all__ = ["Simulation", "Course", "Event", "PHASES", "build_zones", "warm_up"]

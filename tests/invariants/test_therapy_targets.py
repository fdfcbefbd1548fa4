"""Each therapy hits exactly the cells bearing its markers."""

from __future__ import annotations

import numpy as np
import pytest

from immunesim.engine import Simulation
from immunesim.model.cells import MARKERS, Kind, marker_mask
from immunesim.scenario import load_scenario
from tests.conftest import small_cart


@pytest.fixture(scope="module")
def diseased() -> Simulation:
    """A small lattice after a run-in, holding every B-lineage kind."""
    s = load_scenario(small_cart(size=48, run_in=60, follow_up=10))
    sim = Simulation(s, seed=5)
    sim.run(until_step=s.run_in_steps - 7 * 24)  # before any therapy
    st = sim.state
    kinds = set(st.kind[: st.n][st.alive[: st.n] != 0].tolist())
    assert {
        Kind.NAIVE_B,
        Kind.ACTIVATED_B,
        Kind.MEMORY_B,
        Kind.PLASMABLAST,
        Kind.LLPC,
        Kind.T_HELPER,
    } <= kinds
    return sim


def _deplete_all(sim: Simulation, targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The kinds of the live cells, and which of them a certain depletion kills (slots of
    cells dead since earlier steps, which await compaction, are left out)."""
    st = sim.state
    live = st.alive[: st.n] != 0
    kinds = st.kind[: st.n][live]
    alive = st.alive.copy()
    thr = np.full(3, 1 << 53, np.uint64)  # probability 1 in every zone
    sim.deplete(10**6, marker_mask(targets), thr)
    killed = (st.alive[: st.n] == 0)[live]
    st.alive[:] = alive  # undo, so the fixture can be reused
    return kinds, killed


@pytest.mark.parametrize(
    "targets", [["CD19"], ["CD20"], ["BCMA"], ["CD19", "BCMA"], ["CD19", "CD3"]]
)
def test_depletion_hits_exactly_marker_bearers(diseased, targets):
    kinds, killed = _deplete_all(diseased, targets)
    bearing = (MARKERS[kinds] & marker_mask(targets)) != 0
    assert np.array_equal(killed, bearing)


def test_anti_cd20_spares_plasmablasts_and_llpc(diseased):
    kinds, killed = _deplete_all(diseased, ["CD20"])
    assert not killed[kinds == Kind.PLASMABLAST].any()
    assert not killed[kinds == Kind.LLPC].any()
    assert killed[kinds == Kind.NAIVE_B].all() and killed[kinds == Kind.MEMORY_B].all()


class _RecordingPhases:
    """The simulation's phases, with the kinds of each kill phase's victims recorded."""

    def __init__(self, phases):
        self._phases = phases
        self.victims: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self._phases, name)

    def kill(self, st, p, seed, step):
        before = st.alive[: st.n].copy()
        kills = self._phases.kill(st, p, seed, step)
        self.victims.append(st.kind[: st.n][(before == 1) & (st.alive[: st.n] == 0)].copy())
        return kills


def _car_t_victims(targets: list[str], seed: int = 11) -> np.ndarray:
    """Kinds of every cell a CAR-T product with ``targets`` killed in its first 5 days."""
    s = load_scenario(small_cart(size=48, run_in=60, follow_up=5, targets=targets))
    # no conditioning or anti-CD20: every death in the kill phase is the CAR-T's doing
    s.therapy = [t for t in s.therapy if t.type in ("car_t", "standard_of_care")]
    sim = Simulation(s, seed=seed)
    sim.run(until_step=s.run_in_steps)
    sim.phases = recorder = _RecordingPhases(sim.phases)
    sim.run()
    return np.concatenate(recorder.victims)


def test_cd19_car_t_kills_only_cd19_cells_and_spares_llpc():
    victims = _car_t_victims(["CD19"])
    assert victims.size > 0
    assert set(victims.tolist()) <= {
        Kind.NAIVE_B,
        Kind.ACTIVATED_B,
        Kind.MEMORY_B,
        Kind.PLASMABLAST,
    }
    assert Kind.LLPC not in victims


def test_bcma_car_t_spares_naive_and_memory_b_cells():
    victims = _car_t_victims(["BCMA"])
    assert victims.size > 0
    assert set(victims.tolist()) <= {Kind.ACTIVATED_B, Kind.PLASMABLAST, Kind.LLPC}


def test_cd19_bcma_car_t_kills_both_lineages():
    victims = set(_car_t_victims(["CD19", "BCMA"]).tolist())
    assert Kind.LLPC in victims and Kind.NAIVE_B in victims
    assert Kind.T_HELPER not in victims


def test_anti_cd20_kills_in_transit_the_cells_that_cross_the_blood(diseased):
    """With no kill in any zone, anti-CD20 still kills the CD20+ cells that cross the blood:
    a naive B cell outside its home zone (it left the marrow: 2 passages a day) far more
    often than one resident in a lymph-node follicle (0.02 a day), and never a CD20-negative
    plasmablast. One day's step at 1 g of drug: a cell dies with probability
    ``1 - exp(-egress * p)``, ``p = k*tau / (1 + k*tau)`` with ``k*tau = 1000 / 48``."""
    from immunesim.engine.therapies import EFFECTS
    from immunesim.model.params import ZONE_CODE

    s = diseased.scenario.model_copy(deep=True)
    s.time.dt_hours = 24.0
    entry = load_scenario(
        {
            "therapy": [
                {
                    "type": "anti_cd20",
                    "days": [0],
                    "marrow_efficacy": 0.0,
                    "lymphoid_efficacy": 0.0,
                    "tissue_efficacy": 0.0,
                }
            ]
        }
    ).therapy[0]
    st = diseased.state
    n = st.n
    kinds = st.kind[:n].copy()
    zones = diseased.geometry.zone.reshape(-1)[st.y[:n] * st.L + st.x[:n]]
    alive = st.alive.copy()
    EFFECTS["anti_cd20"].each_step(entry, s, diseased, 10**6 + 1, 0.0)
    killed = (st.alive[:n] == 0) & (alive[:n] == 1)
    st.alive[:] = alive  # undo, so the fixture can be reused
    p = (1000 / 48) / (1 + 1000 / 48)
    naive, live = kinds == Kind.NAIVE_B, alive[:n] == 1
    away = naive & live & (zones == ZONE_CODE["marrow"])
    home = naive & live & (zones == ZONE_CODE["lymphoid"])
    q_away = 1 - np.exp(-2.0 * p)
    sd = np.sqrt(q_away * (1 - q_away) / away.sum())
    assert away.sum() >= 30 and home.sum() >= 30
    # binomial: within 4 standard deviations of the expected share
    assert abs(killed[away].mean() - q_away) < 4 * sd
    assert killed[home].mean() < 0.1  # expected 1 - exp(-0.02 p) = 0.019
    assert not killed[kinds == Kind.PLASMABLAST].any()

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
    kinds = set(sim.state.kind[: sim.state.n].tolist())
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
    st = sim.state
    kinds = st.kind[: st.n].copy()
    alive = st.alive.copy()
    thr = np.full(3, 1 << 53, np.uint64)  # probability 1 in every zone
    sim.deplete(10**6, marker_mask(targets), thr)
    killed = st.alive[: st.n] == 0
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


def test_bcma_car_t_spares_naive_b_cells():
    victims = _car_t_victims(["BCMA"])
    assert victims.size > 0
    assert set(victims.tolist()) <= {Kind.PLASMABLAST, Kind.LLPC}


def test_cd19_bcma_car_t_kills_both_lineages():
    victims = set(_car_t_victims(["CD19", "BCMA"]).tolist())
    assert Kind.LLPC in victims and Kind.NAIVE_B in victims
    assert Kind.T_HELPER not in victims

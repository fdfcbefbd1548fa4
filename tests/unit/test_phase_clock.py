"""Phase timing without waiting for the device: a step marks each phase's end
(``Backend.mark``) and adds the phases up only at samples, when the host has read from the
device anyway, so that on a GPU the host does not wait for the device at every phase."""

from __future__ import annotations

from immunesim.engine import Simulation
from immunesim.engine.simulation import PHASES
from immunesim.scenario import load_scenario
from tests.conftest import small_cart


class _Clock:
    """A backend whose marks count up by one and which records what the host asks of it."""

    def __init__(self, backend):
        self._backend = backend
        self.ticks = 0
        self.waits = 0
        self.added = 0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def mark(self):
        self.ticks += 1
        return self.ticks

    def seconds_between(self, start, end):
        self.added += 1
        return float(end - start)

    def synchronize(self):
        self.waits += 1


def test_a_step_waits_for_no_phase_and_the_samples_add_the_phases_up():
    scen = small_cart(size=16)
    scen["time"].update(dt_hours=1.0, sample_every_hours=4.0)  # a sample every 4 steps
    sim = Simulation(load_scenario(scen), seed=1)
    clock = _Clock(sim.backend)
    sim.backend = clock  # the phases keep the real backend for their kernels
    for _ in range(3):
        sim.step()
    assert clock.waits == 0  # no phase waited for the device
    assert clock.added == 0  # nor added anything up before a sample
    sim.step()  # the fourth step samples
    # every phase of the four steps, but the last one's observation, which ends after it
    assert clock.added == 4 * len(PHASES) - 1
    # each phase took one tick of the clock in each step
    assert sim.phase_seconds == dict.fromkeys(PHASES, 4.0)
    sim.step()
    assert sim.phase_seconds == dict.fromkeys(PHASES, 5.0)  # asked for: added up at once
    assert sim.wall_seconds() == 5.0 * len(PHASES)

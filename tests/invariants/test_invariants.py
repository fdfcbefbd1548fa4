"""Invariants checked after every step of a short run that exercises every therapy:
one cell per site, no negative molecules, and the cell ledger balances per kind."""

from __future__ import annotations

import numpy as np
import pytest

from immunesim.engine import Simulation
from immunesim.model.cells import N_KINDS
from immunesim.model.params import fixed
from immunesim.scenario import load_scenario
from tests.conftest import small_cart


def check_state(sim: Simulation) -> None:
    st = sim.state
    n, L = st.n, st.L
    sites = st.y[:n].astype(np.int64) * L + st.x[:n]
    # never two cells on a site, and the occupancy map agrees with the cell arrays
    assert np.unique(sites).size == n, "two cells share a site"
    assert np.array_equal(st.occ[sites], np.arange(n)), "occupancy map disagrees with cells"
    assert np.count_nonzero(st.occ >= 0) == n, "occupied sites without a cell"
    assert np.all(st.alive[:n] == 1), "a dead cell survived compaction"
    assert np.unique(st.uid[:n]).size == n, "duplicate uid"
    assert np.all((st.x[:n] >= 0) & (st.x[:n] < L) & (st.y[:n] >= 0) & (st.y[:n] < L))
    # molecular quantities never go negative
    assert st.mol.min() >= 0, "negative molecular quantity"
    # births - deaths + conversions in - out == live count, per kind
    counts = np.bincount(st.kind[:n], minlength=N_KINDS)
    led = st.ledger
    assert np.array_equal(led[:, 0] - led[:, 1] + led[:, 2] - led[:, 3], counts), (
        f"ledger {led.tolist()} does not balance counts {counts.tolist()}"
    )


@pytest.fixture(scope="module")
def stepped() -> Simulation:
    s = load_scenario(small_cart(size=32, run_in=12, follow_up=16))
    sim = Simulation(s, seed=3)
    check_state(sim)
    while not sim.finished:
        sim.step()
        check_state(sim)
    return sim


def test_invariants_hold_every_step(stepped):
    # the run exercised every phase: cells were born, died and converted
    led = stepped.state.ledger
    assert led[:, 1].sum() > 0 and led[:, 2].sum() > 0
    kinds = {e.kind for e in stepped.events}
    assert {"lymphodepletion", "car_t", "vaccination", "anti_cd20"} <= kinds


def test_diffusion_conserves_mass():
    from immunesim.backends import numba_cpu
    from immunesim.kernels import molecules

    s = load_scenario(small_cart(size=24))
    sim = Simulation(s, seed=1)
    st, p = sim.state, sim.params
    rng = np.random.default_rng(0)
    st.mol[:] = rng.integers(0, 10**6, st.mol.shape)
    before = st.mol.sum(axis=1)
    n_layers = st.mol.shape[0]
    zero = np.zeros(n_layers, np.int64)
    circ = np.full(n_layers, fixed(0.3), np.int64)
    k = p.k._replace(decay=zero, circulate=circ)
    t = molecules.Transport(st.L, fixed(0.2), st.mol_next, zero, zero)
    pool = numba_cpu.for_sites(molecules.diffuse, n_layers, t, st.cells, st.sites, k, n_layers)
    assert np.array_equal(st.mol_next.sum(axis=1), before)
    assert not np.array_equal(st.mol_next, st.mol)  # something moved
    assert np.all(pool > 0)
    share = pool // (st.L * st.L)
    rest = pool - share * st.L * st.L
    # the exchange with the circulation alone: no binding, damage or release, no tissue
    k = k._replace(fp=np.zeros_like(k.fp), fx=np.zeros_like(k.fx))
    mol = st.mol_next.copy()
    sites = st.sites._replace(mol=mol, zone=np.zeros_like(st.zone))
    numba_cpu.for_sites(
        molecules.exchange, 1, t._replace(share=share, rest=rest), st.cells, sites, k
    )
    assert np.array_equal(mol.sum(axis=1), before)

"""Competition for marrow niches: a plasmablast next to a long-lived plasma cell on a niche
displaces it at its class's rate and settles there (``activation.niche_displacement_per_day``).

The states are made by hand from a small lattice: every cell next to a resident plasma cell
becomes a plasmablast of one class, so that many residents have plasmablast neighbours and
some have several (conflicts). The phase is then run once, on the fast engine and on the
Mesa reference.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.stats import binomtest

from immunesim.engine import Simulation
from immunesim.engine.geometry import DX, DY
from immunesim.model.cells import Kind
from immunesim.reference import ReferenceModel
from immunesim.reference.agents import BCell
from immunesim.scenario import load_scenario
from immunesim.state import BORN, CONV_IN, CONV_OUT, DIED
from tests.conftest import SCENARIOS
from tests.invariants.test_invariants import check_state

#: Anatomical units of 480 um (48 sites) in the default scenario, 2-hour steps.
UNIT = "lattice.zones.unit_um=480"
#: A rate whose per-step probability is 1 (every plasmablast with a resident proposes).
CERTAIN = 1e9


def _sim(rate: float, autoreactive: float = 0.0, seed: int = 5, size: int = 48) -> Simulation:
    s = load_scenario(
        SCENARIOS / "sle_cd19_cart.toml",
        [
            f"lattice.size={size}",
            UNIT,
            f"activation.niche_displacement_per_day={rate}",
            f"activation.autoreactive_niche_displacement={autoreactive}",
        ],
    )
    sim = Simulation(s, seed=seed, backend="numba")
    sim.run(until_step=10 * 12)  # ten days: new B cells fill the marrow around the niches
    return sim


def _neighbours(x: int, y: int, L: int):
    for dx, dy in zip(DX.tolist(), DY.tolist(), strict=True):
        if 0 <= x + dx < L and 0 <= y + dy < L:
            yield (y + dy) * L + x + dx


def _residents(sim: Simulation) -> np.ndarray:
    """Slots of the live long-lived plasma cells on niches."""
    st = sim.state
    n = st.n
    sites = st.y[:n].astype(np.int64) * st.L + st.x[:n]
    return np.flatnonzero(
        (st.alive[:n] != 0) & (st.kind[:n] == Kind.LLPC) & (st.niche.reshape(-1)[sites] != 0)
    )


def _contest(sim: Simulation, spec: int) -> None:
    """Every live cell next to a resident (and not one itself) becomes a plasmablast of
    class ``spec``, its ledger entries moved with it."""
    st = sim.state
    L = st.L
    chosen = set()
    for j in _residents(sim):
        for site in _neighbours(int(st.x[j]), int(st.y[j]), L):
            i = int(st.occ[site])
            if i >= 0 and st.kind[i] != Kind.LLPC:
                chosen.add(i)
    for i in chosen:
        st.ledger[st.kind[i], CONV_OUT] += 1
        st.ledger[Kind.PLASMABLAST, CONV_IN] += 1
        st.kind[i] = Kind.PLASMABLAST
        st.spec[i] = spec
        st.counter[i] = 0
        st.state[i] = 0


def _spec(sim: Simulation, name: str) -> int:
    return sim.params.layers.spec_names.index(name)


def _contested(rate: float, spec_name: str = "measles", autoreactive: float = 0.0):
    sim = _sim(rate, autoreactive)
    _contest(sim, _spec(sim, spec_name))
    check_state(sim)
    return sim


def _pb_neighbours(sim: Simulation) -> dict[int, list[int]]:
    """For each resident slot, the slots of the plasmablasts on its Moore neighbours."""
    st = sim.state
    out = {}
    for j in _residents(sim):
        out[int(j)] = [
            int(st.occ[s])
            for s in _neighbours(int(st.x[j]), int(st.y[j]), st.L)
            if st.occ[s] >= 0 and st.kind[st.occ[s]] == Kind.PLASMABLAST
        ]
    return out


def _displace(sim: Simulation, step: int) -> None:
    sim.phases.displace(sim.state, sim.params, sim.seed, step)


def test_a_displacing_plasmablast_takes_the_niche_and_the_resident_dies():
    sim = _contested(CERTAIN)
    st = sim.state
    L = st.L
    before = {
        "uid": st.uid[: st.n].copy(),
        "site": st.y[: st.n].astype(np.int64) * L + st.x[: st.n],
        "kind": st.kind[: st.n].copy(),
        "alive": st.alive[: st.n] != 0,  # slots of cells dead since earlier steps linger
        "ledger": st.ledger.copy(),
    }
    neighbours = _pb_neighbours(sim)
    contested = sum(len(v) >= 2 for v in neighbours.values())
    sought = {j for j, v in neighbours.items() if v}
    assert len(sought) >= 20 and contested >= 5, "the hand-made state tests too little"
    n_llpc = int(np.count_nonzero(before["alive"] & (before["kind"] == Kind.LLPC)))
    n_pb = int(np.count_nonzero(before["alive"] & (before["kind"] == Kind.PLASMABLAST)))

    _displace(sim, step=1)

    displaced = [j for j in neighbours if st.alive[j] == 0]
    # every resident that a plasmablast proposes to is displaced once; one whose
    # plasmablasts all chose other residents may stay
    assert set(displaced) <= sought
    assert len(displaced) >= len(sought) // 2
    for j in displaced:
        niche = before["site"][j]
        i = int(st.occ[niche])
        # the winner is a plasmablast that stood next to the niche, now a plasma cell on it,
        # with its own identity; the resident took its old site, dead
        assert i in neighbours[j]
        assert st.kind[i] == Kind.LLPC and st.alive[i] == 1 and st.uid[i] == before["uid"][i]
        assert st.spec[i] == _spec(sim, "measles")
        assert st.occ[before["site"][i]] == j
        assert st.y[j] * L + st.x[j] == before["site"][i]
    live = st.alive[: st.n] != 0
    assert np.count_nonzero(live & (st.kind[: st.n] == Kind.LLPC)) == n_llpc
    assert np.count_nonzero(live & (st.kind[: st.n] == Kind.PLASMABLAST)) == n_pb - len(displaced)
    moved = st.ledger - before["ledger"]
    assert moved[Kind.PLASMABLAST, CONV_OUT] == moved[Kind.LLPC, CONV_IN] == len(displaced)

    # the displaced cells die as long-lived plasma cells, and the state is whole again
    sim.phases.death(st, sim.params, sim.seed, 1)
    assert (st.ledger - before["ledger"])[Kind.LLPC, DIED] >= len(displaced)
    assert (st.ledger - before["ledger"])[:, BORN].sum() == 0
    check_state(sim)


@pytest.mark.parametrize(
    ("autoreactive", "moves"), [(0.0, False), (1.0, True)], ids=["extrafollicular", "competent"]
)
def test_autoreactive_plasmablasts_displace_at_their_own_rate(autoreactive, moves):
    sim = _contested(CERTAIN, spec_name="self", autoreactive=autoreactive)
    kind = sim.state.kind[: sim.state.n].copy()
    _displace(sim, step=1)
    changed = not np.array_equal(kind, sim.state.kind[: sim.state.n])
    assert changed == moves


def test_no_rate_no_phase():
    """At rate 0 (the default) the phase does nothing, and no array is touched."""
    sim = _contested(0.0)
    assert not sim.params.displaces
    st = copy.deepcopy(sim.state)
    _displace(sim, step=1)
    for a, b in zip(st.cells, sim.state.cells, strict=True):
        np.testing.assert_array_equal(a, b)


def _isolated_pairs(sim: Simulation, spec: int) -> list[int]:
    """Make pairs: for each resident, one neighbouring cell (with no other resident next
    to it) becomes a plasmablast of class ``spec``, so that the resident has exactly one
    plasmablast neighbour and that plasmablast no rival target. Returns the residents."""
    st = sim.state
    L = st.L
    residents = {int(j) for j in _residents(sim)}
    niche_of = {int(st.y[j] * L + st.x[j]): j for j in residents}
    pairs = []
    for j in sorted(residents):
        around = list(_neighbours(int(st.x[j]), int(st.y[j]), L))
        if any(st.occ[s] >= 0 and st.kind[st.occ[s]] == Kind.PLASMABLAST for s in around):
            continue
        for site in around:
            i = int(st.occ[site])
            if i < 0 or st.kind[i] == Kind.LLPC:
                continue
            rivals = [
                niche_of[s]
                for s in _neighbours(int(st.x[i]), int(st.y[i]), L)
                if s in niche_of and niche_of[s] != j
            ]
            if rivals:
                continue
            st.ledger[st.kind[i], CONV_OUT] += 1
            st.ledger[Kind.PLASMABLAST, CONV_IN] += 1
            st.kind[i], st.spec[i], st.counter[i], st.state[i] = Kind.PLASMABLAST, spec, 0, 0
            pairs.append(j)
            break
    check_state(sim)
    return pairs


#: 2 a day at 2-hour steps: a per-step probability of 1 - exp(-1/6) = 0.1535.
RATE = 2.0
P_STEP = -np.expm1(-RATE * 2.0 / 24.0)
#: Repetitions of the phase (fresh copies, other steps or reference seeds).
REPEATS = 80


def test_an_isolated_pair_is_displaced_at_the_per_step_probability_on_both_engines():
    """A resident with one plasmablast neighbour (and no rival for it) is displaced with
    probability ``1 - exp(-rate * dt)`` per step, on the fast engine and on the reference.

    Tolerance: each engine's count over 35 pairs x 80 repetitions is a binomial draw
    (standard deviation 0.007 around 0.154); a two-sided binomial test rejects at 1e-4, so
    an engine fails by chance once in 10^4 runs, while a per-step probability off by 20%
    (4.5 standard deviations) is rejected in most runs."""
    sim = _sim(RATE, size=96)
    pairs = _isolated_pairs(sim, _spec(sim, "tetanus"))
    assert len(pairs) >= 15
    engine = reference = 0
    for k in range(REPEATS):
        st = copy.deepcopy(sim.state)
        sim.phases.displace(st, sim.params, sim.seed, k + 1)
        engine += int(np.count_nonzero(st.alive[pairs] == 0))

        ref = ReferenceModel.from_simulation(sim)
        ref.random.seed(1000 + k)
        niches = {int(sim.state.y[j] * sim.state.L + sim.state.x[j]): j for j in pairs}
        held = {site: _holder(ref, site) for site in niches}
        ref._agents_of(BCell).shuffle_do("displace")
        reference += sum(_holder(ref, site) is not held[site] for site in niches)
    trials = len(pairs) * REPEATS
    for count in (engine, reference):
        assert binomtest(count, trials, P_STEP).pvalue > 1e-4, (count, trials, P_STEP)


def _holder(ref: ReferenceModel, site: int):
    """The agent on a site of the reference's grid."""
    x, y = site % ref.L, site // ref.L
    agents = ref.grid[x, y].agents
    return agents[0] if agents else None

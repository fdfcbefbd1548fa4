"""The reference model is a Mesa model that runs the fast engine's rules and speaks its
formats (structure, not statistics: the distributions are compared in test_equivalence)."""

from __future__ import annotations

import numpy as np
import pytest
from mesa.discrete_space import OrthogonalMooreGrid

import immunesim
from immunesim.engine import Simulation
from immunesim.engine.parameters import build_params
from immunesim.kernels import common, contact, lifecycle, molecules, move
from immunesim.observe import metrics_row
from immunesim.reference import BCell, CarTCell, ReferenceModel, THelper, rules
from immunesim.scenario import load_scenario
from tests.conftest import SCENARIOS, small_cart

TINY = [
    "lattice.size=16",
    "lattice.zones.unit_um=160",
    "time.dt_hours=3",
    "therapy.2.dose_per_kg=5e6",
]


@pytest.fixture(scope="module")
def cart_run():
    """A small CD19 CAR-T run with every therapy, on both engines (same seed)."""
    sc = small_cart(size=20, run_in=10.0, follow_up=15.0)
    ref = ReferenceModel(sc, seed=5)
    return ref, ref.run(), immunesim.run(sc, seed=5, backend="numba")


def test_is_a_mesa_model_on_a_moore_grid_without_wrap_around(cart_run):
    ref, _, _ = cart_run
    assert isinstance(ref.grid, OrthogonalMooreGrid) and not ref.grid.torus
    corner = ref.grid[0, 0]
    assert len(corner.neighborhood) == 3  # no wrap-around: the lattice has edges
    assert len(ref.grid[5, 5].neighborhood) == 8  # Moore neighbourhood inside
    kinds = {type(a) for a in ref.agents}
    assert {BCell, THelper, CarTCell} <= kinds
    assert ref.steps == ref.step_index > 0 and not ref.running


def test_one_agent_per_site_and_cells_stay_where_their_zone_allows(cart_run):
    ref, _, _ = cart_run
    seen = set()
    for a in ref.agents:
        assert a.cell.agents == [a]
        seen.add(a.cell.coordinate)
    assert len(seen) == len(ref.agents)
    llpc = [a for a in ref.agents if isinstance(a, BCell) and a.kind == 4]
    assert llpc and all(a.cell.zone == 0 for a in llpc)  # plasma cells live in marrow


def test_same_columns_endpoints_and_events_as_the_fast_engine(cart_run):
    _, res, fast = cart_run
    assert list(res.timeseries.columns) == list(fast.timeseries.columns)
    assert list(res.timeseries["day"]) == list(fast.timeseries["day"])
    assert set(res.endpoints) == set(fast.endpoints)
    assert [(e["day"], e["kind"]) for e in res.events] == [
        (e["day"], e["kind"]) for e in fast.events
    ]
    assert res.endpoints["car_t_infused_agents"] == fast.endpoints["car_t_infused_agents"]


def test_starts_from_the_fast_engines_initial_lattice():
    s = load_scenario(small_cart(size=24, run_in=10.0, follow_up=5.0))
    fast, ref = Simulation(s, seed=9, backend="numba"), ReferenceModel(s, seed=9)
    assert ref.rows[0] == fast.rows[0]
    assert np.array_equal(ref.count_cells(), fast.count_cells())


def test_continues_from_a_running_simulation():
    s = load_scenario(small_cart(size=24, run_in=10.0, follow_up=5.0))
    fast = Simulation(s, seed=2, backend="numba").run(until_step=100)
    ref = ReferenceModel.from_simulation(fast)
    fast.kills_since_sample = 0
    assert ref.step_index == 100 and ref.rows == [metrics_row(fast)]
    assert ref.day == fast.day and ref.infused_car_t == fast.infused_car_t
    ref.step()
    assert ref.step_index == 101 and ref.steps == 1


def test_the_molecular_phase_gives_the_fast_engines_bits():
    """Secretion, diffusion, decay, circulation and reactions are deterministic: from the
    same cells and layers, the reference's molecular phase equals the fast engine's."""
    s = load_scenario(small_cart(size=24, run_in=10.0, follow_up=5.0))
    fast = Simulation(s, seed=3, backend="numba").run(until_step=150)
    ref = ReferenceModel.from_simulation(fast)
    assert any(isinstance(a, BCell) and a.kind in (3, 4) for a in ref.agents)  # secreting
    for _ in range(3):
        ref.molecules()
        fast.phases.molecules(fast.state, fast.params)
        assert np.array_equal(ref.state.mol, fast.state.mol)


def test_same_seed_same_run_and_another_seed_another():
    def run(seed):
        return (
            ReferenceModel(
                SCENARIOS / "sle_untreated.toml",
                seed,
                overrides=[*TINY[:2], "time.run_in_days=3", "time.follow_up_days=2"],
            )
            .run()
            .timeseries
        )

    a, b, c = run(4), run(4), run(5)
    assert a.equals(b)
    assert not a.equals(c)


def test_the_python_rules_decide_as_the_compiled_ones():
    """Each rule the agents call, run as Python, returns what numba's compiled rule returns
    (random arguments over their ranges)."""
    host = build_params(load_scenario({"therapy": [{"type": "car_t", "day": 0}]}))
    p = host.k
    rng = np.random.default_rng(0)
    draw = lambda: int(rng.integers(0, 1 << 53))  # noqa: E731
    lut_n, lut_m = host.activation_luts(0.7)
    mol = rng.integers(0, 1 << 30, size=(host.layers.n_layers, 64))
    cases = [
        (
            common.bears,
            rules.bears,
            lambda: (p.markers, int(rng.integers(7)), int(rng.integers(32))),
        ),
        (
            move.away_from_home,
            rules.away_from_home,
            lambda: (int(rng.integers(7)), int(rng.integers(3)), p.home),
        ),
        (move.homeward, rules.homeward, lambda: (int(rng.integers(256)), draw())),
        (
            move.leaves_home,
            rules.leaves_home,
            lambda: (int(rng.integers(7)), int(rng.integers(3)), int(rng.integers(3)), p.home),
        ),
        (contact.kill_threshold, rules.kill_threshold, lambda: (int(rng.integers(128)), p.ip)),
        (contact.stimulated, rules.stimulated, lambda: (p.ip,)),
        (
            contact.antigen_at,
            rules.antigen_at,
            lambda: (int(rng.integers(host.layers.n_spec)), int(rng.integers(64)), mol, p.ip),
        ),
        (
            contact.activation_threshold,
            rules.activation_threshold,
            lambda: (int(rng.integers(3)), int(rng.integers(4096)), lut_n, lut_m),
        ),
        (contact.activated, rules.activated, lambda: (int(rng.integers(3)), p.ip)),
        (contact.differentiated, rules.differentiated, lambda: (draw(), p.ip)),
        (
            contact.division_threshold,
            rules.division_threshold,
            lambda: (
                int(rng.integers(7)),
                int(rng.integers(128)),
                int(rng.integers(-1, 40)),
                p.thr_divide,
                p.ip,
            ),
        ),
        (
            contact.daughter_states,
            rules.daughter_states,
            lambda: (
                int(rng.integers(7)),
                int(rng.integers(128)),
                int(rng.integers(5)),
                bool(rng.integers(2)),
            ),
        ),
        (lifecycle.production, rules.production, lambda: (int(rng.integers(3)), draw(), draw())),
        (lifecycle.specificity, rules.specificity, lambda: (draw(), p.spec_cum)),
        (
            lifecycle.cell_class,
            rules.cell_class,
            lambda: (int(rng.integers(7)), int(rng.integers(128))),
        ),
        (
            lifecycle.countdown,
            rules.countdown,
            lambda: (int(rng.integers(7)), int(rng.integers(-1, 40))),
        ),
        (
            lifecycle.secretion,
            rules.secretion,
            lambda: (
                int(rng.integers(7)),
                int(rng.integers(4)),
                p.secrete,
                p.secrete_row,
                p.secrete_spec,
            ),
        ),
        (
            molecules.portion,
            rules.portion,
            lambda: (int(rng.integers(1 << 43)), int(rng.integers(1 << 20))),
        ),
    ]
    for compiled, python, args in cases:
        for _ in range(200):
            a = args()
            assert _plain(python(*a)) == _plain(compiled(*a)), (compiled.__name__, a)


def _plain(value):
    """A rule's result as Python ints and bools, for comparing numpy and numba scalars."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return bool(value) if isinstance(value, (bool, np.bool_)) else int(value)

"""Invariants checked after every step of a short run that exercises every therapy:
one cell per site, no negative molecules, and the cell ledger balances per kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import immunesim.engine.phases as phases_module
import immunesim.state as state_module
from immunesim.engine import Simulation
from immunesim.model.cells import N_KINDS
from immunesim.model.fields import CLAIM_FREE, PERSISTENT_CELL_FIELDS
from immunesim.model.params import fixed
from immunesim.scenario import load_scenario
from tests.conftest import small_cart


def check_state(sim: Simulation) -> None:
    st = sim.state
    n, L = st.n, st.L
    live = st.alive[:n] != 0
    idx = np.flatnonzero(live)
    m = idx.size
    # every cell has a slot, never more live cells than sites; slots of cells that died in
    # earlier steps are counted and compacted once they are more than 1/COMPACT_SHARE of
    # the used slots; no claim is left over (the production phase keeps its per-site codes
    # in the claims)
    assert n <= st.capacity and m <= L * L
    assert n - m == st.dead, "the count of dead slots is wrong"
    assert st.dead * state_module.COMPACT_SHARE <= n, "compaction is overdue"
    assert all(a.shape == (st.capacity,) for a in st.cells)
    assert np.all(st.claim == CLAIM_FREE), "a claim outlived its phase"
    sites = st.y[idx].astype(np.int64) * L + st.x[idx]
    # never two cells on a site, and the occupancy map agrees with the cell arrays
    assert np.unique(sites).size == m, "two cells share a site"
    assert np.array_equal(st.occ[sites], idx), "occupancy map disagrees with cells"
    assert np.count_nonzero(st.occ >= 0) == m, "occupied sites without a live cell"
    assert np.unique(st.uid[:n]).size == n, "duplicate uid"
    assert np.all((st.x[:n] >= 0) & (st.x[:n] < L) & (st.y[:n] >= 0) & (st.y[:n] < L))
    # molecular quantities never go negative
    assert st.mol.min() >= 0, "negative molecular quantity"
    # births - deaths + conversions in - out == live count, per kind
    counts = np.bincount(st.kind[idx], minlength=N_KINDS)
    led = st.ledger
    assert np.array_equal(led[:, 0] - led[:, 1] + led[:, 2] - led[:, 3], counts), (
        f"ledger {led.tolist()} does not balance counts {counts.tolist()}"
    )


def _tight_slots(mp: pytest.MonkeyPatch) -> None:
    """States keep no spare slots: the cell arrays grow in nearly every phase that adds
    cells (production, division, infusion)."""
    mp.setattr(state_module, "SLOT_HEADROOM", 0.0)
    mp.setattr(state_module, "MIN_SPARE_SLOTS", 0)


def _course() -> Simulation:
    return Simulation(load_scenario(small_cart(size=32, run_in=12, follow_up=16)), seed=3)


@pytest.fixture(scope="module")
def stepped() -> tuple[Simulation, int]:
    """The short course with tight slots, checked after every step; and how often its cell
    arrays grew."""
    grew = 0
    with pytest.MonkeyPatch.context() as mp:
        _tight_slots(mp)
        sim = _course()
        check_state(sim)
        while not sim.finished:
            capacity = sim.state.capacity
            sim.step()
            check_state(sim)
            grew += sim.state.capacity != capacity
    return sim, grew


def test_invariants_hold_every_step(stepped):
    # the run exercised every phase: cells were born, died and converted
    sim, grew = stepped
    led = sim.state.ledger
    assert led[:, 1].sum() > 0 and led[:, 2].sum() > 0
    kinds = {e.kind for e in sim.events}
    assert {"lymphodepletion", "car_t", "vaccination", "anti_cd20"} <= kinds
    assert grew > 10  # the cell arrays grew in many steps, and the invariants held


def test_the_number_of_cell_slots_changes_no_result(stepped):
    """The same course with a slot per site from the start (as on a GPU) has the same cells
    in the same slots, the same sites and layers, series and events: the slots a state
    keeps and when its arrays grow are invisible to the model."""
    tight, _ = stepped
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(state_module, "MIN_SPARE_SLOTS", 10**9)
        full = _course()
        assert full.state.capacity == full.state.L**2
        full.run()
    a, b = tight.state, full.state
    assert full.state.capacity == full.state.L**2 > a.capacity
    assert (a.n, a.next_uid) == (b.n, b.next_uid)
    for name in PERSISTENT_CELL_FIELDS:
        np.testing.assert_array_equal(getattr(a, name)[: a.n], getattr(b, name)[: b.n], name)
    for name in ("occ", "mol", "claim", "ledger"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
    pd.testing.assert_frame_equal(pd.DataFrame(tight.rows), pd.DataFrame(full.rows))
    assert tight.events == full.events


def _by_uid(sim: Simulation) -> dict[str, np.ndarray]:
    """The live cells' persistent fields in uid order, and the occupancy map as uids."""
    st = sim.state
    live = np.flatnonzero(st.alive[: st.n] != 0)
    order = live[np.argsort(st.uid[live])]
    out = {name: getattr(st, name)[order] for name in PERSISTENT_CELL_FIELDS}
    out["occ"] = np.where(st.occ >= 0, st.uid[np.maximum(st.occ, 0)], -1)
    return out


def test_when_compaction_runs_changes_no_result(stepped):
    """The short course compacting after every step with a death, and compacting only when
    half the used slots hold dead cells, gives the same live cells (by uid, with the same
    fields and sites), layers, ledger, series and events as the default (compaction when
    more than a sixteenth of the slots are dead): a cell's slot is seen by nothing but
    itself."""
    default, _ = stepped
    runs, compactions = {}, {}
    compact = phases_module.Phases.compact
    for share in (10**9, 2):
        calls = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(phases_module, "COMPACT_SHARE", share)
            mp.setattr(state_module, "COMPACT_SHARE", share)
            mp.setattr(
                phases_module.Phases, "compact", lambda *a, calls=calls: calls.append(compact(*a))
            )
            runs[share] = sim = _course()
            while not sim.finished:
                sim.step()
                check_state(sim)
        compactions[share] = len(calls)
    # compaction after every step with a death (hundreds), and a few times with dead slots
    # lingering between
    assert compactions[10**9] > 100 > 10 * compactions[2] > 0
    assert runs[10**9].state.dead == 0 and runs[2].state.dead > 0
    ref = _by_uid(default)
    for share, sim in runs.items():
        got = _by_uid(sim)
        for name, a in ref.items():
            np.testing.assert_array_equal(got[name], a, f"{name} (share {share})")
        for name in ("mol", "ledger"):
            np.testing.assert_array_equal(getattr(sim.state, name), getattr(default.state, name))
        assert sim.state.next_uid == default.state.next_uid
        pd.testing.assert_frame_equal(pd.DataFrame(sim.rows), pd.DataFrame(default.rows))
        assert sim.events == default.events


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
    # a diffusion sub-step before the step's last moves molecules and gives nothing away
    dst = np.empty_like(st.mol)
    t = molecules.Transport(st.L, fixed(0.2), dst, zero, zero, 0)
    pool = numba_cpu.for_sites(molecules.diffuse, n_layers, t, st.cells, st.sites, k, n_layers)
    assert np.array_equal(dst.sum(axis=1), before) and not pool.any()
    t = t._replace(last=1)
    pool = numba_cpu.for_sites(molecules.diffuse, n_layers, t, st.cells, st.sites, k, n_layers)
    assert np.array_equal(dst.sum(axis=1), before)
    assert not np.array_equal(dst, st.mol)  # something moved
    assert np.all(pool > 0)
    share = pool // (st.L * st.L)
    rest = pool - share * st.L * st.L
    # the exchange with the circulation alone: no binding, damage or release, no tissue
    k = k._replace(fp=np.zeros_like(k.fp), fx=np.zeros_like(k.fx))
    mol = dst.copy()
    sites = st.sites._replace(mol=mol, zone=np.zeros_like(st.zone))
    numba_cpu.for_sites(
        molecules.exchange, 1, t._replace(share=share, rest=rest), st.cells, sites, k
    )
    assert np.array_equal(mol.sum(axis=1), before)


def _diffuse_by_hand(mol, L, d, diffuses, decay, circulate, last):
    """The 5-point diffusion and decay of every layer, and each layer's gift to the
    circulation, in numpy (:func:`immunesim.kernels.molecules.diffuse`, written apart)."""
    from immunesim.kernels.molecules import FRAC_BITS

    def portion(q, f):
        return (q * f) >> FRAC_BITS

    mol = mol.astype(np.int64)  # the engine computes in int64 whatever it stores
    out = np.empty_like(mol)
    pool = np.zeros(mol.shape[0], np.int64)
    for layer in range(mol.shape[0]):
        q = mol[layer].reshape(L, L)
        dd = d if diffuses[layer] else 0
        gone = portion(q, dd)
        new = q.copy()
        # each site sends a portion to each neighbour it has, and receives theirs
        new[:, 1:] += gone[:, :-1] - gone[:, 1:]
        new[:, :-1] += gone[:, 1:] - gone[:, :-1]
        new[1:, :] += gone[:-1, :] - gone[1:, :]
        new[:-1, :] += gone[1:, :] - gone[:-1, :]
        if last:
            new = new - portion(new, decay[layer])
            pool[layer] = portion(new, circulate[layer]).sum()
        out[layer] = new.ravel()
    return out, pool


@pytest.mark.parametrize("how", ["site map", "row blocks", "row blocks in place"])
@pytest.mark.parametrize("L", [1, 2, 3, 17, 40])
@pytest.mark.parametrize("last", [0, 1])
def test_the_site_map_diffuses_every_site_and_tallies_every_gift(L, last, how):
    """The CPU site map of diffusion over every layer and site, and the CPU's diffusion in
    blocks of rows (what a step runs), give exactly the 5-point stencil and the per-layer
    sums to the circulation written in numpy, into other arrays or (the blocks of rows, as
    a CPU step runs them) in place, at lattice sides whose rows have no interior
    site (1, 2) or one (3), and with a last block of rows shorter than the others (40); the
    layers are sparse (and one is empty), so that the tally's runs of one bin meet zero
    values at changes of layer. Sides 1-3 run serially, 17 and 40 in parallel."""
    from immunesim.backends import numba_cpu
    from immunesim.kernels import molecules

    sim = Simulation(load_scenario(small_cart(size=24)), seed=1)
    st, p = sim.state, sim.params
    n_layers = st.mol.shape[0]
    rng = np.random.default_rng(L)
    mol = rng.integers(0, 10**9, (n_layers, L * L)) * (rng.random((n_layers, L * L)) < 0.3)
    mol = mol.astype(st.mol.dtype)
    mol[2] = 0  # a whole layer without molecules between layers with some
    decay = np.array([fixed(0.01 * (i + 1)) for i in range(n_layers)], np.int64)
    circulate = np.array([fixed(0.02 * (i % 3)) for i in range(n_layers)], np.int64)
    diffuses = (np.arange(n_layers) % 4 != 1).astype(np.uint8)
    k = p.k._replace(decay=decay, circulate=circulate, diffuses=diffuses)
    dst = np.full_like(mol, -1)
    zero = np.zeros(n_layers, np.int64)
    t = molecules.Transport(L, fixed(0.2), dst, zero, zero, last)
    sites = st.sites._replace(mol=mol)
    if how == "site map":
        pool = numba_cpu.for_sites(molecules.diffuse, n_layers, t, st.cells, sites, k, n_layers)
    elif how == "row blocks":
        pool = numba_cpu.diffuse(t, st.cells, sites, k, n_layers)
    else:
        dst = mol.copy()
        t, sites = t._replace(dst=dst), sites._replace(mol=dst)
        assert numba_cpu.spare_mol(sim.state) is sim.state.mol  # a CPU step diffuses in place
        pool = numba_cpu.diffuse(t, st.cells, sites, k, n_layers)
    want, want_pool = _diffuse_by_hand(mol, L, fixed(0.2), diffuses, decay, circulate, last)
    assert np.array_equal(dst, want)
    assert np.array_equal(pool, want_pool)
    if last and L == 17:
        assert np.count_nonzero(want_pool) >= n_layers // 2  # the tally had sums to make


@pytest.mark.parametrize("L", [3, 17, 40])
def test_diffusion_near_the_int32_limit_is_the_stencil(L):
    """Layers at and near the int32 limit (``MOL_MAX``), where a site's value before decay
    may exceed the limit by the rounding of the portions: the CPU's blocks of rows (in
    place, with the 32-bit products of ``portion_u32``) store exactly the 5-point stencil's
    values and gifts written in numpy, capped at the limit, and flag exactly the layers
    that exceed it. Diffusion averages, so it cannot take a site far above the limit
    (``molecules.site_after``)."""
    from immunesim.backends import numba_cpu
    from immunesim.kernels import molecules
    from immunesim.model.params import MOL_MAX

    sim = Simulation(load_scenario(small_cart(size=24)), seed=1)
    st, p = sim.state, sim.params
    n_layers = st.mol.shape[0]
    rng = np.random.default_rng(L)
    mol = np.full((n_layers, L * L), MOL_MAX, np.int64)
    below = rng.random((n_layers, L * L)) < 0.5
    mol[below] -= rng.integers(0, 2**30, below.sum())
    mol = mol.astype(st.mol.dtype)
    decay = np.array([fixed(0.002) * (i % 2) for i in range(n_layers)], np.int64)
    circulate = np.full(n_layers, fixed(0.01), np.int64)
    diffuses = np.ones(n_layers, np.uint8)
    k = p.k._replace(decay=decay, circulate=circulate, diffuses=diffuses)
    zero = np.zeros(n_layers, np.int64)
    for d in (fixed(0.2), fixed(0.25)):
        dst = mol.copy()
        saturated = np.zeros_like(st.sites.saturated)
        sites = st.sites._replace(mol=dst, saturated=saturated)
        t = molecules.Transport(L, d, dst, zero, zero, 1)
        pool = numba_cpu.diffuse(t, st.cells, sites, k, n_layers)
        want, _ = _diffuse_by_hand(mol, L, d, diffuses, decay, circulate, 1)
        capped = np.minimum(want, MOL_MAX)
        assert np.array_equal(dst, capped)
        assert np.array_equal(saturated[:n_layers] != 0, (want > MOL_MAX).any(axis=1))
        gifts = (capped * circulate[:, None]) >> molecules.FRAC_BITS
        assert np.array_equal(pool, gifts.sum(axis=1))
        before_decay, _ = _diffuse_by_hand(mol, L, d, diffuses, 0 * decay, circulate, 1)
        assert before_decay.max() > MOL_MAX - 2**20  # the test reaches the limit


@pytest.mark.parametrize("dt_hours", [0.5, 1.0, 2.0, 6.0])
def test_diffusion_spreads_by_its_coefficient_whatever_the_time_step(dt_hours):
    """A point release spreads with variance 2 D t per axis (in sites squared) after t days,
    at any time step: the diffusion coefficient is physical and large steps are divided into
    sub-steps. Tolerance: 1% (integer rounding of the amounts moved; 2 x 10**9 units released
    so that rounding is negligible) plus the scheme's discreteness, which is exact for the
    variance of the 5-point stencil away from the border."""
    from immunesim.backends import numba_cpu
    from immunesim.engine.parameters import diffusion_per_substep
    from immunesim.kernels import molecules
    from immunesim.scenario import SITE_UM

    scen = small_cart(size=40)
    scen["time"]["dt_hours"] = dt_hours
    scen["molecules"] = {"diffusion_um2_per_day": 2000.0}
    s = load_scenario(scen)
    sim = Simulation(s, seed=1)
    st, p = sim.state, sim.params
    frac, n_sub = diffusion_per_substep(s)
    assert frac <= 0.2 + 1e-12
    mol = np.zeros((1, st.L * st.L), st.mol.dtype)
    centre = (st.L // 2) * st.L + st.L // 2
    mol[0, centre] = 2 * 10**9
    k = p.k._replace(diffuses=np.ones(1, np.uint8), decay=np.zeros(1, np.int64))
    zero = np.zeros(1, np.int64)
    days = 1.0
    for _ in range(int(round(days * 24 / dt_hours)) * n_sub):
        dst = np.empty_like(mol)
        t = molecules.Transport(st.L, fixed(frac), dst, zero, zero, 0)
        numba_cpu.for_sites(molecules.diffuse, 1, t, st.cells, st.sites._replace(mol=mol), k, 1)
        mol = dst
    q = mol[0].reshape(st.L, st.L).astype(np.float64)
    x = np.arange(st.L) - st.L // 2
    var_x = (q.sum(axis=0) * x**2).sum() / q.sum()
    expected = 2 * 2000.0 * days / SITE_UM**2
    assert var_x == pytest.approx(expected, rel=0.01)


def _car_t_positions(sim) -> dict[int, tuple[int, int]]:
    from immunesim.model.cells import Kind

    st = sim.state
    n = st.n
    c = st.cells
    live = (c.alive[:n] != 0) & (c.kind[:n] == Kind.CAR_T)
    return {
        int(u): (int(x), int(y))
        for u, x, y in zip(c.uid[:n][live], c.x[:n][live], c.y[:n][live], strict=True)
    }


def _spread_in_a_day(dt_hours: float) -> tuple[float, float]:
    """Mean squared displacement (sites^2) of free CAR-T cells over one day, and their
    move rate."""
    scen = {
        "lattice": {"size": 200},
        "time": {"dt_hours": dt_hours, "run_in_days": 0.0, "follow_up_days": 2.0},
        "initial": {"naive_b": 0, "memory_b": 0, "t_helper": 0, "llpc": 0, "damage": 0},
        "production": {"naive_b_per_site_per_day": 0, "t_helper_per_site_per_day": 0},
        "therapy": [{"type": "car_t", "day": 0.0, "dose_per_kg": 2.86e7}],
    }
    s = load_scenario(scen)
    sim = Simulation(s, seed=3)
    sim.step()
    start = _car_t_positions(sim)
    assert len(start) > 1500
    for _ in range(int(round(24 / dt_hours))):
        sim.step()
    end = _car_t_positions(sim)
    both = [u for u in start if u in end]
    d2 = [(end[u][0] - start[u][0]) ** 2 + (end[u][1] - start[u][1]) ** 2 for u in both]
    return float(np.mean(d2)), s.cells.car_t.move_rate_per_day


def test_cells_move_at_their_rate_whatever_the_time_step():
    """Free CAR-T cells (no home, no targets, 5% of the sites taken) spread by the same mean
    squared displacement in a day at time steps of 0.5, 2 and 6 hours, although at 2 and 6
    hours a cell makes more than one move a step (in sub-steps). Tolerances: each within 8%
    of their mean (the standard error over some 1,700 cells is about 2.5%; seeds 3-5 at
    0.5-6 h spread by 19.4-21.3), and the mean within 15% of 1.5 sites^2 a move (the mean of
    the 8 Moore steps) times the move rate, less the moves refused by an occupied site or the
    border (some 7%). One draw a step (at most one move) gave 4 moves a day at a 6-hour step:
    a quarter of the spread."""
    spreads = {dt: _spread_in_a_day(dt) for dt in (0.5, 2.0, 6.0)}
    mean = np.mean([m for m, _ in spreads.values()])
    for dt, (msd, _) in spreads.items():
        assert msd == pytest.approx(mean, rel=0.08), dt
    rate = spreads[0.5][1]
    assert mean == pytest.approx(1.5 * rate, rel=0.15)


def test_a_layer_past_its_int32_cap_is_held_there_flagged_and_reported():
    """The layers are int32. Plasma cells secreting 2000 times the default (2 x 10**5 units
    a day) fill their sites' antibody past the cap of 2048 units within days: the values
    are held at MOL_MAX (never wrapped round to negative ones), only the antibody layers are
    flagged, and the run says so once per layer: a SaturationWarning and a ``saturation``
    event naming the layers. The same scenario at the default secretion reaches none of it
    (the shipped scenarios stay below a third of the cap)."""
    from immunesim.engine import SaturationWarning
    from immunesim.model.params import MOL_MAX

    def run(secretion: float) -> tuple[Simulation, int]:
        sc = small_cart(size=24)
        sc.setdefault("molecules", {})["llpc_secretion_per_day"] = secretion
        sim = Simulation(load_scenario(sc), seed=1)
        peak = 0
        for _ in range(72):
            sim.step()
            assert sim.state.mol.min() >= 0
            peak = max(peak, int(sim.state.mol.max()))
        return sim, peak

    with pytest.warns(SaturationWarning, match="antibody_self"):
        sim, peak = run(2e5)
    # capped within the step (decay and the circulation then take some away), not wrapped
    assert sim.state.mol.dtype == np.int32 and MOL_MAX // 2 < peak <= MOL_MAX
    names = sim.params.layers.names()
    flagged = {names[r] for r in np.flatnonzero(sim.state.sites.saturated)}
    assert flagged and all(name.startswith("antibody_") for name in flagged)
    events = [e for e in sim.events if e.kind == "saturation"]
    assert len(events) == 1 and set(events[0].detail["layers"]) == flagged

    quiet, peak = run(100.0)
    assert peak < MOL_MAX // 3 and not quiet.state.sites.saturated.any()
    assert not [e for e in quiet.events if e.kind == "saturation"]


def test_a_resumed_run_does_not_report_a_saturated_layer_again(tmp_path):
    """A run checkpointed after its antibody layers saturated and resumed reports no layer a
    second time (no second warning), and ends with the events of the run without a stop."""
    import warnings

    from immunesim.engine import SaturationWarning

    sc = small_cart(size=24)
    sc.setdefault("molecules", {})["llpc_secretion_per_day"] = 2e5
    s = load_scenario(sc)
    with pytest.warns(SaturationWarning):
        whole = Simulation(s, seed=1).run(until_step=72)
    with pytest.warns(SaturationWarning):
        half = Simulation(s, seed=1).run(until_step=36)
    assert [e for e in half.events if e.kind == "saturation"]
    resumed = Simulation.load(half.save(tmp_path / "half.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)
        resumed.run(until_step=72)
    assert resumed.events == whole.events

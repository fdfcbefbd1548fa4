"""The CUDA backend computes the same bits as the numba CPU backend.

In CI the CUDA kernels run in numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set by
``tests/conftest.py``) with numpy arrays in place of CuPy; on a machine with a GPU,
``NUMBA_ENABLE_CUDASIM=0 pytest tests/backends`` runs the same tests on it. Every comparison
is exact: the two backends share the rule functions, the integer arithmetic and the
counter-based random numbers, and the GPU's conflict resolution (atomic min) and prefix sums
reproduce the CPU's serial passes.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

import immunesim.state as state_module
from immunesim.backends import BackendError, get_backend
from immunesim.engine import Simulation
from immunesim.engine.phases import Phases
from immunesim.model.cells import marker_mask
from immunesim.model.fields import PERSISTENT_CELL_FIELDS
from immunesim.model.params import MOL_MAX
from immunesim.scenario import load_scenario, read_toml
from tests.conftest import SCENARIOS

cuda_backend = pytest.importorskip("immunesim.backends.cuda")
if not cuda_backend.is_available():  # pragma: no cover - NUMBA_ENABLE_CUDASIM=0 without a GPU
    pytest.skip("no GPU and the CUDA simulator is off", allow_module_level=True)

#: The default scenario made small: a 16 x 16 lattice, conditioning and the infusion moved
#: into a short run-in, and a dose that puts CAR-T cells on such a lattice.
SHORT = [
    "lattice.size=16",
    "lattice.zones.unit_um=160",
    "time.run_in_days=1.5",
    "time.follow_up_days=1.5",  # every B cell is dead by day 1.5
    "therapy.0.stop_day=-1.25",
    "therapy.1.days=[-1.0, -0.5]",
    "therapy.1.kill_fraction_per_day=0.2",
    "therapy.2.dose_per_kg=5e7",
]

CELL_ARRAYS = PERSISTENT_CELL_FIELDS


def short_scenario():
    return load_scenario(SCENARIOS / "sle_cd19_cart.toml", SHORT)


def assert_same_state(cpu, gpu) -> None:
    """Every cell, site and molecule array and the bookkeeping are bit-for-bit equal."""
    host = cuda_backend.to_host
    assert (cpu.n, cpu.next_uid) == (gpu.n, gpu.next_uid)
    for name in CELL_ARRAYS:
        np.testing.assert_array_equal(
            getattr(cpu, name)[: cpu.n], host(getattr(gpu, name))[: gpu.n], err_msg=name
        )
    for name in ("occ", "mol", "ledger", "claim"):
        np.testing.assert_array_equal(getattr(cpu, name), host(getattr(gpu, name)), err_msg=name)


@pytest.fixture(scope="module")
def mid_course():
    """A CPU simulation at the infusion: CAR-T cells next to B cells, so every phase (kills
    and CAR-T divisions included) has work to do."""
    sim = Simulation(short_scenario(), seed=7, backend="numba")
    sim.run(until_step=sim.scenario.run_in_steps)
    assert sim.infused_car_t > 0
    return sim


def _pair(sim):
    """The phases of each backend, and independent copies of a CPU state for each."""
    _, cpu = get_backend("numba")
    st_cpu = copy.deepcopy(sim.state)
    p_cpu = sim.params
    st_gpu, p_gpu = cuda_backend.prepare(copy.deepcopy(sim.state), sim.params)
    return Phases(cpu), st_cpu, p_cpu, Phases(cuda_backend), st_gpu, p_gpu


def _deplete(b, st, p, sim, step):
    thr = np.array([2**52, 2**51, 2**50], np.uint64)  # per-zone kill probability 1/2, 1/4, 1/8
    return int(b.deplete(st, p, sim.seed, step, marker_mask(("CD19", "CD3")), thr))


def _molecules_at_the_cap(b, st, p, sim, step):
    """The molecules phase with every layer a few units below its int32 cap at every third
    site: diffusion, circulation and reactions push some of them over it, and both
    backends cap the same values and flag the same layers."""
    st.sites.mol[:, ::3] = MOL_MAX - 5
    b.molecules(st, p)
    flags = b.b.to_host(st.sites.saturated).tolist()
    assert any(flags)
    return flags


PHASES = {
    "produce": lambda b, st, p, sim, step: b.produce(st, p, sim.seed, step, 2**50),
    "move": lambda b, st, p, sim, step: b.move(st, p, sim.seed, step),
    "kill": lambda b, st, p, sim, step: int(b.kill(st, p, sim.seed, step)),
    "activate": lambda b, st, p, sim, step: b.activate(st, p, sim.seed, step),
    "divide": lambda b, st, p, sim, step: b.divide(st, p, sim.seed, step),
    "molecules": lambda b, st, p, sim, step: b.molecules(st, p),
    "molecules_at_the_cap": _molecules_at_the_cap,
    "deplete": lambda b, st, p, sim, step: _deplete(b, st, p, sim, step),
    # host immunity against the CAR's CD19 binder: the CAR-T cells whose CAR carries it
    "deplete_car": lambda b, st, p, sim, step: int(
        b.deplete(
            st,
            p,
            sim.seed,
            step,
            marker_mask(("CAR",)),
            np.array([2**52] * 3, np.uint64),
            car_mask=marker_mask(("CD19",)),
        )
    ),
    # compaction has work only where cells died: a depletion first
    "death": lambda b, st, p, sim, step: (
        _deplete(b, st, p, sim, step),
        b.death(st, p, sim.seed, step),
    ),
    "count_cells": lambda b, st, p, sim, step: b.count_cells(st, p).tolist(),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_each_phase_matches_the_cpu(mid_course, phase):
    """One phase applied to the same state on both backends, at several steps (so that
    different random draws and conflicts are exercised), gives identical states and returns."""
    cpu, st_cpu, p_cpu, gpu, st_gpu, p_gpu = _pair(mid_course)
    run = PHASES[phase]
    changed = False
    for k in range(3):
        step = mid_course.step_index + 1 + k
        before = copy.deepcopy(st_cpu)
        got_cpu = run(cpu, st_cpu, p_cpu, mid_course, step)
        got_gpu = run(gpu, st_gpu, p_gpu, mid_course, step)
        assert got_cpu == got_gpu
        assert_same_state(st_cpu, st_gpu)
        changed |= not all(
            np.array_equal(getattr(before, f), getattr(st_cpu, f))
            for f in ("x", "y", "kind", "age", "alive", "mol", "ledger", "occ")
        )
        changed |= bool(got_cpu)
    assert changed, f"phase {phase} did nothing here: the comparison would prove nothing"


def test_niche_displacement_matches_the_cpu():
    """Competition for marrow niches on a hand-made state in which many plasmablasts stand
    next to resident plasma cells, some residents with several (conflicts), at 2 a day
    (draws decide who proposes): three steps of the phase give the same bits, and plasma
    cells were displaced."""
    from tests.invariants.test_niche_competition import _contested

    sim = _contested(2.0)
    cpu, st_cpu, p_cpu, gpu, st_gpu, p_gpu = _pair(sim)
    before = st_cpu.ledger.copy()
    for k in range(3):
        cpu.displace(st_cpu, p_cpu, sim.seed, sim.step_index + 1 + k)
        gpu.displace(st_gpu, p_gpu, sim.seed, sim.step_index + 1 + k)
        assert_same_state(st_cpu, st_gpu)
    assert (st_cpu.ledger - before).sum() > 0


@pytest.mark.slow
def test_a_short_sle_cd19_cart_run_and_a_second_product_match_the_cpu(monkeypatch):
    """The whole default scenario, shortened: conditioning, infusion, expansion, and a BCMA
    product after the CD19 one (from its infusion on, the kill in blood counts the CAR-T
    cells by receptor, read from the cell arrays, on the device for CUDA); the time series,
    the events and the final state are identical on both backends. (One run covers both:
    the simulator takes half a minute a run.) The CUDA run keeps no spare cell slot, so its
    arrays grow whenever cells are born (room made inside the appends, once their count is
    read), while the CPU's hold a slot per site at this size: the slots change no bit."""
    data = read_toml(SCENARIOS / "sle_cd19_cart.toml")
    data.pop("variability", None)
    first = next(t for t in data["therapy"] if t["type"] == "car_t")
    data["therapy"].append(
        {**first, "day": 0.25, "targets": ["BCMA"], "label": "BCMA", "dose_per_kg": 5e7}
    )
    s = load_scenario(data, SHORT)
    cpu = Simulation(s, seed=3, backend="numba").run()
    monkeypatch.setattr(state_module, "SLOT_HEADROOM", 0.0)
    monkeypatch.setattr(state_module, "MIN_SPARE_SLOTS", 0)
    grown = []
    reserve = cuda_backend.reserve

    def counted(state, count):
        capacity = state.capacity
        reserve(state, count)
        grown.append(state.capacity > capacity)

    monkeypatch.setattr(cuda_backend, "reserve", counted)
    gpu = Simulation(s, seed=3, backend="cuda").run()
    assert cpu.state.capacity == 16 * 16 > gpu.state.capacity
    assert sum(grown) > 10 and gpu.state.aux["spare"].uid.shape == (gpu.state.capacity,)
    assert cpu.backend_name == "numba" and gpu.backend_name == "cuda"
    assert max(r["car_t"] for r in cpu.rows) > 0 and sum(r["kills"] for r in cpu.rows) > 0
    assert set(cpu.count_car_t()) == {marker_mask(["CD19"]), marker_mask(["BCMA"])}
    assert gpu.count_car_t() == cpu.count_car_t()
    assert cpu.rows == gpu.rows
    assert [dataclasses.astuple(e) for e in cpu.events] == [
        dataclasses.astuple(e) for e in gpu.events
    ]
    assert_same_state(cpu.state, gpu.state)


def test_prepare_copies_and_leaves_the_host_state_alone(mid_course):
    st, _ = cuda_backend.prepare(mid_course.state, mid_course.params)
    st.mol[0, 0] += 12345
    assert cuda_backend.to_host(st.mol)[0, 0] != mid_course.state.mol[0, 0]


def test_auto_never_picks_the_simulator():
    """``numba.cuda.is_available()`` is true under the simulator; ``auto`` must not be
    fooled into running on it."""
    if cuda_backend.real_gpu():  # pragma: no cover - on a GPU machine auto takes the GPU
        assert get_backend("auto")[0] == "cuda"
    else:
        assert cuda_backend.SIMULATED
        assert get_backend("auto")[0] == "numba"
        assert get_backend("cuda")[0] == "cuda"  # asked for by name, the simulator runs


def test_cuda_without_a_gpu_or_the_simulator_is_refused(monkeypatch):
    monkeypatch.setattr(cuda_backend, "SIMULATED", False)
    monkeypatch.setattr(cuda_backend, "real_gpu", lambda: False)
    with pytest.raises(BackendError, match=r"immunesim\[gpu\]"):
        get_backend("cuda")


def test_a_checkpoint_goes_on_with_the_same_bits_on_either_backend(mid_course, tmp_path):
    """A CPU simulation saved at the infusion and loaded on the CUDA backend (and on the
    CPU) continues exactly as the CPU simulation that was never saved."""
    path = mid_course.save(tmp_path / "mid.npz")
    until = mid_course.step_index + 6
    whole = Simulation(short_scenario(), seed=mid_course.seed, backend="numba")
    whole.run(until_step=until)  # the same run as mid_course, never saved
    for backend in ("cuda", "numba"):
        sim = Simulation.load(path, backend=backend)
        assert sim.backend_name == backend and sim.step_index == mid_course.step_index
        sim.run(until_step=until)
        assert sim.rows == whole.rows
        assert [dataclasses.astuple(e) for e in sim.events] == [
            dataclasses.astuple(e) for e in whole.events
        ]
        assert sim.course.factor == whole.course.factor
        assert_same_state(whole.state, sim.state)


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("L", [1, 3, 17])
@pytest.mark.parametrize("last", [0, 1])
def test_the_gpu_diffuses_in_place_as_the_stencil_says(L, last, threads, monkeypatch):
    """The CUDA backend's diffusion in place (a block of threads per few rows of a layer,
    the rows around them saved first) gives the 5-point stencil and each layer's gift to
    the circulation written in numpy: at sides with one site, one block of rows (3) and
    several, the last one shorter (17, blocks of 8 rows in the simulator); sparse layers,
    one empty, one that does not diffuse; with one thread a block (the simulator's runs)
    and with several, which wait for each other at each row (as on a GPU)."""
    monkeypatch.setattr(cuda_backend, "ROW_THREADS", threads)
    from immunesim.kernels import molecules
    from immunesim.model.params import fixed
    from tests.invariants.test_invariants import _diffuse_by_hand

    sim = Simulation(short_scenario(), seed=1)
    st, p = sim.state, sim.params
    n_layers = st.mol.shape[0]
    rng = np.random.default_rng(L)
    mol = rng.integers(0, 10**9, (n_layers, L * L)) * (rng.random((n_layers, L * L)) < 0.3)
    mol = mol.astype(st.mol.dtype)
    mol[2] = 0
    decay = np.array([fixed(0.01 * (i + 1)) for i in range(n_layers)], np.int64)
    circulate = np.array([fixed(0.02 * (i % 3)) for i in range(n_layers)], np.int64)
    diffuses = (np.arange(n_layers) % 4 != 1).astype(np.uint8)
    k = p.k._replace(decay=decay, circulate=circulate, diffuses=diffuses)
    _, on_device = cuda_backend.prepare(st, dataclasses.replace(p, k=k))
    dev = cuda_backend.asarray
    zero = dev(np.zeros(n_layers, np.int64))
    layers = dev(mol.copy())  # diffused in place (the simulator's arrays are numpy's)
    t = molecules.Transport(L, fixed(0.2), layers, zero, zero, last)
    sites = st.sites._replace(mol=layers, saturated=dev(np.zeros(n_layers, np.uint8)))
    pool = cuda_backend.diffuse(t, st.cells, sites, on_device.k, n_layers)
    want, want_pool = _diffuse_by_hand(mol, L, fixed(0.2), diffuses, decay, circulate, last)
    np.testing.assert_array_equal(cuda_backend.to_host(layers), want)
    np.testing.assert_array_equal(cuda_backend.to_host(pool), want_pool)

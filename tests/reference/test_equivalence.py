"""The Mesa reference and the fast engine agree in distribution, and the comparison has power.

Set-up. Both scenarios run shrunk through overrides (:data:`SMALL`): a 24 x 24 lattice, 3-hour
steps, a 20-day run-in, then 60 days (untreated) or 120 days (CD19 CAR-T, at 9e6 cells/kg so
that nine agents are infused on this lattice rather than one) of follow-up; seeds 1 to 14 on
the reference and 1 to 40 on the fast engine. The 28 reference runs take about two minutes
in a pool of two processes (on the 2-core machine, alone); the fast engine's, seconds.

Test. For each outcome, a two-sided Mann-Whitney U test of the 40 fast-engine values
against the 14 reference values, rejecting at ``ALPHA / number of outcomes`` (Bonferroni),
so that two equivalent engines fail a scenario's test with probability at most ALPHA = 1%.
The test is rank-based: it assumes nothing about the shape of the distributions, and an
endpoint not reached within the follow-up (a B-cell return) ranks after every value reached.

Tolerance. At alpha = 0.01 / 8 with 14 runs against 40, the test detects a shift between
the engines of 1.7 standard deviations of the seed-to-seed spread 94 times in a hundred and
one of 1.2 SD 58 times (simulated with normal samples; 20 against 20 gives 94 and 56: the
cheap fast-engine runs buy back the power of the reference runs left out); smaller
differences pass. That is the tolerance by design, because the engines do execute the
rules differently: the reference moves one agent at a time, each seeing what the agents
before it did, where the fast engine updates every cell from the state at the start of a
phase and settles conflicts by priority keys. Seeds 1-14 / 1-40 and 15-28 / 41-80 both
pass: smallest p-values 0.036 (untreated: tissue damage, 27% higher in the reference on
that set, 2% lower on the other) and 0.10, against thresholds of 0.0017 (untreated, 6
outcomes) and 0.00125 (CAR-T, 8 outcomes; smallest p 0.059 and 0.30).

Power. :func:`test_the_comparison_detects_a_different_model` runs the same test between the
reference and the fast engine given one deliberately different parameter, a third of the
autoreactive marrow output (untreated) or a quarter of the CAR-T dose, and requires it to
reject for the outcomes that parameter drives. On the two seed sets their p-values are at
most 7.2e-4 and 3.8e-4 (autoreactive memory B cells; tissue damage and disease score 1e-6
or less) and 6.8e-4 and 2e-5 (B-cell depletion day), below the thresholds. (A quarter of
the dose does not move the CAR-T peak enough to be told apart, p = 0.009 and 0.23: the
expansion is limited by its targets.)
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numba
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from immunesim.engine import Simulation
from immunesim.observe import endpoints, with_score
from immunesim.reference import run_reference
from immunesim.scenario import load_scenario
from tests.conftest import SCENARIOS

#: Seeded ensembles of whole runs: minutes each (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

#: Seeds of the reference's runs, and of the fast engine's (cheap, so more of them: 14
#: against 40 has the power of 20 against 20, for 30% fewer reference runs).
REFERENCE_SEEDS = tuple(range(1, 15))
FAST_SEEDS = tuple(range(1, 41))
#: Family-wise false-alarm rate of one scenario's comparison.
ALPHA = 0.01
SMALL = ["lattice.size=24", "lattice.zones.unit_um=240", "time.dt_hours=3", "time.run_in_days=20"]

Outcome = Callable[[pd.DataFrame, dict], float]


def _at(df: pd.DataFrame, day: float, col: str) -> float:
    return float(df.loc[df["day"] >= day - 1e-9, col].iloc[0])


def _reached(value: float | None) -> float:
    """An endpoint day, or +inf where it was not reached (ranks after every day)."""
    return math.inf if value is None else float(value)


#: Outcomes compared per scenario: name -> f(time series, endpoints).
UNTREATED_OUTCOMES: dict[str, Outcome] = {
    "b_cells_end_of_run_in": lambda df, e: _at(df, 0.0, "b_cells"),
    "b_cells_end": lambda df, e: float(df["b_cells"].iloc[-1]),
    "autoreactive_memory_b_end": lambda df, e: float(df["memory_b_self"].iloc[-1]),
    "anti_dsdna_end": lambda df, e: float(df["anti_dsdna"].iloc[-1]),
    "damage_end": lambda df, e: float(df["damage"].iloc[-1]),
    "disease_score_mean": lambda df, e: float(df.loc[df["day"] >= 0, "disease_score"].mean()),
}
CART_OUTCOMES: dict[str, Outcome] = {
    "b_cells_end_of_run_in": lambda df, e: _at(df, 0.0, "b_cells"),
    "car_t_peak": lambda df, e: float(df.loc[df["day"] >= 0, "car_t"].max()),
    "car_t_peak_day": lambda df, e: e["car_t_peak_day"],
    "b_cell_depletion_day": lambda df, e: _reached(e["b_cell_depletion_day"]),
    "b_cell_reconstitution_day": lambda df, e: _reached(e["b_cell_reconstitution_day"]),
    "anti_dsdna_day90_relative": lambda df, e: e["anti_dsdna_day90_relative"],
    "disease_score_day90": lambda df, e: _at(df, 90.0, "disease_score"),
    "b_cells_end": lambda df, e: float(df["b_cells"].iloc[-1]),
}

SCENARIO_RUNS = {
    "untreated": (
        SCENARIOS / "sle_untreated.toml",
        [*SMALL, "time.follow_up_days=60"],
        UNTREATED_OUTCOMES,
    ),
    "cd19_cart": (
        SCENARIOS / "sle_cd19_cart.toml",
        [*SMALL, "time.follow_up_days=120", "therapy.2.dose_per_kg=9e6"],
        CART_OUTCOMES,
    ),
}

#: One deliberately different parameter per scenario, for the power test.
DIFFERENT = {
    "untreated": "specificities.autoreactive_fraction=0.12",
    "cd19_cart": "therapy.2.dose_per_kg=2.25e6",
}


def outcomes(table: dict[str, Outcome], df: pd.DataFrame, ends: dict) -> dict[str, float]:
    return {name: float(f(df, ends)) for name, f in table.items()}


def fast_outcomes(name: str, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The outcomes of the fast engine over :data:`FAST_SEEDS` (one row per seed), on one numba
    thread (on a 32 x 32 lattice more threads only wait for each other)."""
    path, overrides, table = SCENARIO_RUNS[name]
    scenario = load_scenario(path, [*overrides, *extra])
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    rows = []
    try:
        for seed in FAST_SEEDS:
            sim = Simulation(scenario, seed=seed, backend="numba").run()
            df = with_score(pd.DataFrame(sim.rows), scenario)
            rows.append(outcomes(table, df, endpoints(df, scenario, sim.infused_car_t)))
    finally:
        numba.set_num_threads(threads)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reference() -> dict[str, pd.DataFrame]:
    """The reference's outcomes of both scenarios over :data:`REFERENCE_SEEDS`, in two
    processes."""
    jobs = [(name, seed) for name in SCENARIO_RUNS for seed in REFERENCE_SEEDS]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that ran numba threads
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        futures = [
            pool.submit(run_reference, SCENARIO_RUNS[n][0], s, SCENARIO_RUNS[n][1]) for n, s in jobs
        ]
        results = [f.result() for f in futures]
    rows: dict[str, list] = {name: [] for name in SCENARIO_RUNS}
    for (name, _), res in zip(jobs, results, strict=True):
        rows[name].append(outcomes(SCENARIO_RUNS[name][2], res.timeseries, res.endpoints))
    return {name: pd.DataFrame(r) for name, r in rows.items()}


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, float]:
    """Two-sided Mann-Whitney p-value of every outcome (column) of ``a`` against ``b``."""
    return {
        col: float(mannwhitneyu(a[col], b[col], alternative="two-sided").pvalue)
        for col in a.columns
    }


def threshold(n_outcomes: int) -> float:
    return ALPHA / n_outcomes


@pytest.mark.parametrize("name", list(SCENARIO_RUNS))
def test_reference_and_fast_engine_agree(reference, name):
    fast = fast_outcomes(name)
    p = compare(fast, reference[name])
    differ = {k: v for k, v in p.items() if v < threshold(len(p))}
    assert not differ, (
        f"{name}: the engines differ in {differ} (threshold {threshold(len(p)):.2g});\n"
        f"fast:\n{fast.describe().T}\nreference:\n{reference[name].describe().T}"
    )


@pytest.mark.parametrize(
    ("name", "must_differ"),
    [
        ("untreated", ("autoreactive_memory_b_end", "damage_end", "disease_score_mean")),
        ("cd19_cart", ("b_cell_depletion_day",)),
    ],
)
def test_the_comparison_detects_a_different_model(reference, name, must_differ):
    different = fast_outcomes(name, (DIFFERENT[name],))
    p = compare(different, reference[name])
    for outcome in must_differ:
        assert p[outcome] < threshold(len(p)), (outcome, p[outcome])

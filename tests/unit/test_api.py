"""The Python API: immunesim.run and the Mesa facade."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd
import pytest

import immunesim
from tests.conftest import SCENARIOS, small_cart


def test_public_namespace_is_pinned():
    assert sorted(immunesim.__all__) == sorted(
        [
            "ImmuneModel",
            "Results",
            "RunResult",
            "Scenario",
            "ScenarioError",
            "Simulation",
            "__version__",
            "compare",
            "load_run",
            "load_scenario",
            "load_sweep",
            "rescore",
            "run",
            "run_sweep",
            "write_run",
        ]
    )
    # every public name resolves (lazily), to the object of its module
    from immunesim.rescoring import rescore
    from immunesim.sweep import load_sweep

    assert immunesim.load_sweep is load_sweep
    assert immunesim.rescore is rescore


def test_run_returns_timeseries_and_endpoints(tmp_path):
    res = immunesim.run(small_cart(size=32, run_in=10, follow_up=12), seed=4, out=tmp_path)
    df = res.timeseries
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 23 and df["day"].tolist() == list(range(-10, 13))
    assert res.manifest["seed"] == 4 and res.manifest["status"] == "complete"
    assert res.endpoints["car_t_infused_agents"] > 0
    # what was returned is what was written
    written = pd.read_csv(tmp_path / "timeseries.csv")
    assert np.allclose(written["anti_dsdna"], df["anti_dsdna"], rtol=1e-9)
    assert written["b_cells"].tolist() == df["b_cells"].tolist()


def test_the_untracked_repertoire_weighs_in_total_igg_and_acts_on_nothing_else():
    """``specificities.other_antibody_weight`` multiplies the ``other`` class's antibody
    (agents that sample the repertoire the model does not follow) and so total IgG; every
    other column of the same seed is bit for bit the same."""
    sc = small_cart(size=32, run_in=6, follow_up=8)
    one = immunesim.run(sc | {"specificities": {"other_antibody_weight": 1.0}}, seed=3)
    ten = immunesim.run(sc | {"specificities": {"other_antibody_weight": 10.0}}, seed=3)
    a, b = one.timeseries, ten.timeseries
    assert (a["antibody_other"].iloc[1:] > 0).all()  # none on the first day: none secreted yet
    assert np.allclose(b["antibody_other"], 10 * a["antibody_other"], rtol=1e-12)
    assert np.allclose(b["total_igg"] - a["total_igg"], 9 * a["antibody_other"], rtol=1e-9)
    rest = [c for c in a.columns if c not in ("antibody_other", "total_igg")]
    pd.testing.assert_frame_equal(a[rest], b[rest])


def _small_kwargs():
    return {
        "lattice__size": 32,
        "lattice__zones__unit_um": 320,
        "time__run_in_days": 5,
        "time__follow_up_days": 3,
    }


def test_immune_model_behaves_like_a_mesa_model():
    model = immunesim.ImmuneModel(str(SCENARIOS / "sle_cd19_cart.toml"), seed=2, **_small_kwargs())
    assert isinstance(model, mesa.Model)
    assert model.steps == 0 and model.running
    for _ in range(3):
        model.step()
    assert model.steps == 3
    assert model.day == -2.0
    data = model.datacollector.get_model_vars_dataframe()
    assert len(data) == 4
    assert data["day"].tolist() == [-5.0, -4.0, -3.0, -2.0]
    # the reporters read the simulation's own metrics
    assert data["b_cells"].tolist() == model.timeseries()["b_cells"].tolist()
    while model.running:
        model.step()
    assert model.steps == 8 and model.day == 3.0


def test_timeseries_called_after_every_step_is_the_frame_of_all_rows():
    # timeseries() converts only the rows sampled since its last call; what it returns
    # must be the frame pandas makes of every row at once, therapy days and columns that
    # start at zero included (exact: same values, same dtypes)
    from immunesim.observe import with_score

    kw = {**_small_kwargs(), "time__run_in_days": 12, "time__follow_up_days": 20}
    model = immunesim.ImmuneModel(str(SCENARIOS / "sle_cd19_cart.toml"), seed=4, **kw)
    while model.running:
        model.step()
        got = model.timeseries()
        whole = with_score(pd.DataFrame(model.simulation.rows), model.scenario)
        pd.testing.assert_frame_equal(got, whole, check_exact=True)
    assert len(got) == 33 and got["car_t"].iloc[-1] > 0
    # rows replaced (a restored run): the frame is made again, not appended to
    model.simulation.rows = model.simulation.rows[:5]
    pd.testing.assert_frame_equal(
        model.timeseries(), with_score(pd.DataFrame(model.simulation.rows), model.scenario)
    )


def test_immune_model_runs_under_mesa_batch_run():
    results = mesa.batch_run(
        immunesim.ImmuneModel,
        parameters={
            "scenario": str(SCENARIOS / "sle_untreated.toml"),
            "seed": [1, 2],
            **_small_kwargs(),
        },
        iterations=1,
        max_steps=4,
        display_progress=False,
        data_collection_period=1,
    )
    df = pd.DataFrame(results)
    assert sorted(df["seed"].unique().tolist()) == [1, 2]
    # different seeds, different trajectories
    a = df[df["seed"] == 1]["b_cells"].tolist()
    b = df[df["seed"] == 2]["b_cells"].tolist()
    assert a != b


def test_batch_run_replicates_without_a_seed_differ_as_in_mesa():
    results = mesa.batch_run(
        immunesim.ImmuneModel,
        parameters={"scenario": str(SCENARIOS / "sle_untreated.toml"), **_small_kwargs()},
        iterations=2,
        max_steps=2,
        display_progress=False,
        data_collection_period=1,
    )
    df = pd.DataFrame(results)
    runs = [g["b_cells"].tolist() for _, g in df.groupby("RunId")]
    assert len(runs) == 2 and runs[0] != runs[1]


def test_immune_model_takes_seed_or_rng_as_mesa_models_do():
    path = str(SCENARIOS / "sle_untreated.toml")
    by_seed = immunesim.ImmuneModel(path, seed=5, **_small_kwargs())
    by_rng = immunesim.ImmuneModel(path, rng=5, **_small_kwargs())
    assert by_seed.seed == by_rng.seed == by_seed.simulation.seed == 5
    drawn = immunesim.ImmuneModel(path, rng=np.random.default_rng(3), **_small_kwargs())
    again = immunesim.ImmuneModel(path, rng=np.random.default_rng(3), **_small_kwargs())
    assert drawn.seed == again.seed  # a generator draws the seed, reproducibly
    fresh = [immunesim.ImmuneModel(path, **_small_kwargs()).seed for _ in range(2)]
    assert fresh[0] != fresh[1]  # none given: fresh entropy, kept in .seed
    twin = immunesim.ImmuneModel(path, seed=fresh[0], **_small_kwargs())
    assert twin.metrics == immunesim.ImmuneModel(path, seed=fresh[0], **_small_kwargs()).metrics
    with pytest.raises(ValueError, match="seed or rng"):
        immunesim.ImmuneModel(path, seed=1, rng=1)
    with pytest.raises(ValueError, match="seed"):
        immunesim.ImmuneModel(path, seed=-1)


def test_immune_model_can_start_at_treatment_from_the_run_in_cache(tmp_path):
    from immunesim.runin import RunInCache, fork_step

    path = str(SCENARIOS / "sle_cd19_cart.toml")
    kw = {**_small_kwargs(), "time__run_in_days": 12, "time__follow_up_days": 4}
    full = immunesim.ImmuneModel(path, seed=3, **kw)
    cache = RunInCache(tmp_path)
    first = immunesim.ImmuneModel(path, seed=3, start="treatment", cache=cache, **kw)
    again = immunesim.ImmuneModel(path, seed=3, start="treatment", cache=cache, **kw)
    s = full.scenario
    # the last sampled day before the standard of care stops (day -6): day -7
    assert first.day == again.day == -7.0 < s.day_of_step(fork_step(s))
    assert again.simulation.run_in["cache"] == "hit"
    while full.day < first.day:
        full.step()
    for model in (first, again):
        model.step()
    full.step()
    assert full.metrics == first.metrics == again.metrics
    with pytest.raises(ValueError, match="start"):
        immunesim.ImmuneModel(path, seed=3, start="day0", **kw)


def _blocks_by_hand(a: np.ndarray, block: int) -> np.ndarray:
    """Mean of ``a`` [y, x] over square blocks (the last ones narrower), as [x, y]."""
    side = -(-a.shape[0] // block)
    out = np.zeros((side, side))
    for bx in range(side):
        for by in range(side):
            out[bx, by] = a[by * block : (by + 1) * block, bx * block : (bx + 1) * block].mean()
    return out


@pytest.mark.parametrize("view_max,block", [(200, 1), (12, 3)])
def test_the_mesa_grid_shows_the_lattice_and_follows_the_steps(monkeypatch, view_max, block):
    """``ImmuneModel.grid``: one property layer per cell category holding the share of the
    sites of each grid cell that hold such a cell (0/1 at full resolution; 32 sites in
    blocks of 3 when the view is at most 12 wide), the zones and the damage tint, the same
    after steps as the engine's lattice."""
    from immunesim.mesa_model import GRID_LAYERS
    from immunesim.viz.animate import DAMAGE_SCALE
    from immunesim.viz.snapshots import lattice_picture

    monkeypatch.setattr("immunesim.mesa_model.GRID_VIEW_MAX", view_max)
    model = immunesim.ImmuneModel(str(SCENARIOS / "sle_cd19_cart.toml"), seed=2, **_small_kwargs())
    grid = model.grid
    side = -(-32 // block)
    assert grid.dimensions == (side, side)
    layers = grid._mesa_property_layers
    zone = model.simulation.state.zone.reshape(32, 32)
    seen = []
    for _ in range(3):
        cells, damage = lattice_picture(model.simulation)
        assert (cells > 0).sum() > 50
        for code, name in GRID_LAYERS.items():
            np.testing.assert_allclose(layers[name].data, _blocks_by_hand(cells == code, block))
        tint = np.clip(damage / DAMAGE_SCALE, 0, 1)
        np.testing.assert_allclose(layers["damage"].data, _blocks_by_hand(tint, block))
        np.testing.assert_array_equal(layers["zone"].data, np.rint(_blocks_by_hand(zone, block)))
        seen.append(cells.copy())
        model.step()
    assert not np.array_equal(seen[0], seen[-1])  # the cells moved, and the view with them


def test_mesa_space_renderer_draws_every_layer_of_the_grid():
    import matplotlib

    matplotlib.use("Agg")
    from mesa.visualization import SpaceRenderer

    from immunesim.mesa_model import GRID_LAYERS, propertylayer_portrayal

    model = immunesim.ImmuneModel(str(SCENARIOS / "sle_cd19_cart.toml"), seed=2, **_small_kwargs())
    ax = SpaceRenderer(model).render(propertylayer_portrayal=propertylayer_portrayal).canvas
    # the zones, the damage and every cell category, each an image over the lattice
    assert len(ax.images) == 2 + len(GRID_LAYERS)
    assert all(im.get_array().shape[:2] == (32, 32) for im in ax.images)

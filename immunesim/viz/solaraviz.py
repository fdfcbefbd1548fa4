"""Mesa's own ``SolaraViz`` page on :class:`~immunesim.mesa_model.ImmuneModel`.

``solara run immunesim.viz.solaraviz`` serves it (``pip install 'immunesim[mesa-viz]'``):
the lattice drawn by Mesa's ``SpaceRenderer`` from the property layers of
:attr:`ImmuneModel.grid <immunesim.mesa_model.ImmuneModel.grid>`, and the clinical course
by Mesa's ``make_plot_component`` from the model's ``DataCollector``, with Mesa's Step,
Play and Reset and a seed to choose. It runs the scenario of ``immunesim app``
(``$IMMUNESIM_APP_SCENARIO``, on ``$IMMUNESIM_APP_LATTICE`` sites a side) from the day
before the first therapy, through the run-in cache.

Each browser tab gets a model of its own. The page is built from these parts, for a page of
one's own::

    from mesa.visualization import SolaraViz, SpaceRenderer
    from immunesim import ImmuneModel
    from immunesim.mesa_model import propertylayer_portrayal
    from immunesim.viz.solaraviz import course_components

    model = ImmuneModel("scenarios/sle_cd19_cart.toml", seed=1, start="treatment")
    renderer = SpaceRenderer(model).render(propertylayer_portrayal=propertylayer_portrayal)
    page = SolaraViz(model, renderer, components=course_components())

Mesa 3.3's older ``make_space_component`` draws the grid too, given an ``agent_portrayal``
and a model with agents; the grid holds none (the cells live in the engine's arrays), and
with none that function fails inside Mesa, so the renderer is the way to draw it.
"""

from __future__ import annotations

from typing import Any

import solara
from mesa.visualization import SolaraViz, SpaceRenderer, make_plot_component

from immunesim.mesa_model import ImmuneModel, propertylayer_portrayal
from immunesim.plot import COLOURS
from immunesim.scenario import Scenario
from immunesim.viz.live import load_app_scenario

#: The course's plots: B cells and CAR-T (cell counts on the lattice), and anti-dsDNA.
COURSE_PLOTS: tuple[dict[str, str], ...] = (
    {"b_cells": COLOURS["b_cells"], "car_t": COLOURS["car_t"], "t_helper": COLOURS["t_helper"]},
    {"anti_dsdna": COLOURS["anti_dsdna"]},
)


def course_components() -> list[Any]:
    """Mesa plot components of the clinical course (:data:`COURSE_PLOTS`), one per plot."""
    return [make_plot_component(dict(measures)) for measures in COURSE_PLOTS]


def model_params(scenario: Scenario) -> dict[str, Any]:
    """SolaraViz's model parameters: the scenario and start fixed, the seed chosen."""
    return {
        "scenario": scenario,
        "start": "treatment",
        "backend": "numba",
        "seed": {"type": "SliderInt", "value": 1, "min": 1, "max": 100, "step": 1, "label": "Seed"},
    }


def make_page(scenario: Scenario | None = None, seed: int = 1) -> Any:
    """The SolaraViz page on a new model of ``scenario`` (the app's scenario by default)."""
    s = scenario if scenario is not None else load_app_scenario()
    model = ImmuneModel(s, seed=seed, start="treatment", backend="numba")
    renderer = SpaceRenderer(model, backend="matplotlib").render(
        propertylayer_portrayal=propertylayer_portrayal
    )
    return SolaraViz(
        model,
        renderer,
        components=course_components(),
        model_params=model_params(s),
        name=f"immunesim on Mesa: {s.name}",
    )


@solara.component
def Page() -> Any:
    """What ``solara run immunesim.viz.solaraviz`` serves: each browser tab its own model
    (built when the tab opens, not when this module is imported)."""
    return solara.use_memo(make_page, [])

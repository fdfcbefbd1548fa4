"""immunesim: agent-based simulation of the immune system and the CAR-T "immune reset".

Public API::

    import immunesim
    result = immunesim.run("scenarios/sle_cd19_cart.toml", seed=1)
    result.timeseries      # pandas DataFrame, one row per sampled step
    result.endpoints       # dict of clinical endpoints
"""

from immunesim.scenario import Scenario, ScenarioError, load_scenario

__version__ = "0.1.0"

__all__ = ["Scenario", "ScenarioError", "load_scenario", "__version__"]

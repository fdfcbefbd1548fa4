"""immunesim: agent-based simulation of the immune system and the CAR-T "immune reset".

Public API::

    import immunesim
    result = immunesim.run("scenarios/sle_cd19_cart.toml", seed=1)
    result.timeseries      # pandas DataFrame, one row per sampled step
    result.endpoints       # dict of clinical endpoints

    model = immunesim.ImmuneModel("scenarios/sle_cd19_cart.toml")   # a mesa.Model
"""

from immunesim import _jit_cache  # noqa: F401  (first: keys numba's cache by our sources)
from immunesim.engine import Simulation
from immunesim.mesa_model import ImmuneModel
from immunesim.runner import RunResult, run, write_run
from immunesim.scenario import Scenario, ScenarioError, load_scenario

__version__ = "0.1.0"

__all__ = [
    "ImmuneModel",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "__version__",
    "load_scenario",
    "run",
    "write_run",
]

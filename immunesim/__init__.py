"""immunesim: agent-based simulation of the immune system and the CAR-T "immune reset".

Public API::

    import immunesim
    result = immunesim.run("scenarios/sle_cd19_cart.toml", seed=1)
    result.timeseries      # pandas DataFrame, one row per sampled step
    result.endpoints       # dict of clinical endpoints

    model = immunesim.ImmuneModel("scenarios/sle_cd19_cart.toml")   # a mesa.Model

The names above are imported on first use, so that ``import immunesim.extend`` (what a
model extension imports) does not build the model before the extension is read.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from immunesim import _jit_cache  # noqa: F401  (first: keys numba's cache by our sources)

__version__ = "0.1.0"

_LAZY = {
    "ImmuneModel": "immunesim.mesa_model",
    "RunResult": "immunesim.runner",
    "Scenario": "immunesim.scenario",
    "ScenarioError": "immunesim.scenario",
    "Simulation": "immunesim.engine",
    "Results": "immunesim.results",
    "compare": "immunesim.compare",
    "load_run": "immunesim.results",
    "load_scenario": "immunesim.scenario",
    "load_sweep": "immunesim.sweep",
    "rescore": "immunesim.rescoring",
    "run_sweep": "immunesim.sweep",
    "run": "immunesim.runner",
    "write_run": "immunesim.runner",
}

if TYPE_CHECKING:  # pragma: no cover
    from immunesim.compare import compare
    from immunesim.engine import Simulation
    from immunesim.mesa_model import ImmuneModel
    from immunesim.rescoring import rescore
    from immunesim.results import Results, load_run
    from immunesim.runner import RunResult, run, write_run
    from immunesim.scenario import Scenario, ScenarioError, load_scenario
    from immunesim.sweep import load_sweep, run_sweep


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'immunesim' has no attribute {name!r}")


__all__ = [
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

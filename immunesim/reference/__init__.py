"""The model's rules executed the Mesa way: an oracle and a baseline, for small lattices.

:class:`ReferenceModel` is a plain :class:`mesa.Model`. Its cells are
:class:`~mesa.discrete_space.CellAgent` objects (:mod:`immunesim.reference.agents`) on an
:class:`~mesa.discrete_space.OrthogonalMooreGrid` without wrap-around, one agent per grid
cell; each phase of a step is a ``shuffle_do`` over the agents concerned, in a fresh random
order, every decision drawn from Mesa's ``model.random``. The molecular layers are the fast
engine's integer arrays, zones and niches property layers of the grid.

There is no second copy of the biology: the reference reads the same
:class:`~immunesim.model.params.Params`, decides with the scalar rules of
:mod:`immunesim.kernels` (:mod:`immunesim.reference.rules`), runs the therapy schedule with
the fast engine's own schedule and therapy effects (:mod:`immunesim.engine.course`), starts
from the fast engine's initial lattice and records
its metrics with :func:`immunesim.observe.metrics_row`, so its time series and endpoints
have the fast engine's columns and can be compared with them.

What it does differently is the execution: agents act one at a time and see what the
agents before them did, where the fast engine updates every cell from the state at the
start of a phase and settles conflicts by priority keys. So the two agree in distribution
(``tests/reference/test_equivalence.py`` tests that over seeds), not bit for bit. Per
cell-update it is some 30 times slower than the fast engine on one thread (``immunesim
bench`` measures the ratio on the same cells): meant for lattices of up to about 200 x 200
sites.

Example::

    from immunesim.reference import ReferenceModel

    model = ReferenceModel("scenarios/sle_cd19_cart.toml", seed=3,
                           overrides=["lattice.size=100", "time.run_in_days=10",
                                      "time.follow_up_days=30"])
    model.step()                          # one step of time.dt_hours
    result = model.run()                  # to the end: a RunResult
    result.timeseries, result.endpoints
"""

from immunesim.reference.agents import BCell, CarTCell, ImmuneCell, THelper
from immunesim.reference.model import ReferenceModel, run_reference

__all__ = ["BCell", "CarTCell", "ImmuneCell", "ReferenceModel", "THelper", "run_reference"]

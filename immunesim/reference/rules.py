"""The scalar rules of :mod:`immunesim.kernels`, as the reference's agents call them.

Every name here is a rule function of the kernels run as the plain Python it is written in
(its ``py_func``: the very source numba compiles for the fast engine), so the reference holds
no second copy of the biology. Compiled rules would cost numba's argument dispatch from
interpreted code, 0.5 to 2 microseconds a call and more than the rule itself.

Run as Python, a rule's numba casts (``nb.uint64(x)``, ``nb.int16(x)``) would build numpy
scalars through numba's type objects, at 3 microseconds each; here they are plain ``int``,
which is exact for the values the rules cast (thresholds in ``[0, 2**53]``, small counters).
The rules a rule calls (``car_t_generation``, ``portion``, ...) run as Python too.

The elementwise molecular rules (:func:`diffuse_decay`, :func:`circulate_site`,
:func:`portion`) take whole layers as numpy arrays. :func:`react_site` stays compiled (its
branches do not vectorise), and :func:`react_sites` calls it at every site in one compiled loop.
"""

from __future__ import annotations

import types
from typing import Any

import numba as nb
from numba.core.dispatcher import Dispatcher
from numba.core.registry import CPUDispatcher

from immunesim.kernels import common, contact, lifecycle, molecules, move

#: What ``nb`` means to a rule run as Python: numba's scalar casts as ``int``.
_PY_NUMBA = types.SimpleNamespace(int16=int, int64=int, uint64=int)


def python_rule(
    rule: Dispatcher[Any], _done: dict[Dispatcher[Any], types.FunctionType] | None = None
) -> types.FunctionType:
    """The Python function a numba rule was compiled from, with ``nb`` casts as ``int`` and
    the compiled rules it calls replaced by their Python functions likewise."""
    done = {} if _done is None else _done
    if rule in done:
        return done[rule]
    src = rule.py_func
    env = dict(src.__globals__)
    func = types.FunctionType(src.__code__, env, src.__name__, src.__defaults__, src.__closure__)
    func.__doc__ = src.__doc__
    done[rule] = func
    for name in src.__code__.co_names:
        value = env.get(name)
        if name == "nb":
            env[name] = _PY_NUMBA
        elif isinstance(value, CPUDispatcher):
            env[name] = python_rule(value, done)
    return func


# cells and markers
bears = python_rule(common.bears)

# movement
away_from_home = python_rule(move.away_from_home)
homeward = python_rule(move.homeward)
leaves_home = python_rule(move.leaves_home)

# contact
kill_threshold = python_rule(contact.kill_threshold)
stimulated = python_rule(contact.stimulated)
antigen_at = python_rule(contact.antigen_at)
activation_threshold = python_rule(contact.activation_threshold)
activated = python_rule(contact.activated)
differentiated = python_rule(contact.differentiated)
division_threshold = python_rule(contact.division_threshold)
daughter_states = python_rule(contact.daughter_states)
displacement_threshold = python_rule(contact.displacement_threshold)

# birth, death, secretion
production = python_rule(lifecycle.production)
specificity = python_rule(lifecycle.specificity)
cell_class = python_rule(lifecycle.cell_class)
countdown = python_rule(lifecycle.countdown)
secretion = python_rule(lifecycle.secretion)

# molecular layers: elementwise on whole layers; the reactions compiled, site by site
portion = python_rule(molecules.portion)
diffuse_decay = python_rule(molecules.diffuse_decay)
circulate_site = python_rule(molecules.circulate_site)
react_site = molecules.react_site


@nb.njit(cache=True)
def react_sites(mol, sat, zone, ip, fx, fp):  # pragma: no cover - compiled
    """:func:`react_site` at every site in turn (one compiled call a step, not one a site)."""
    for site in range(mol.shape[1]):
        react_site(site, mol, sat, zone, ip, fx, fp)


__all__ = [
    "activated",
    "activation_threshold",
    "antigen_at",
    "away_from_home",
    "bears",
    "circulate_site",
    "cell_class",
    "countdown",
    "daughter_states",
    "displacement_threshold",
    "differentiated",
    "diffuse_decay",
    "division_threshold",
    "homeward",
    "kill_threshold",
    "leaves_home",
    "portion",
    "production",
    "python_rule",
    "react_site",
    "react_sites",
    "secretion",
    "specificity",
    "stimulated",
]

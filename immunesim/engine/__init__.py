"""The engine: parameters, geometry and initial state of a run, the therapy schedule and
its effects, the phases of a step over a backend's primitives, and the simulation loop."""

from immunesim.engine.course import Course
from immunesim.engine.geometry import Geometry, build_zones
from immunesim.engine.simulation import PHASES, SaturationWarning, Simulation, warm_up
from immunesim.engine.therapies import Event

__all__ = [
    "PHASES",
    "Course",
    "Event",
    "Geometry",
    "SaturationWarning",
    "Simulation",
    "build_zones",
    "warm_up",
]

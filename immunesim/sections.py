"""Base classes and value types of the scenario schema (:mod:`immunesim.scenario`).

Imports nothing of immunesim, so that an extension (:mod:`immunesim.extend`) can declare the
schema of its therapy entries with them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A number >= 0.
NonNeg = Annotated[float, Field(ge=0.0)]
#: A number > 0.
Pos = Annotated[float, Field(gt=0.0)]
#: A number in [0, 1].
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    """A table of a scenario file: unknown keys are errors, values are checked when set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TherapyEntry(Section):
    """A ``[[therapy]]`` entry. A subclass declares ``type: Literal["<tag>"]`` and its keys."""

    label: str = Field("", description="Optional name shown in outputs.")


__all__ = ["Fraction", "NonNeg", "Pos", "Section", "TherapyEntry"]

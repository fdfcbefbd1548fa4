"""Extensions of the model description: kinds, layers and therapies from outside the package.

An extension is a Python module that defines any of

- ``KINDS``: a tuple of :class:`~immunesim.model.description.CellKind` (appended after the
  built-in kinds, so those keep their codes);
- ``LAYERS``: a tuple of :class:`~immunesim.model.description.Layer` (appended after the
  built-in layers);
- ``THERAPIES``: a tuple of :class:`~immunesim.model.therapy.TherapyEffect` subclasses, each
  with its ``schema`` (a :class:`~immunesim.sections.TherapyEntry` subclass).

It imports only :mod:`immunesim.extend` of immunesim (the derived tables are made after it
has been read). Extensions are named, comma-separated, in the environment variable
``IMMUNESIM_EXTENSIONS``, or installed with an entry point in the group
``immunesim.extensions``; they must be known before immunesim is imported, because the
compiled kernels are specialised to the number of kinds (the kernel cache is keyed by the
extensions' sources too).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

ENV = "IMMUNESIM_EXTENSIONS"
GROUP = "immunesim.extensions"


def names() -> tuple[str, ...]:
    """Module names of the extensions in use (the environment's, then installed ones)."""
    listed = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    for ep in entry_points(group=GROUP):
        if ep.value not in listed:
            listed.append(ep.value)
    return tuple(listed)


def source_files() -> list[Path]:
    """Source files of the extensions (found without importing them)."""
    files = []
    for name in names():
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ImportError(f"{ENV}: no module named {name!r} (check the name and sys.path)")
        files.append(Path(spec.origin))
    return files


@cache
def modules() -> tuple[ModuleType, ...]:
    """The extension modules, imported once."""
    return tuple(importlib.import_module(name) for name in names())


def declared(attr: str) -> tuple[Any, ...]:
    """Everything the extensions declare under ``attr`` (``KINDS``, ``LAYERS``,
    ``THERAPIES``), in the order of the extensions."""
    return tuple(item for m in modules() for item in getattr(m, attr, ()))


__all__ = ["ENV", "GROUP", "declared", "modules", "names", "source_files"]

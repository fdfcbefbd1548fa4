"""Execution backends and their registry.

A backend is a module that maps the scalar rules of :mod:`immunesim.kernels` over cells and
sites: ``deplete``, ``produce``, ``move``, ``kill``, ``activate``, ``divide``, ``molecules``,
``death``, ``count_cells``. ``auto`` picks the best available one.
"""

from __future__ import annotations

from types import ModuleType

#: Backends in order of preference for ``auto``.
BACKENDS = ("numba",)


class BackendError(RuntimeError):
    """A backend was asked for that is unknown or cannot run here."""


def _load(name: str) -> ModuleType:
    if name == "numba":
        from immunesim.backends import numba_cpu

        return numba_cpu
    raise BackendError(f"unknown backend {name!r}; expected one of auto, {', '.join(BACKENDS)}")


def available() -> dict[str, bool]:
    """Which backends can run on this machine."""
    out = {}
    for name in BACKENDS:
        try:
            out[name] = bool(_load(name).is_available())
        except Exception:  # pragma: no cover - an import failure means "not available"
            out[name] = False
    return out


def get_backend(name: str = "auto") -> tuple[str, ModuleType]:
    """Return ``(name, module)`` of a backend; ``auto`` takes the first available one."""
    if name == "auto":
        for cand in BACKENDS:
            mod = _load(cand)
            if mod.is_available():
                return cand, mod
        raise BackendError("no backend is available")  # pragma: no cover
    mod = _load(name)
    if not mod.is_available():
        raise BackendError(f"backend {name!r} is not available on this machine")
    return name, mod

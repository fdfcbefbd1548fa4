"""Execution backends and their registry: each backend module supplies the primitives of
:class:`immunesim.engine.contract.Backend`. ``auto`` takes the first eligible backend of
:data:`BACKENDS`: ``cuda`` on a machine with a real GPU (never numba's CUDA simulator, which
must be asked for by name), else ``numba``.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

#: Backends in order of preference for ``auto``.
BACKENDS = ("cuda", "numba")


class BackendError(RuntimeError):
    """A backend was asked for that is unknown or cannot run here."""


def _load(name: str) -> ModuleType:
    if name == "numba":
        from immunesim.backends import numba_cpu

        return numba_cpu
    if name == "cuda":
        try:
            from immunesim.backends import cuda
        except ImportError as exc:  # numba without its CUDA target
            raise BackendError(
                f"backend 'cuda' cannot be loaded ({exc}); install the GPU extra: "
                "pip install 'immunesim[gpu]'"
            ) from None
        return cuda
    raise BackendError(f"unknown backend {name!r}; expected one of auto, {', '.join(BACKENDS)}")


def available() -> dict[str, str | None]:
    """Each backend's description where it can run on this machine, else ``None``."""
    out: dict[str, str | None] = {}
    for name in BACKENDS:
        try:
            mod = _load(name)
            out[name] = mod.describe() if mod.is_available() else None
        except Exception:  # an import or driver failure means "not available"
            out[name] = None
    return out


def get_backend(name: str = "auto") -> tuple[str, ModuleType]:
    """Return ``(name, module)`` of a backend; ``auto`` takes the first eligible one."""
    if name == "auto":
        for cand in BACKENDS:
            if cand == "cuda" and importlib.util.find_spec("cupy") is None:
                continue  # no GPU arrays without CuPy: skip loading numba's CUDA target
            try:
                mod = _load(cand)
            except BackendError:
                continue
            if mod.auto_eligible():
                return cand, mod
        raise BackendError("no backend is available")  # pragma: no cover
    mod = _load(name)
    if not mod.is_available():
        reason = getattr(mod, "unavailable_reason", lambda: "")()
        raise BackendError(
            f"backend {name!r} is not available on this machine" + (f": {reason}" if reason else "")
        )
    return name, mod

"""Where numba keeps compiled kernels: a cache directory keyed by the kernel sources.

numba's ``cache=True`` re-validates a cached function only against its own source file, so
a change in a rule it calls from another module (``kernels/*.py``) would leave a stale
kernel in the cache. The cache therefore lives in a directory named after a hash of every
source file the compiled code depends on: any change there starts a fresh cache.

This module must run before any ``cache=True`` function is defined; ``immunesim/__init__``
imports it first.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba
from numba.core.caching import FunctionCache

from immunesim.model import extensions

_PKG = Path(__file__).resolve().parent
_SOURCES = ("rng.py", "model", "kernels", "backends")


def source_hash() -> str:
    """Short hash of the sources of compiled code, of the model extensions in use and of
    the numba version."""
    h = hashlib.sha256(numba.__version__.encode())
    for entry in _SOURCES:
        p = _PKG / entry
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(_PKG)).encode())
            h.update(f.read_bytes())
    # the kernels are specialised to the kinds and layers of the extensions in use
    for f in extensions.source_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def configure() -> Path:
    """Point numba's cache at ``<base>/<source hash>`` and return that directory.

    ``<base>`` is ``$NUMBA_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/immunesim/numba``
    (``~/.cache/immunesim/numba``).
    """
    base = os.environ.get("NUMBA_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "immunesim" / "numba")
    target = Path(base) / source_hash()
    numba.config.CACHE_DIR = str(target)  # type: ignore[attr-defined]
    return target


CACHE_DIR = configure()


class _KernelCache(FunctionCache):
    """numba's cache for a kernel made by a factory around phase bodies.

    numba keys a closure's cache entry by its pickled closure variables, which for a
    compiled function hold an identity that changes with every process, so the kernel
    would compile again in every process. This cache keys it by the names of the bodies
    instead; the cache directory is keyed by every source file (:func:`source_hash`), so a
    change to a body still gives a fresh entry.
    """

    def __init__(self, py_func, name: str):
        super().__init__(py_func)
        self._name = name

    def _index_key(self, sig, codegen):
        def digest(b: bytes) -> str:
            return hashlib.sha256(b).hexdigest()

        return (
            sig,
            codegen.magic_tuple(),
            (digest(self._py_func.__code__.co_code), digest(self._name.encode())),
        )


def cache_kernel(kernel, *bodies) -> None:
    """Give a numba kernel that a factory made around ``bodies`` (compiled functions) a disk
    cache keyed by the bodies' qualified names."""
    names = ",".join(f"{b.py_func.__module__}.{b.py_func.__qualname__}" for b in bodies)
    kernel._cache = _KernelCache(kernel.py_func, names)

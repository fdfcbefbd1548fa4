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

_PKG = Path(__file__).resolve().parent
_SOURCES = ("rng.py", "model", "kernels", "backends")


def source_hash() -> str:
    """Short hash of the sources of compiled code (and the numba version)."""
    h = hashlib.sha256(numba.__version__.encode())
    for entry in _SOURCES:
        p = _PKG / entry
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(_PKG)).encode())
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
    numba.config.CACHE_DIR = str(target)
    return target


CACHE_DIR = configure()

"""Counter-based random numbers: a 64-bit hash of ``(seed, step, id, stream)``.

Every random decision in the model draws ``hash64(seed, step, id, stream)`` where ``id`` is
the persistent cell uid (or a site index for site decisions) and ``stream`` is a constant
naming the decision (the ``S_*`` constants below). Nothing depends on array slots, thread
counts or execution order, so a run is the same on every backend.

Decisions compare the top 53 bits of a hash with an integer threshold computed on the host
(:func:`threshold`), so no floating-point arithmetic enters a random decision.

The scalar functions are numba-compiled and can be called from other compiled functions;
:func:`hash64_py` is the same function in plain Python (used by tests to pin the values).

Pitfall (numba): mixing uint64 with int64 silently promotes to int64 (and a later right
shift is then arithmetic). Every input is cast to ``uint64`` and every constant is a
``uint64`` global.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)

#: 2**53: thresholds are in [0, 2**53].
ONE53 = 1 << 53

# Stream constants: one per random decision.
S_MOVE = 1
S_DIR = 2
S_STAY = 3
S_KILL = 4
S_KILL_PICK = 5
S_ACTIVATE = 6
S_DIFFERENTIATE = 7
S_FATE = 8
S_LLPC = 9
S_DIVIDE = 10
S_DIVIDE_PICK = 11
S_CAR_MEMORY = 12
S_DEATH = 13
S_DEPLETE = 14
S_PRODUCE = 15
S_PRODUCE_SPEC = 16
S_T_HELPER = 17
S_INFUSE = 18
S_INIT = 19
S_INIT_SPEC = 20
S_NICHE = 21
S_HOMEO_DIVIDE = 22
S_FLARE = 23
S_DISPLACE = 24
S_DISPLACE_PICK = 25
S_HOMING = 26
S_HOMING_PICK = 27


@nb.njit(inline="always", cache=True)
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit mixer."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(inline="always", cache=True)
def hash64(seed, step, ident, stream):
    """Hash of ``(seed, step, ident, stream)`` as ``uint64``."""
    h = mix64(nb.uint64(seed) + _GOLDEN * (nb.uint64(stream) + _ONE))
    h = mix64(h ^ nb.uint64(step))
    return mix64(h ^ nb.uint64(ident) ^ _GOLDEN)


@nb.njit(inline="always", cache=True)
def rand53(seed, step, ident, stream):
    """Top 53 bits of the hash: a uniform integer in ``[0, 2**53)``."""
    return hash64(seed, step, ident, stream) >> _S11


def threshold(p: float) -> int:
    """Integer threshold for probability ``p``: a draw ``rand53 < threshold(p)``."""
    p = min(max(float(p), 0.0), 1.0)
    return int(p * ONE53)


def rate_threshold(rate_per_day: float, dt_hours: float) -> int:
    """Threshold of the per-step probability ``1 - exp(-rate * dt)`` of a rate per day."""
    return threshold(-np.expm1(-float(rate_per_day) * dt_hours / 24.0))


_MASK = (1 << 64) - 1


def _mix64_py(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def hash64_py(seed: int, step: int, ident: int, stream: int) -> int:
    """Plain-Python reference of :func:`hash64` (for tests and documentation)."""
    g = 0x9E3779B97F4A7C15
    h = _mix64_py((seed + g * (stream + 1)) & _MASK)
    h = _mix64_py(h ^ (step & _MASK))
    return _mix64_py(h ^ (ident & _MASK) ^ g)


@nb.njit(parallel=True, cache=True)
def site_keys(seed, step, stream, n, out):
    """Fill ``out[:n]`` with ``hash64(seed, step, i, stream)`` for ``i < n`` (uint64)."""
    for i in nb.prange(n):
        out[i] = hash64(seed, step, i, stream)

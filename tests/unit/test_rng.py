"""The counter-based generator: compiled and plain-Python forms agree, draws are uniform."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from immunesim import rng


@nb.njit
def _hash(seed, step, ident, stream):
    return rng.hash64(seed, step, ident, stream)


@pytest.mark.parametrize(
    "args",
    [(0, 0, 0, 0), (1, 2, 3, 4), (2**63 - 1, 10**9, 2**40 + 7, 22), (12345, 1, 0, rng.S_MOVE)],
)
def test_compiled_hash_equals_plain_python(args):
    assert int(_hash(*args)) == rng.hash64_py(*args)


def test_site_keys_match_scalar_hash():
    out = np.empty(100, np.uint64)
    rng.site_keys(7, 3, rng.S_INFUSE, 100, out)
    assert [int(v) for v in out] == [rng.hash64_py(7, 3, i, rng.S_INFUSE) for i in range(100)]


def test_each_input_changes_the_hash():
    base = rng.hash64_py(1, 2, 3, 4)
    assert (
        len(
            {
                base,
                rng.hash64_py(2, 2, 3, 4),
                rng.hash64_py(1, 3, 3, 4),
                rng.hash64_py(1, 2, 4, 4),
                rng.hash64_py(1, 2, 3, 5),
            }
        )
        == 5
    )


def test_draws_are_uniform():
    # 200 000 draws in 20 bins: each bin's count is binomial(n, 1/20) with sd ~ 97; a
    # deviation over 6 sd (false alarm probability < 1e-8 per bin) means a broken mixer.
    n = 200_000
    keys = np.empty(n, np.uint64)
    rng.site_keys(99, 5, rng.S_DEATH, n, keys)
    u = (keys >> np.uint64(11)).astype(np.float64) / rng.ONE53
    counts = np.bincount((u * 20).astype(int), minlength=20)
    sd = np.sqrt(n * 0.05 * 0.95)
    assert np.all(np.abs(counts - n / 20) < 6 * sd)


def test_thresholds():
    assert rng.threshold(0.0) == 0
    assert rng.threshold(1.0) == rng.ONE53
    assert rng.threshold(-3) == 0 and rng.threshold(7) == rng.ONE53
    # rate 24 per day over a 1 h step: p = 1 - exp(-1)
    assert rng.rate_threshold(24.0, 1.0) == int((1 - np.exp(-1.0)) * rng.ONE53)


def test_bernoulli_frequency_matches_probability():
    # 100 000 trials at p = 0.3: sd of the frequency is 0.00145; allow 5 sd.
    thr = rng.threshold(0.3)
    n = 100_000
    keys = np.empty(n, np.uint64)
    rng.site_keys(3, 1, rng.S_KILL, n, keys)
    freq = np.mean((keys >> np.uint64(11)) < np.uint64(thr))
    assert abs(freq - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)

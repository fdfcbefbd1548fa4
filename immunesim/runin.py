"""The run-in cache: runs forked at the moment of treatment.

Every run of a scenario spends its first months untreated (the run-in) before the first
therapy. That part depends only on the scenario's content outside its therapies and on the
seed, so it is computed once and kept: a run starts from the state saved at its *fork
step*, the last step before any therapy can act, and continues from there with exactly the
bits of a run from scratch (the random numbers are keyed by seed, step and cell, so a state
is all there is to store; :mod:`immunesim.checkpoint` holds it).

What a run-in depends on, and therefore its key, is

- the scenario without ``name``, ``description``, ``[[therapy]]``, ``[[variability]]``,
  ``output``, ``endpoints``, ``run``, ``time.follow_up_days`` and the CD4 pool's rates
  (``cd4.homeostatic_rate_per_day``, ``thymic_per_ul_per_day``, ``help_follows_pool``:
  the pool stays at its baseline until the first lymphodepletion) (none of them touches the
  state or the rows before the fork: tests/integration/test_runin_cache.py checks that a
  forked run equals a run from scratch, bit for bit);
- the factor on B-cell activation in force before the fork (standard-of-care
  immunosuppression during the run-in);
- the seed;
- the code: a hash of the sources the state depends on (the model, kernels, backends,
  engine, schema, metrics and checkpoint format), of the model extensions in use and of the
  numba and NumPy versions, so an edited model never reuses an old run-in.

The fork step is the last step before the earliest of: a therapy's first action
(:meth:`~immunesim.model.therapy.TherapyEffect.acts_from_day`), a change of the
activation factor and the first lattice snapshot the run records. Two scenarios that share
a key share their run-in up to the earlier of their fork steps: an entry saved at an
earlier step is continued and saved again at the later one.

Entries live in ``$IMMUNESIM_CACHE_DIR`` (default ``$XDG_CACHE_HOME/immunesim/runin``, that
is ``~/.cache/immunesim/runin``), one checkpoint file per (key, seed, step), written
atomically (processes that compute the same run-in at once each write a whole file; the
last rename wins). The cache holds at most ``$IMMUNESIM_CACHE_MAX_MB`` megabytes (default
2048): the least recently used entries go first. ``IMMUNESIM_CACHE=off`` turns it off.
``immunesim cache info`` and ``immunesim cache clear`` look at it and empty it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from immunesim import checkpoint
from immunesim.model import extensions

if TYPE_CHECKING:  # pragma: no cover
    from immunesim.engine import Simulation
    from immunesim.scenario import Scenario

_PKG = Path(__file__).resolve().parent
#: Scenario sections that do not touch the state before the fork.
_OUTSIDE = ("name", "description", "therapy", "variability", "output", "endpoints", "run")
#: Keys of ``[cd4]`` that act only from the first lymphodepletion, a therapy's first action:
#: before it the CD4 pool is at its baseline (:mod:`immunesim.model.cd4`), whatever its
#: rates, so runs that differ only in them share a run-in (a sweep over the recovery rate).
_CD4_AFTER = (
    "homeostatic_rate_per_day",
    "thymic_per_ul_per_day",
    "help_follows_pool",
    "anti_car_follows_pool",
)
DEFAULT_MAX_MB = 2048.0


#: The sources a run-in's state and rows depend on: the model, its kernels and backends,
#: the engine, the scenario schema, the metrics and the checkpoint format (not the command
#: line, the outputs or the analyses, whose edits leave run-ins valid).
_STATE_SOURCES = (
    "model", "kernels", "backends", "engine", "rng.py", "state.py", "observe.py",
    "scenario.py", "sections.py", "checkpoint.py", "runin.py", "_jit_cache.py",
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """A hash of the sources a run-in depends on, of the extensions in use and of the
    numba and NumPy versions."""
    import numba

    h = hashlib.sha256(f"{numba.__version__} {np.__version__}".encode())
    files: list[Path] = []
    for entry in _STATE_SOURCES:
        p = _PKG / entry
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    files += sorted(extensions.source_files())
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _factor(s: Scenario, day: float) -> float:
    from immunesim.engine.therapies import EFFECTS

    factor = 1.0
    for t in s.therapy:
        factor *= EFFECTS[t.type].activation_factor(t, day)
    return factor


def fork_step(s: Scenario) -> int:
    """The number of steps a run shares with every run of the same key: the steps before
    any therapy acts, before the activation factor changes and before the first lattice
    snapshot (0 when one of them comes at the start)."""
    from immunesim.engine.therapies import EFFECTS

    first = min((EFFECTS[t.type].acts_from_day(t) for t in s.therapy), default=math.inf)
    # a therapy acts at the first step at or after its day; 1e-6 day earlier errs on the
    # early side for a day that falls on a step boundary
    limit = s.total_steps if first == math.inf else max(0, s.step_of_day(first - 1e-6) - 1)
    limit = min(limit, s.run_in_steps)  # the run-in ends on day 0
    if s.output.snapshot_every_hours > 0:  # lattice snapshots are taken as the run passes
        limit = min(limit, s.step_of_day(s.output.snapshot_from_day) - 1)
    f1 = _factor(s, s.day_of_step(1))
    for step in range(2, limit + 2):  # the factor of step k acts in step k
        if _factor(s, s.day_of_step(step)) != f1:
            return step - 1
    return max(0, limit)


def content(s: Scenario) -> dict[str, Any]:
    """What a scenario's run-in depends on: the scenario without the sections that act only
    after the fork, with the activation factor in force during the run-in."""
    out = s.model_dump(mode="json")
    for name in _OUTSIDE:
        out.pop(name, None)
    out["time"].pop("follow_up_days", None)
    for name in _CD4_AFTER:
        out["cd4"].pop(name, None)
    out["activation_factor_in_run_in"] = _factor(s, s.day_of_step(1))
    return out


def key(s: Scenario) -> str:
    """The content key of a scenario's run-in (without the seed)."""
    data = content(s)
    data["code"] = code_hash()
    text = json.dumps(data, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def default_root() -> Path:
    base = os.environ.get("IMMUNESIM_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "immunesim" / "runin"


def enabled_by_default() -> bool:
    return os.environ.get("IMMUNESIM_CACHE", "on").strip().lower() not in ("off", "0", "no")


def _max_bytes() -> int:
    text = os.environ.get("IMMUNESIM_CACHE_MAX_MB", "")
    try:
        mb = float(text) if text.strip() else DEFAULT_MAX_MB
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(0.0, mb) * 1e6)


@dataclass
class Fork:
    """How a simulation started: ``cache`` is ``"hit"`` (from a cached run-in at
    ``from_step``), ``"miss"`` (from scratch or an earlier step; its run-in is saved at
    ``fork_step``), ``"none"`` (a therapy acts from the first step: no run-in to share) or
    ``"off"``; ``saved_seconds`` is the compute time of the run-in it did not redo."""

    cache: str
    key: str | None = None
    fork_step: int = 0
    from_step: int = 0
    from_day: float | None = None
    saved_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "key": self.key,
            "fork_step": self.fork_step,
            "from_step": self.from_step,
            "from_day": self.from_day,
            "saved_seconds": round(self.saved_seconds, 3),
        }


class RunInCache:
    """A directory of cached run-ins (see the module's documentation).

    Args:
        root: the directory (default :func:`default_root`).
        max_bytes: the size bound (default ``$IMMUNESIM_CACHE_MAX_MB`` or 2048 MB).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.max_bytes = _max_bytes() if max_bytes is None else int(max_bytes)

    def _dir(self, k: str, seed: int) -> Path:
        return self.root / k / f"seed-{seed}"

    def entries(self) -> list[Path]:
        """Every cached run-in file."""
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("*/seed-*/step-*.npz"))

    def info(self) -> dict[str, Any]:
        """Where the cache is, how many run-ins it holds and their size."""
        files = self.entries()
        return {
            "root": str(self.root),
            "entries": len(files),
            "bytes": int(sum(f.stat().st_size for f in files)),
            "max_bytes": self.max_bytes,
            "keys": len({f.parent.parent.name for f in files}),
        }

    def clear(self) -> int:
        """Remove every cached run-in; returns how many files went."""
        files = self.entries()
        for f in files:
            f.unlink(missing_ok=True)
        for d in sorted(self.root.glob("*/seed-*")) + sorted(self.root.glob("*")):
            if d.is_dir():
                try:
                    d.rmdir()
                except OSError:
                    pass
        return len(files)

    def start(
        self, s: Scenario, seed: int, backend: str = "auto", at_step: int | None = None
    ) -> tuple[Simulation, Fork]:
        """A simulation of ``s`` with ``seed``, started from the best cached run-in (the
        latest saved step at or before its fork step, or ``at_step`` when that is earlier);
        when that is not the fork step itself, the simulation saves its state there as it
        passes it."""
        from immunesim.engine import Simulation

        fork = fork_step(s) if at_step is None else max(0, min(fork_step(s), at_step))
        if fork < 1:  # a therapy acts from the start: nothing to share
            return Simulation(s, seed=seed, backend=backend), Fork("none")
        k = key(s)
        info = Fork("miss", k, fork)
        sim = None
        for step, path in self._saved(k, seed, fork):
            restored = self._restore(path, s, seed, backend, step)
            if restored is not None:
                sim, seconds = restored
                info = Fork("hit", k, fork, step, s.day_of_step(step), seconds)
                break
        if sim is None:
            sim = Simulation(s, seed=seed, backend=backend)
        if sim.step_index < fork:
            target = self._dir(k, seed) / f"step-{fork:08d}.npz"

            def save(sim_: Simulation) -> None:
                if sim_.step_index == fork:
                    self._save(sim_, target)

            sim.add_observer(save, fork, fork)
        return sim, info

    def _saved(self, k: str, seed: int, fork: int) -> list[tuple[int, Path]]:
        """The saved steps of a run-in at or before ``fork``, latest first."""
        d = self._dir(k, seed)
        found = []
        for f in d.glob("step-*.npz") if d.is_dir() else []:
            try:
                step = int(f.stem.split("-")[1])
            except (IndexError, ValueError):
                continue
            if step <= fork:
                found.append((step, f))
        return sorted(found, reverse=True)

    def _restore(
        self, path: Path, s: Scenario, seed: int, backend: str, step: int
    ) -> tuple[Simulation, float] | None:
        """The simulation a cached run-in holds and the seconds it took to compute, or
        ``None`` (and the file removed) when it cannot be used."""
        from immunesim.engine import Simulation

        try:
            meta, arrays = checkpoint.read(path)
            if (
                int(meta["step_index"]) != step
                or int(meta["seed"]) != seed
                or meta["events"]
                or int(meta["infused_car_t"])
            ):
                raise checkpoint.CheckpointError(f"{path}: not the run-in it is filed as")
            sim = Simulation(s, seed=seed, backend=backend, _restore=(meta, arrays))
        except (checkpoint.CheckpointError, KeyError, TypeError, ValueError):
            path.unlink(missing_ok=True)  # damaged or foreign: computed again
            return None
        try:
            os.utime(path)  # recently used
        except OSError:
            pass
        return sim, float(sum((meta.get("phase_seconds") or {}).values()))

    def _save(self, sim: Simulation, target: Path) -> None:
        try:
            sim.save(target)
        except OSError:  # a full or read-only cache costs speed, not the run
            return
        self.evict()

    def evict(self) -> None:
        """Remove the least recently used run-ins until the cache is within its bound."""
        files = [(f.stat().st_mtime, f.stat().st_size, f) for f in self.entries()]
        total = sum(size for _, size, _ in files)
        for _, size, f in sorted(files):
            if total <= self.max_bytes:
                break
            f.unlink(missing_ok=True)
            total -= size


def start(
    s: Scenario,
    seed: int,
    backend: str = "auto",
    cache: bool | RunInCache | None = None,
    at_step: int | None = None,
) -> tuple[Simulation, Fork]:
    """A simulation of ``s`` from the run-in cache (``cache``: ``None`` for the default,
    which ``IMMUNESIM_CACHE=off`` turns off; ``False`` for none; or a :class:`RunInCache`),
    forked at its fork step or at ``at_step`` when that is earlier."""
    from immunesim.engine import Simulation

    if cache is None:
        cache = enabled_by_default()
    if cache is False:
        sim, info = Simulation(s, seed=seed, backend=backend), Fork("off")
    else:
        store = cache if isinstance(cache, RunInCache) else RunInCache()
        t0 = time.perf_counter()
        sim, info = store.start(s, seed, backend, at_step)
        if info.cache == "hit":
            sim.phase_seconds["events"] += time.perf_counter() - t0  # the restore, counted
    sim.run_in = info.as_dict()
    return sim, info


__all__ = ["Fork", "RunInCache", "code_hash", "content", "fork_step", "key", "start"]

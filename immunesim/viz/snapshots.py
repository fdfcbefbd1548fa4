"""Lattice snapshots recorded during a run, compact on disk, read back for animation.

Each snapshot is ``snapshots/frame_NNNNN.npz`` in the run directory (written atomically,
compressed), holding:

- ``cells``: uint8[L, L] cell category per site (:data:`CATEGORIES`, 0 = empty);
- ``damage``: float16[L, L] tissue damage (user units), for an optional overlay;
- ``day``: the simulated day.

One file per snapshot keeps memory bounded however long the run, and a crash loses at
most the snapshot being written. ``zones.npy`` holds the zone map once.
"""

from __future__ import annotations

import io as _io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from immunesim.model import cells as cells_model
from immunesim.model.params import MOL_SCALE

#: Cell categories shown in animations (index = code stored in ``cells``), from the kinds.
CATEGORIES = cells_model.CATEGORIES


def cell_map(
    kind: np.ndarray, spec: np.ndarray, x: np.ndarray, y: np.ndarray, L: int, n_self: int = 1
) -> np.ndarray:
    """Category map uint8[L, L] of live cells given their arrays (length n); the first
    ``n_self`` specificity classes are autoreactive."""
    codes = cells_model.KIND_CATEGORY[kind]
    autoreactive = (spec < n_self) & np.isin(kind, cells_model.AUTOREACTIVE_SHOWN)
    codes = np.where(autoreactive, np.uint8(cells_model.AUTOREACTIVE_CATEGORY), codes)
    out = np.zeros((L, L), np.uint8)
    out[y, x] = codes
    return out


def lattice_picture(sim) -> tuple[np.ndarray, np.ndarray]:
    """The simulation's lattice as host arrays: cell categories uint8[L, L]
    (:func:`cell_map`) and tissue damage float64[L, L] in user units."""
    st, host = sim.state, sim.backend.to_host
    n, L = st.n, st.L
    live = host(st.alive[:n]) != 0  # slots of dead cells await compaction
    cells = cell_map(
        host(st.kind[:n])[live],
        host(st.spec[:n])[live],
        host(st.x[:n])[live],
        host(st.y[:n])[live],
        L,
        sim.params.layers.n_self,
    )
    return cells, host(st.mol[sim.params.layers.damage]).reshape(L, L) / MOL_SCALE


class SnapshotWriter:
    """Writes snapshots of a simulation into ``<run_dir>/snapshots``."""

    def __init__(self, run_dir: str | os.PathLike[str], zone: np.ndarray):
        self.dir = Path(run_dir) / "snapshots"
        self.dir.mkdir(parents=True, exist_ok=True)
        np.save(self.dir / "zones.npy", zone)
        self.count = len(list(self.dir.glob("frame_*.npz")))

    def write(self, sim) -> Path:
        cells, damage = lattice_picture(sim)
        damage = damage.astype(np.float16)
        buf = _io.BytesIO()
        np.savez_compressed(buf, cells=cells, damage=damage, day=np.float64(sim.day))
        # named by step: a resumed run writes the frames after its checkpoint again, in place
        path = self.dir / f"frame_{sim.step_index:08d}.npz"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        self.count += 1
        return path


def list_frames(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Snapshot files of a run, in time order."""
    return sorted((Path(run_dir) / "snapshots").glob("frame_*.npz"))


def read_zones(run_dir: str | os.PathLike[str]) -> np.ndarray:
    return np.load(Path(run_dir) / "snapshots" / "zones.npy")


def iter_frames(paths: list[Path]) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """Yield ``(day, cells, damage)`` one snapshot at a time."""
    for p in paths:
        with np.load(p) as f:
            yield float(f["day"]), f["cells"], f["damage"].astype(np.float32)


def frame_days(paths: list[Path]) -> list[float]:
    out = []
    for p in paths:
        with np.load(p) as f:
            out.append(float(f["day"]))
    return out

"""Checkpoints: everything a simulation needs to go on, in one file.

A checkpoint is a NumPy ``.npz`` archive (no pickles) holding

- the state at a step boundary: every persistent cell field of the used slots, the site
  arrays that are not scratch, the molecular layers and the ledger;
- ``meta``: JSON with the format version, the model description it was made with (kinds,
  layers, cell fields), the validated scenario, the seed, the step, the rows and events so
  far, the immunosuppression in force and the counters of the run.

Scratch arrays (proposal keys, claims, the layers being computed) are written in full by
their phase before they are read, so they are not stored; the random numbers are keyed by
seed, step and cell, so there is no generator state to store. A simulation restored from a
checkpoint therefore continues with exactly the bits of the uninterrupted run.

The file is written atomically: a crash while writing leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from immunesim import io
from immunesim.model.cells import KIND_NAMES
from immunesim.model.fields import CELL_FIELDS, SITE_FIELDS
from immunesim.model.layers import LAYERS
from immunesim.scenario import ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from immunesim.engine import Simulation

FORMAT = 1
#: File name of the checkpoint in a run directory.
FILE = "checkpoint.npz"


class CheckpointError(ScenarioError):
    """A checkpoint cannot be read or does not fit this immunesim (a
    :class:`~immunesim.scenario.ScenarioError`, like every bad input)."""

    def __init__(self, message: str):
        path, _, expected = message.partition(": ")
        super().__init__(path, "", expected)


def description() -> dict[str, list[str]]:
    """The parts of the model description a checkpoint's arrays depend on."""
    return {
        "kinds": list(KIND_NAMES),
        "layers": [layer.name for layer in LAYERS],
        "cell_fields": [f.name for f in CELL_FIELDS if f.persistent],
        "site_fields": [f.name for f in SITE_FIELDS if f.persistent],
    }


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def save(sim: Simulation, path: str | os.PathLike[str]) -> Path:
    """Write ``sim``'s checkpoint to ``path`` (atomically) and return the path."""
    host = sim.backend.to_host
    st = sim.state
    arrays: dict[str, np.ndarray] = {}
    for f in CELL_FIELDS:
        if f.persistent:
            arrays[f"cells.{f.name}"] = np.ascontiguousarray(
                host(getattr(st.cells, f.name))[: st.n]
            )
    for f in SITE_FIELDS:
        if f.persistent:
            arrays[f"sites.{f.name}"] = host(getattr(st.sites, f.name))
    arrays["sites.mol"] = host(st.sites.mol)
    arrays["ledger"] = host(st.ledger)
    meta = {
        "format": FORMAT,
        "description": description(),
        "scenario": sim.scenario.model_dump(mode="json"),
        "seed": sim.seed,
        "step_index": sim.step_index,
        "n": int(st.n),
        "next_uid": int(st.next_uid),
        "rows": sim.rows,
        "events": [asdict(e) for e in sim.events],
        "factor": sim.course.factor,
        "kills_since_sample": int(sim.kills_since_sample),
        "infused_car_t": int(sim.infused_car_t),
        "phase_seconds": sim.phase_seconds,
    }
    text = json.dumps(meta, default=_plain, allow_nan=True)
    arrays["meta"] = np.frombuffer(text.encode(), np.uint8)
    target = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())

    io.atomic_write(target, write)
    return target


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint.

    Raises:
        CheckpointError: if the file is missing, unreadable, of another format or made with
            another model description (other kinds, layers or fields).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no checkpoint there")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{p}: not a readable immunesim checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: checkpoint format {meta.get('format')!r}; this immunesim reads {FORMAT}"
        )
    if meta.get("description") != description():
        raise CheckpointError(
            f"{p}: made with another model description (kinds, layers or fields: "
            f"{meta.get('description')}); this immunesim has {description()}"
        )
    return meta, arrays


__all__ = ["FILE", "FORMAT", "CheckpointError", "description", "read", "save"]

"""Run outputs: time series (CSV, Parquet), endpoints and manifest (JSON), atomically.

Every file is written to a temporary name in the output directory and renamed into place,
so a crash or Ctrl-C never leaves a half-written file; a file that is already there stays
intact until its replacement is complete.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file of the same directory,
    then rename it into place (the old file stays intact until then)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); the output gets the usual mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig: Any, path: str | os.PathLike[str], **kw: Any) -> Path:
    """``fig.savefig`` to ``path``, atomically (the format from the file's suffix)."""
    out = Path(path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    atomic_write(out, lambda p: fig.savefig(p, format=fmt, **kw))
    return out


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically."""
    out = Path(path)
    atomic_write(out, lambda p: p.write_text(text))
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def write_timeseries(out_dir: Path, df: pd.DataFrame, parquet: bool = True) -> list[str]:
    """Write ``timeseries.csv`` (and ``timeseries.parquet``); returns the file names."""
    names = ["timeseries.csv"]
    atomic_write(
        out_dir / "timeseries.csv", lambda p: df.to_csv(p, index=False, float_format="%.10g")
    )
    if parquet:
        atomic_write(out_dir / "timeseries.parquet", lambda p: df.to_parquet(p, index=False))
        names.append("timeseries.parquet")
    return names


def git_revision() -> str | None:
    """The git revision of the immunesim source tree, when it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    if out.returncode != 0 or not rev:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", str(here)],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return rev + ("+dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in (
        "immunesim",
        "numpy",
        "numba",
        "llvmlite",
        "pandas",
        "pyarrow",
        "pydantic",
        "mesa",
        "cupy",
        "numba-cuda",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, Any]:
    """What the run ran on."""
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
    }

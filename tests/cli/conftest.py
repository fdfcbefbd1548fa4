"""Run the ``immunesim`` console command the way a user types it."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import immunesim_cmd

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_immunesim(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``immunesim ARGS`` and return the finished process (stdout/stderr as text with
    any colour codes removed, in case the environment forces colour)."""
    proc = subprocess.run(
        [*immunesim_cmd(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
    )
    proc.stdout = _ANSI.sub("", proc.stdout)
    proc.stderr = _ANSI.sub("", proc.stderr)
    return proc


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("validate", path)`` runs ``immunesim validate PATH``."""
    return run_immunesim

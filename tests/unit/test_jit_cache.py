"""numba's cache is keyed by the sources of every compiled rule (a change in a callee
module must not leave a stale kernel behind)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numba

from immunesim import _jit_cache


def test_numba_cache_dir_is_keyed_by_source_hash():
    assert Path(numba.config.CACHE_DIR).name == _jit_cache.source_hash()


def test_editing_a_kernel_module_changes_the_key(tmp_path, monkeypatch):
    copy = tmp_path / "immunesim"
    shutil.copytree(_jit_cache._PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_jit_cache, "_PKG", copy)
    before = _jit_cache.source_hash()
    rules = copy / "kernels" / "contact.py"
    rules.write_text(rules.read_text() + "\n# an edit\n")
    assert _jit_cache.source_hash() != before
    # files outside the compiled code (the CLI) do not invalidate the cache
    cli = copy / "cli.py"
    after = _jit_cache.source_hash()
    cli.write_text(cli.read_text() + "\n# an edit\n")
    assert _jit_cache.source_hash() == after

"""Static checks: the package type-checks (mypy, configured in pyproject.toml), and the
package, tests, benchmarks and scripts pass ruff's lint and are formatted.

The names that the code makes at run time from a table (the fields of the cell and site
named tuples, the state's field views, the kind codes) are declared statically to the type
checker in ``if TYPE_CHECKING:`` blocks; the last tests check those declarations against
the tables, so that they cannot drift apart.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from immunesim.model.cells import KINDS
from immunesim.model.fields import CELL_FIELDS, SITE_FIELDS

ROOT = Path(__file__).resolve().parents[2]
LINTED = ["immunesim", "tests", "benchmarks", "scripts"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_passes():
    res = _run("mypy", "immunesim")
    assert res.returncode == 0, f"mypy immunesim:\n{res.stdout}{res.stderr}"


def test_ruff_check_passes():
    res = _run("ruff", "check", *LINTED)
    assert res.returncode == 0, f"ruff check:\n{res.stdout}{res.stderr}"


def test_ruff_format_is_applied():
    res = _run("ruff", "format", "--check", *LINTED)
    assert res.returncode == 0, f"ruff format --check (run ruff format):\n{res.stdout}{res.stderr}"


# --------------------------------------------------------------------------- declarations


def _type_checking_body(path: Path, cls: str | None = None) -> list[ast.stmt]:
    """The statements of the ``if TYPE_CHECKING:`` blocks of a module, or of class ``cls``."""
    body = ast.parse(path.read_text()).body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    return [
        stmt
        for node in body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
    ]


def _array_dtype(annotation: ast.expr | None) -> str:
    """``int64`` from ``NDArray[np.int64]``."""
    assert isinstance(annotation, ast.Subscript), ast.unparse(annotation or ast.Constant())
    assert ast.unparse(annotation.value) == "NDArray", ast.unparse(annotation)
    return ast.unparse(annotation.slice).removeprefix("np.")


def _declared_class(path: Path, name: str) -> ast.ClassDef:
    """Class ``name`` declared under ``if TYPE_CHECKING:`` in a module."""
    for node in _type_checking_body(path):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"{path.relative_to(ROOT)}: no class {name} under 'if TYPE_CHECKING:'")


def _named_tuple_fields(path: Path, name: str) -> list[tuple[str, str]]:
    cls = _declared_class(path, name)
    return [
        (stmt.target.id, _array_dtype(stmt.annotation))
        for stmt in cls.body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
    ]


CELLS = [(f.name, f.dtype.__name__) for f in CELL_FIELDS]
SITES = [(f.name, f.dtype.__name__) for f in SITE_FIELDS]


def test_declared_cell_and_site_fields_match_the_tables():
    fields = ROOT / "immunesim" / "model" / "fields.py"
    assert _named_tuple_fields(fields, "Cells") == CELLS
    assert _named_tuple_fields(fields, "Sites") == [
        *SITES,
        ("toward", "uint8"),
        ("mol", "int32"),
        ("saturated", "uint8"),
    ]


def test_declared_state_views_match_the_tables():
    views = [
        (f.name, _array_dtype(f.returns))
        for f in _type_checking_body(ROOT / "immunesim" / "state.py", "State")
        if isinstance(f, ast.FunctionDef)
    ]
    assert views == [*CELLS, *SITES, ("toward", "uint8")]


def test_declared_kinds_match_the_table():
    kind = _declared_class(ROOT / "immunesim" / "model" / "cells.py", "Kind")
    declared = [
        (stmt.targets[0].id, ast.literal_eval(stmt.value))
        for stmt in kind.body
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
    ]
    assert declared, "the TYPE_CHECKING Kind declares no member"
    assert declared == [(k.name.upper(), i) for i, k in enumerate(KINDS[: len(declared)])]

"""Every option's help reaches ``--help`` whole.

``--help`` is rendered with rich markup, in which ``[dist]`` is a style tag and disappears
unless written ``\\[dist]``: an install hint ``pip install 'immunesim[dist]'`` came out as
``pip install 'immunesim'``.
"""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from immunesim.cli import app


def _commands(group, path: tuple[str, ...] = ()):
    yield path, group
    if hasattr(group, "commands"):  # a group (typer's, whichever click it builds on)
        for name, sub in group.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))
WITH_BRACKETS = [
    (path, opt.help)
    for path, cmd in COMMANDS
    for opt in cmd.params
    if getattr(opt, "help", None) and "[" in opt.help
]


def test_some_help_texts_hold_brackets():
    """The test below has something to check."""
    assert len(WITH_BRACKETS) >= 2


@pytest.mark.parametrize(("path", "text"), WITH_BRACKETS, ids=lambda v: str(v)[:40])
def test_brackets_in_option_help_are_printed(path, text):
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
    flat = re.sub(r"[\s│]+", " ", out)
    # every bracketed word of the help text, as the user should read it
    for word in re.findall(r"\S*\[[^\s]*", text.replace("\\[", "[")):
        assert word in flat, f"{' '.join(path)} --help lost {word!r}"

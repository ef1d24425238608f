"""`--help` of every command reads as plain help: flags without a `<bool>` type,
every option with a description, and a flag that defaults on can be turned off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from controller.cli import app


def commands(group: TyperGroup, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], Any]]:
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, TyperGroup):
            yield from commands(command, (*path, name))


def test_every_option_has_a_description_and_flags_show_no_type() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    found = list(commands(root))
    assert len(found) >= 15
    runner = CliRunner()
    for path, command in found:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
        assert "Usage: " in result.output and "--help  " in result.output, result.output
        for param in command.params:
            if isinstance(param, TyperOption):
                assert param.help, (path, param.opts)
            if isinstance(param, TyperOption) and param.is_flag and param.default is True:
                # a flag that is on by default has a way to turn it off
                assert param.secondary_opts, (path, param.opts)


def test_verbose_flags_read_normally() -> None:
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--help"]).output
    assert re.search(r"^  -v, --verbose +Log INFO lines too", demo, re.M), demo
    run = runner.invoke(app, ["controller", "run", "--help"]).output
    assert re.search(r"^  -v, --verbose / -q, --quiet +Log connections", run, re.M), run
    assert "[default: verbose]" in run

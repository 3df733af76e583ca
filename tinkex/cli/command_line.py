"""The ``continue with`` command an interrupted ``tinkex train`` prints: its own command line
with ``--resume`` set, rebuilt from what click parsed (so it works the same under click's
test runner as in a shell), shell-quoted, and without the API key."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

__all__ = ["continue_command"]

_NOT_REPEATED = frozenset({"api_key", "rank", "resume", "output"})
"""Options the ``continue with`` command leaves out: the secret, the rank (the checkpoint
has it, and ``--resume`` refuses one), and the two it sets itself."""


def continue_command(ctx: click.Context, resume: str, output: Path) -> str:
    """This command line with ``--resume`` and ``--output`` set, as a shell would read it.

    It repeats the options given on the command line, from their parsed values, and never
    the API key (it notes that one was left out).
    """
    words = ctx.command_path.split()
    for param in ctx.command.params:
        name = param.name
        if (
            not isinstance(param, click.Option)
            or name is None
            or name in _NOT_REPEATED
            or ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE
        ):
            continue
        words += _option_words(param, ctx.params[name])
    words += ["--resume", resume, "--output", str(output)]
    command = shlex.join(words)
    if ctx.get_parameter_source("api_key") is ParameterSource.COMMANDLINE:
        command += "  (plus your --api-key, left out here)"
    return command


def _option_words(option: click.Option, value: Any) -> list[str]:
    if option.is_flag:
        if value:
            return [option.opts[0]]
        return [option.secondary_opts[0]] if option.secondary_opts else []
    values = value if option.multiple else (value,)
    return [word for v in values for word in (option.opts[0], str(v))]

"""``tinkex``: the command line entry point and its command group."""

from __future__ import annotations

import click

from .serve import serve
from .version import version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """tinkex: train and sample LLMs through the Tinker API, or serve it locally."""


cli.add_command(serve)
cli.add_command(version)


def main() -> None:
    cli()

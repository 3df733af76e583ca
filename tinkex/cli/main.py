"""``tinkex``: the command line entry point and its command group."""

from __future__ import annotations

import click

from .checkpoint import checkpoint
from .errors import TinkexGroup
from .run import run
from .serve import serve
from .session import session
from .train import train
from .version import version, version_option


@click.group(cls=TinkexGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option
def cli() -> None:
    """tinkex: train and sample LLMs through the Tinker API, or serve it locally.

    Commands that talk to a Tinker service use $TINKER_API_KEY / $TINKER_BASE_URL (or
    --api-key / --base-url); with neither they start the embedded local backend.
    Exit status: 0 success, 1 failure, 2 usage error, 130 train interrupted (see
    docs/cli.md).
    """


for command in (train, run, checkpoint, session, serve, version):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="tinkex")

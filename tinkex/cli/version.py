"""``tinkex version`` and ``tinkex --version``."""

from __future__ import annotations

import json
import platform

import click

import tinkex

__all__ = ["version", "version_option"]


def _text() -> str:
    return f"tinkex {tinkex.__version__} (Python {platform.python_version()})"


@click.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Text, or machine-readable JSON.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def version(output_format: str, as_json: bool) -> None:
    """Print the tinkex version."""
    if as_json or output_format == "json":
        info = {"version": tinkex.__version__, "python": platform.python_version()}
        click.echo(json.dumps(info))
    else:
        click.echo(_text())


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_text())
        ctx.exit()


version_option = click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the tinkex version and exit (as `tinkex version`).",
)
"""``tinkex --version``: the group-level twin of ``tinkex version``."""

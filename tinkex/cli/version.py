"""``tinkex version``."""

from __future__ import annotations

import json
import platform

import click

import tinkex


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def version(as_json: bool) -> None:
    """Print the tinkex version."""
    info = {"version": tinkex.__version__, "python": platform.python_version()}
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"tinkex {info['version']} (Python {info['python']})")

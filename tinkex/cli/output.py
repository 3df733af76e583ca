"""Printing results on stdout (aligned tables for people, JSON for programs) or into files.

Only results go to stdout; progress, notices and errors go to stderr, so ``--format json``
output can always be piped into a JSON parser. Result files are written whole or not at all.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

__all__ = [
    "echo_json",
    "echo_pairs",
    "echo_table",
    "human_bytes",
    "human_time",
    "json_text",
    "jsonable",
    "prepare_result_file",
    "write_result_file",
]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def jsonable(value: Any) -> Any:
    """``value`` with pydantic models (wire types) turned into plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """``value`` as indented JSON (wire types included)."""
    return json.dumps(jsonable(value), indent=2)


def echo_json(value: Any) -> None:
    click.echo(json_text(value))


def prepare_result_file(path: Path, option: str) -> None:
    """Create ``path``'s directory and check it is writable, before any work is done.

    Raises:
        OSError: the directory cannot be created or written to (the message names
            ``option``).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the directory of {option} {path}: {exc.strerror or exc}; pass "
            f"another {option}"
        ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OSError(
            f"cannot write {option} {path}: its directory is not writable; pass another {option}"
        )


def write_result_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a reader (or a crash) never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; ``None`` shows as ``-``."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(padded).rstrip())


def echo_pairs(pairs: Sequence[tuple[str, object]]) -> None:
    """One ``name: value`` line per pair, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        click.echo(f"{name + ':':<{width + 1}} {_cell(value)}")


def human_time(moment: datetime | None, *, now: datetime | None = None) -> str:
    """``2024-05-01 12:00 UTC (3h ago)`` / ``(in 2d)``; ``-`` for none."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = ((now or datetime.now(UTC)) - moment).total_seconds()
    span = abs(delta)
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= seconds:
            amount = f"{int(span // seconds)}{unit}"
            break
    else:
        amount = f"{int(span)}s"
    relative = f"{amount} ago" if delta >= 0 else f"in {amount}"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({relative})"


def human_bytes(size: int | None) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 MiB``...; ``-`` for unknown."""
    if size is None:
        return "-"
    exponent = 0 if size < 1024 else min(int(math.log(size, 1024)), len(_UNITS) - 1)
    if exponent == 0:
        return f"{size} B"
    return f"{size / 1024**exponent:.1f} {_UNITS[exponent]}"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return human_time(value)
    return str(value)

"""``--limit`` / ``--offset`` for the list commands, over the server's pages.

``--limit 0`` means everything: the list is fetched page by page until the server's total
(or a short page, for lists that report no total) says it is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import click

from tinkex.futures import APIFuture

from .deadline import Deadline

__all__ = ["PAGE_SIZE", "Page", "collect", "page_options"]

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., object])

PAGE_SIZE = 1000
"""Items asked for per request when more are wanted than one page holds."""


def page_options(command: F) -> F:
    """``--limit N`` (default 20, ``0``: all) and ``--offset N`` (default 0)."""
    command = click.option(
        "--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip this many."
    )(command)
    return click.option(
        "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="0: all."
    )(command)


@dataclass(frozen=True)
class Page(Generic[T]):
    """The items shown, and how many the server has in all (``None`` if it does not say)."""

    items: list[T]
    total: int | None


def collect(
    fetch: Callable[[int, int], APIFuture[R]],
    unpack: Callable[[R], tuple[list[T], int | None]],
    *,
    limit: int,
    offset: int,
    deadline: Deadline,
    what: str,
) -> Page[T]:
    """Up to ``limit`` items (``0``: all) from ``offset`` on.

    ``fetch(limit, offset)`` asks for one page; ``unpack`` splits its answer into the items
    and the server's total count. ``what`` names the list for a ``--timeout`` error.
    """
    items: list[T] = []
    total: int | None = None
    while limit == 0 or len(items) < limit:
        want = PAGE_SIZE if limit == 0 else min(PAGE_SIZE, limit - len(items))
        page, total = unpack(deadline.wait(fetch(want, offset + len(items)), what))
        items += page
        if len(page) < want or (total is not None and offset + len(items) >= total):
            break
    return Page(items, total)

"""How the command line reports failures: one message on stderr and a documented exit status.

Exit statuses: ``0`` success; ``1`` the command failed (bad input, a missing or unreadable
file, a server refusal, a timeout, a server or network failure); ``2`` the command line
itself is wrong (click's usage errors: an unknown or missing option); ``130`` ``tinkex
train`` was interrupted by Ctrl-C after saving a checkpoint.

Failures the user can fix are reported as ``error: ...``; those that retrying may cure
(HTTP 5xx, dropped connections, HTTP timeouts, requests the server failed on its side) as
``error (server or transient; retrying may help): ...``; ``--timeout`` running out reads
``error: --timeout N s ran out while waiting for ...`` (see :mod:`tinkex.cli.deadline`).
Every API key the command was given is scrubbed from the message, whatever produced it.
Anything else is a bug in tinkex and keeps its traceback.
"""

from __future__ import annotations

import os
from typing import IO, Any

import click

from tinkex.config import ENV_VARS
from tinkex.errors import APIConnectionError, APIStatusError, RequestFailedError, TinkexError

__all__ = [
    "EXIT_INTERRUPTED",
    "FAILURES",
    "SECRETS_KEY",
    "CommandError",
    "TinkexGroup",
    "describe",
]

SECRETS_KEY = "tinkex.cli.secrets"
"""``click.Context.meta`` key under which the API keys a command was given are kept, so
that error reports can scrub them."""

EXIT_INTERRUPTED = 130
"""``tinkex train`` stopped by Ctrl-C after saving a checkpoint (128 + SIGINT, as shells do)."""

FAILURES = (TinkexError, OSError, ValueError)
"""What a command raises when it fails for a reason outside tinkex: bad input, files, the
server. Argument checks of the clients raise ``ValueError`` with a message meant for users."""


class CommandError(click.ClickException):
    """A failed command: ``message`` on stderr, exit status 1."""

    exit_code = 1

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def show(self, file: IO[Any] | None = None) -> None:
        label = "error (server or transient; retrying may help)" if self.transient else "error"
        click.echo(f"{label}: {self.format_message()}", err=True, file=file)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same command may succeed (the server's side, or the network)."""
    if isinstance(error, APIStatusError):
        return error.status_code >= 500 or error.status_code == 429
    if isinstance(error, RequestFailedError):
        return error.category != "user"
    return isinstance(error, APIConnectionError)


def describe(error: BaseException) -> str:
    """The user-facing text of ``error``, with the command's API keys scrubbed out."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return scrub(text)


def scrub(text: str) -> str:
    """``text`` with every API key of the running command (and ``$TINKER_API_KEY``) as ``***``."""
    ctx = click.get_current_context(silent=True)
    secrets: set[str] = set(ctx.meta.get(SECRETS_KEY, ())) if ctx is not None else set()
    env_key = os.environ.get(ENV_VARS["api_key"])
    if env_key:
        secrets.add(env_key)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class TinkexGroup(click.Group):
    """A click group that turns the failures of its commands into :class:`CommandError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            raise CommandError(scrub(exc.message), transient=exc.transient) from None
        except FAILURES as exc:
            raise CommandError(describe(exc), transient=is_transient(exc)) from None

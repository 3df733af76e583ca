"""The options every command that talks to a Tinker service shares, and what they build.

``@remote_options`` adds ``--api-key``, ``--base-url``, ``--local``, ``--data-dir``,
``--timeout``, ``--http-timeout``, ``--format`` / ``--json`` and ``--log-level`` to a command
and hands it one :class:`Remote` instead of eight arguments. ``Remote.connect()`` applies the
project-wide backend rule of :func:`tinkex.backend.open_service`: with no API key and no base
URL (as options or in ``TINKER_API_KEY`` / ``TINKER_BASE_URL``), or with ``--local``, the
command starts the embedded local backend in-process and says so on stderr.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import click

from tinkex import telemetry
from tinkex.backend import open_service, wants_local_backend
from tinkex.clients import ServiceClient
from tinkex.errors import TinkexError

from .deadline import Deadline
from .errors import SECRETS_KEY

__all__ = [
    "LOG_LEVELS",
    "OutputFormat",
    "Remote",
    "access_scope_option",
    "default_data_dir",
    "reject_group_options",
    "remote_options",
]

T = TypeVar("T")
OutputFormat = Literal["table", "json"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def default_data_dir() -> Path:
    """Where an embedded local backend (and ``tinkex serve``) keeps its data by default.

    Persistent, so that a checkpoint written by one ``tinkex train --local`` can be resumed,
    sampled or listed by the next command.
    """
    return Path.home() / ".tinkex" / "local"


@dataclass(frozen=True)
class Remote:
    """Where and how a command reaches its Tinker service, and how it reports."""

    api_key: str | None
    base_url: str | None
    local: bool
    data_dir: Path | None
    timeout: float | None
    http_timeout: float | None
    output_format: OutputFormat
    log_level: str
    deadline: Deadline = field(init=False, repr=False, compare=False)
    """The ``--timeout`` budget, running from when the command line was read."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "deadline", Deadline(self.timeout))

    def __repr__(self) -> str:
        key = None if self.api_key is None else "***"
        return (
            f"Remote(api_key={key!r}, base_url={self.base_url!r}, local={self.local!r}, "
            f"data_dir={self.data_dir!r}, timeout={self.timeout!r}, "
            f"http_timeout={self.http_timeout!r}, output_format={self.output_format!r})"
        )

    @property
    def as_json(self) -> bool:
        return self.output_format == "json"

    def uses_local_backend(self) -> bool:
        """``--local``, or neither an API key nor a base URL anywhere."""
        return self.local or wants_local_backend(self.api_key, self.base_url)

    @contextmanager
    def connect(self) -> Iterator[ServiceClient]:
        """A :class:`ServiceClient` for the chosen backend; the session finishes at exit.

        Its config carries the ``--timeout`` deadline, so that the HTTP layer's retries
        (opening the session against a server that is down, say) stop there too; an error
        they end with is reported as ``--timeout`` running out.
        """
        local = self.uses_local_backend()
        config: dict[str, Any] = {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "deadline": self.deadline.end,
        }
        if self.http_timeout is not None:
            config["timeout"] = self.http_timeout
        try:
            with open_service(
                local=local,
                data_dir=(self.data_dir or default_data_dir()) if local else None,
                announce=lambda message: click.echo(f"tinkex: {message}", err=True),
                **config,
            ) as service:
                yield service
        except TinkexError as exc:
            explained = self.deadline.explain(exc)
            if explained is None:
                raise
            raise explained from None


def _check_remote(**values: Any) -> Remote:
    remote = Remote(**values)
    if remote.local and (remote.api_key or remote.base_url):
        given = "--api-key" if remote.api_key else "--base-url"
        raise click.UsageError(
            f"--local starts an embedded backend, so {given} has nothing to do; drop one of them"
        )
    if remote.data_dir is not None and not remote.uses_local_backend():
        raise click.UsageError(
            "--data-dir is the storage of the embedded local backend, but this command talks "
            "to a remote service (an API key or base URL is set); drop --data-dir or add --local"
        )
    return remote


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Logs to whatever ``sys.stderr`` is when a record arrives (click's test runner and
    output redirection swap it; a handler bound once would write to a closed stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(level: str) -> None:
    """Log from ``level`` up on stderr while the current command runs (then as before)."""
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    telemetry_logger = (
        telemetry.attach_logger(logging.INFO) if root.isEnabledFor(logging.INFO) else None
    )

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        if telemetry_logger is not None:
            telemetry.detach(telemetry_logger)

    click.get_current_context().call_on_close(restore)


_positive = click.FloatRange(min=0, min_open=True)

access_scope_option = click.option(
    "--access-scope",
    type=click.Choice(["owned", "accessible"]),
    default="owned",
    show_default=True,
    help="Only what you own, or everything you can read (published runs included).",
)
"""``--access-scope`` of the commands that read training runs and sessions."""

_OPTIONS = (
    click.option(
        "--api-key",
        metavar="KEY",
        help="Tinker API key (default: $TINKER_API_KEY). Never printed.",
    ),
    click.option(
        "--base-url",
        metavar="URL",
        help="Tinker service URL (default: $TINKER_BASE_URL, else the hosted service).",
    ),
    click.option(
        "--local",
        is_flag=True,
        help="Start the embedded local backend in-process (the default when no API key "
        "and no base URL are set).",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Storage of the embedded local backend (default: ~/.tinkex/local, shared "
        "with `tinkex serve`).",
    ),
    click.option(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        help="Give up on the whole command after this long (default: no limit).",
    ),
    click.option(
        "--http-timeout",
        type=_positive,
        metavar="SECONDS",
        help="Give up on one HTTP request after this long (default: 60).",
    ),
    click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="How results are printed on stdout.",
    ),
    click.option("--json", "as_json", is_flag=True, help="Same as --format json."),
    click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="warning",
        show_default=True,
        help="Log messages (on stderr) from this level up.",
    ),
)


def remote_options(command: Callable[..., T]) -> Callable[..., T]:
    """Add the shared options to ``command``, which receives them as ``remote: Remote``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        api_key: str | None,
        base_url: str | None,
        local: bool,
        data_dir: Path | None,
        timeout: float | None,
        http_timeout: float | None,
        output_format: OutputFormat,
        as_json: bool,
        log_level: str,
        **kwargs: Any,
    ) -> T:
        ctx = click.get_current_context()
        if api_key:
            ctx.meta.setdefault(SECRETS_KEY, set()).add(api_key)
        remote = _check_remote(
            api_key=api_key,
            base_url=base_url,
            local=local,
            data_dir=data_dir,
            timeout=timeout,
            http_timeout=http_timeout,
            output_format="json" if as_json else output_format,
            log_level=log_level.lower(),
        )
        if ctx.invoked_subcommand is None:  # a group hands logging to its subcommand
            _configure_logging(remote.log_level)
        return command(*args, remote=remote, **kwargs)

    decorated: Callable[..., T] = wrapper
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


_SHARED_NAMES = frozenset(
    {
        "api_key",
        "base_url",
        "local",
        "data_dir",
        "timeout",
        "http_timeout",
        "output_format",
        "as_json",
        "log_level",
    }
)
"""The parameter names of :data:`_OPTIONS`: every subcommand takes these too."""


def reject_group_options(ctx: click.Context, purpose: str) -> None:
    """Refuse options given to a group that is also a command, when a subcommand runs.

    ``tinkex run`` and ``tinkex checkpoint`` do something themselves when called without a
    subcommand; their own (``purpose``) options mean nothing to ``run list`` or
    ``checkpoint delete``, and silently dropping them would hide a mistake. The shared
    options belong after the subcommand, which takes them too.
    """
    given = [
        param
        for param in ctx.command.params
        if param.name is not None
        and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
    ]
    subcommand = f"`{ctx.command_path} {ctx.invoked_subcommand}`"
    own = [param.opts[0] for param in given if param.name not in _SHARED_NAMES]
    if own:
        one = len(own) == 1
        raise click.UsageError(
            f"{' and '.join(own)} {'is a' if one else 'are'} {purpose} option{'' if one else 's'}"
            f"; {'it' if one else 'they'} cannot be used with {subcommand}"
        )
    if given:
        shared = [param.opts[0] for param in given]
        raise click.UsageError(
            f"{' and '.join(shared)} must follow the subcommand: `{ctx.command_path} "
            f"{ctx.invoked_subcommand} {shared[0]} ...`"
        )

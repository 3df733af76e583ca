"""RecoveryPolicy: whether, when and how a corrupted training run is recovered.

A frozen value, validated when it is made: a field that is out of range raises
:class:`~tinkex.recovery.RecoveryPolicyError` naming the field (the Elixir original
silently fell back to defaults, which hides typos in exactly the code that runs when
things already went wrong).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tinkex.types import ParsedTinkerPath

from .errors import RecoveryPolicyError

if TYPE_CHECKING:
    from tinkex.clients import TrainingClient

__all__ = ["LATEST", "FailureCallback", "RecoveryCallback", "RecoveryPolicy"]

LATEST: Final = "latest"
"""Checkpoint strategy: the run's newest training checkpoint, read when recovery starts."""

RecoveryCallback = Callable[["TrainingClient | None", "TrainingClient", str], object]
"""``on_recovery(old_client, new_client, checkpoint_path)``; ``old_client`` is ``None`` when
the run was monitored by id."""

FailureCallback = Callable[[str, BaseException], object]
"""``on_failure(run_id, reason)``: ``reason`` is the error of the last attempt."""


@dataclass(frozen=True, kw_only=True)
class RecoveryPolicy:
    """How :class:`~tinkex.recovery.RecoveryMonitor` recovers runs. Off by default.

    Times are in seconds. After a failed attempt ``n`` (1-based) the next one starts
    ``min(backoff * 2 ** (n - 1), max_backoff)`` seconds later; after ``max_attempts``
    failures the run is given up and ``on_failure`` is called. Callbacks run in a worker
    thread of the monitor's tree, never in an actor or on the I/O loop, so they may block
    and call tinkex; what they raise is logged and otherwise ignored.
    """

    enabled: bool = False
    max_attempts: int = 3
    backoff: float = 5.0
    max_backoff: float = 60.0
    poll_interval: float = 30.0
    """How often every monitored run is fetched (``GET /api/v1/training_runs/{id}``)."""
    checkpoint_strategy: str = LATEST
    """``"latest"``, or one ``tinker://<run>/weights/<name>`` path to restore from."""
    restore_optimizer: bool = True
    """Restore the optimizer state too (needs a ``weights/`` checkpoint from ``save_state``)."""
    max_concurrent: int = 1
    """Recoveries in flight at once; more wait in a FIFO queue."""
    on_recovery: RecoveryCallback | None = None
    on_failure: FailureCallback | None = None

    def __post_init__(self) -> None:
        for name in ("enabled", "restore_optimizer"):
            if not isinstance(getattr(self, name), bool):
                _refuse(name, f"must be True or False, got {getattr(self, name)!r}")
        for name in ("max_attempts", "max_concurrent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _refuse(name, f"must be an integer >= 1, got {value!r}")
        for name in ("backoff", "max_backoff", "poll_interval"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                _refuse(name, f"must be a positive finite number of seconds, got {value!r}")
        if self.max_backoff < self.backoff:
            _refuse(
                "max_backoff",
                f"({self.max_backoff!r} s) must be at least backoff ({self.backoff!r} s)",
            )
        _check_strategy(self.checkpoint_strategy, self.restore_optimizer)
        for name in ("on_recovery", "on_failure"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                _refuse(name, f"must be a callable or None, got {type(value).__name__}")

    @property
    def checkpoint_path(self) -> str | None:
        """The fixed path to restore from, or ``None`` for the ``"latest"`` strategy."""
        return None if self.checkpoint_strategy == LATEST else self.checkpoint_strategy

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # The exponent is capped so that huge attempt numbers cannot overflow a float.
        return min(self.backoff * 2.0 ** min(attempt - 1, 64), self.max_backoff)


def _refuse(field: str, problem: str) -> None:
    raise RecoveryPolicyError(f"RecoveryPolicy.{field} {problem}", field=field)


def _check_strategy(strategy: object, restore_optimizer: bool) -> None:
    if not isinstance(strategy, str):
        _refuse(
            "checkpoint_strategy",
            f"must be 'latest' or a tinker:// path, got {type(strategy).__name__}",
        )
        return
    if strategy == LATEST:
        return
    if strategy == "best":
        _refuse(
            "checkpoint_strategy",
            "'best' is not supported: the service records no metric to rank checkpoints "
            "by; use 'latest' or the tinker:// path of the checkpoint you consider best",
        )
    try:
        parsed = ParsedTinkerPath.parse(strategy)
    except ValueError as exc:
        _refuse("checkpoint_strategy", f"must be 'latest' or a tinker:// path: {exc}")
        return
    if restore_optimizer and parsed.checkpoint_type != "training":
        _refuse(
            "checkpoint_strategy",
            f"{strategy!r} is a sampler checkpoint, which holds no optimizer state; use a "
            "'weights/' checkpoint saved with save_state, or restore_optimizer=False",
        )

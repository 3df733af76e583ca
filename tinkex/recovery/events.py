"""The ``tinkex.recovery.*`` telemetry events, in the order a recovery emits them.

Every event's metadata starts with the ``metadata`` given to ``monitor_run`` and adds
``run_id`` (the recovered run) and ``reason`` (what triggered it: ``"corrupted"`` or
``"actor_lost"``; absent on ``poll_error``). Measurements are numbers only; durations are
integer nanoseconds, delays are seconds. See ``docs/recovery.md`` for the full table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tinkex import telemetry

__all__ = [
    "ALL_EVENTS",
    "CALLBACK_ERROR",
    "DETECTED",
    "EXHAUSTED",
    "FAILED",
    "POLL_ERROR",
    "STARTED",
    "SUCCEEDED",
    "emit",
]

DETECTED: Final = "tinkex.recovery.detected"
"""The monitor found a run to recover and handed it to the executor.
Metadata: ``checkpoint`` (the run's newest training checkpoint path, or ``None``)."""

POLL_ERROR: Final = "tinkex.recovery.poll_error"
"""Fetching a monitored run failed; it stays monitored. Metadata: ``error``."""

STARTED: Final = "tinkex.recovery.started"
"""An attempt began. Measurements: ``attempt`` (1-based). Metadata: ``attempt``,
``strategy``."""

SUCCEEDED: Final = "tinkex.recovery.succeeded"
"""A new training client was created. Measurements: ``attempt``, ``duration`` (since the
run was handed over). Metadata: ``checkpoint``, ``new_model_id``."""

FAILED: Final = "tinkex.recovery.failed"
"""An attempt failed and another will follow. Measurements: ``attempt``, ``delay`` (seconds
until the next attempt). Metadata: ``checkpoint`` (or ``None``), ``error``."""

EXHAUSTED: Final = "tinkex.recovery.exhausted"
"""The last allowed attempt failed; ``on_failure`` follows. Measurements: ``attempts``,
``duration``. Metadata: ``error``."""

CALLBACK_ERROR: Final = "tinkex.recovery.callback_error"
"""``on_recovery`` or ``on_failure`` raised (logged, then ignored). Metadata:
``callback`` (its name), ``error``."""

ALL_EVENTS: Final = (DETECTED, POLL_ERROR, STARTED, SUCCEEDED, FAILED, EXHAUSTED, CALLBACK_ERROR)


def emit(
    event: str,
    measurements: dict[str, float],
    user_metadata: Mapping[str, Any],
    run_id: str,
    **metadata: Any,
) -> None:
    """Emit ``event`` with the caller's metadata first, so ours wins on a name clash."""
    telemetry.execute(event, measurements, {**user_metadata, "run_id": run_id, **metadata})

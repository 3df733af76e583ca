"""Errors of the recovery layer; all are :class:`~tinkex.errors.TinkexError` subclasses."""

from __future__ import annotations

from tinkex.errors import TinkexError

__all__ = [
    "DuplicateRunError",
    "NoCheckpointError",
    "RecoveryDisabledError",
    "RecoveryError",
    "RecoveryPolicyError",
]


class RecoveryError(TinkexError):
    """Base of the errors below."""


class RecoveryPolicyError(RecoveryError, ValueError):
    """A :class:`~tinkex.recovery.RecoveryPolicy` field has a value it cannot take.

    ``field`` names the field. Nothing falls back to a default silently: a policy that
    would recover differently from what its author wrote is refused instead.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class RecoveryDisabledError(RecoveryError):
    """``monitor_run`` was called with a policy whose ``enabled`` is False (the default)."""


class DuplicateRunError(RecoveryError):
    """The run is already monitored, or a recovery of it is already queued or running."""


class NoCheckpointError(RecoveryError):
    """The run has no training checkpoint (``save_state``) to recover from."""

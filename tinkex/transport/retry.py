"""The HTTP-layer retry rules (PROTOCOL §4.3): what to retry and how long to wait.

Pure functions and a frozen policy; the loop that uses them is in :mod:`.client`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import retry_after_seconds

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "retry_hint",
    "should_retry_status",
]

RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})
"""Retried besides every status >= 500: request timeout, lock conflict, rate limit."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before HTTP-layer retry number ``k`` (0 for the first retry).

    Without a server hint the wait is ``min(initial_delay * 2**k, max_delay)`` times a
    uniform factor in ``[1 - jitter, 1]``: 0.5 s, 1 s, 2 s, ... up to 10 s, each shortened by
    up to 25 %. A ``retry-after-ms`` / ``Retry-After`` hint of more than 0 and at most
    ``max_retry_after`` seconds is used as is instead.
    """

    initial_delay: float = 0.5
    max_delay: float = 10.0
    jitter: float = 0.25
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter={self.jitter} must be between 0 and 1")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The exponential wait before retry ``retry`` (0-based), jitter applied."""
        base = min(self.initial_delay * 2.0 ** min(retry, 64), self.max_delay)
        return base * rng.uniform(1.0 - self.jitter, 1.0)

    def delay(
        self, retry: int, rng: random.Random, headers: Mapping[str, str] | None = None
    ) -> float:
        """The wait before retry ``retry``: the server's hint if sensible, else :meth:`backoff`."""
        hinted = retry_after_seconds(headers)
        if hinted is not None and 0 < hinted <= self.max_retry_after:
            return hinted
        return self.backoff(retry, rng)


def retry_hint(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry``: ``True``/``False`` when the server decides, ``None`` when it does not."""
    flag = headers.get("x-should-retry")
    if flag is None:
        return None
    flag = flag.strip().lower()
    if flag == "true":
        return True
    if flag == "false":
        return False
    return None


def should_retry_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a response with ``status`` is worth another attempt at the HTTP layer."""
    hint = retry_hint(headers)
    if hint is not None:
        return hint
    return status in RETRYABLE_STATUSES or status >= 500

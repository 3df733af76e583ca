"""Per-tenant backoff windows opened by 429 answers, shared by every client of the tenant.

A tenant is ``(base_url, hash of the API key)``: two clients with the same key share a
window, two keys never do. The windows live in the rate limiter actor's supervisor-owned
store, so a restart of the actor forgets nothing; jobs on the I/O loop hold the same
:class:`RateWindows` object and sleep out an open window instead of failing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable

from tinkex import telemetry

from .base import TinkexActor

RECENT_SECONDS = 10.0
"""A tenant counts as recently throttled until this long after its window closed."""


class RateWindows:
    """Backoff deadlines by tenant; thread-safe, and awaitable from any event loop."""

    def __init__(self) -> None:
        self._until: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def backoff(self, tenant: Hashable, seconds: float, *, reason: str = "429") -> None:
        """Open (or extend) ``tenant``'s window for ``seconds`` from now."""
        until = time.monotonic() + max(0.0, seconds)
        with self._lock:
            if until <= self._until.get(tenant, 0.0):
                return
            self._until[tenant] = until
        telemetry.execute(
            "tinkex.rate_limit.backoff", {"seconds": seconds}, {"reason": reason, "tenant": tenant}
        )

    def remaining(self, tenant: Hashable) -> float:
        with self._lock:
            return max(0.0, self._until.get(tenant, 0.0) - time.monotonic())

    def recently_throttled(self, tenant: Hashable) -> bool:
        with self._lock:
            until = self._until.get(tenant)
        return until is not None and time.monotonic() < until + RECENT_SECONDS

    async def wait(self, tenant: Hashable) -> float:
        """Sleep until ``tenant``'s window is closed; returns how long that took."""
        waited = 0.0
        while (remaining := self.remaining(tenant)) > 0:
            await asyncio.sleep(remaining)
            waited += remaining
        return waited


class RateLimiter(TinkexActor):
    """Owns the process's :class:`RateWindows` (kept across restarts in its store)."""

    def init(self) -> None:
        self._windows: RateWindows = self.store.setdefault("windows", RateWindows())

    def windows(self) -> RateWindows:
        return self._windows

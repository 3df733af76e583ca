"""Restart intensity: how many restarts a supervisor tolerates before it gives up."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """A sliding window of restart times, counted per supervisor across all its children.

    OTP's rule: if more than ``max_restarts`` restarts happen within ``max_seconds``, the
    supervisor terminates its children and exits. ``max_restarts=0`` means "never restart".
    One one_for_all or rest_for_one event counts as one restart.
    """

    def __init__(
        self,
        max_restarts: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_restarts < 0 or not max_seconds > 0:
            msg = "max_restarts must be >= 0 and max_seconds > 0"
            raise ValueError(msg)
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._clock = clock
        self._restarts: deque[float] = deque()

    def add_restart(self) -> bool:
        """Record a restart now; False if that exceeds the intensity (time to give up)."""
        now = self._clock()
        self._restarts.append(now)
        while now - self._restarts[0] >= self.max_seconds:
            self._restarts.popleft()
        return len(self._restarts) <= self.max_restarts

    def __len__(self) -> int:
        """Restarts in the current window (as of the last :meth:`add_restart`)."""
        return len(self._restarts)

"""``--timeout``: one budget for a whole command, and what it says when it runs out.

The budget reaches the client twice: every wait on a result goes through :meth:`Deadline.wait`,
and the instant it ends is the ``deadline`` of the command's :class:`~tinkex.config.Config`,
which stops the HTTP layer's retries (opening the session, say, against a server that is
down). Either way the user reads which ``--timeout`` ran out while waiting for what, in
words of the command line rather than of the Python API.
"""

from __future__ import annotations

import time
from typing import TypeVar

from tinkex.errors import APIConnectionError, APIStatusError, FutureTimeoutError
from tinkex.futures import APIFuture

from .errors import CommandError

__all__ = ["Deadline"]

T = TypeVar("T")


class Deadline:
    """The ``--timeout`` budget of a whole command, shared by every wait in it."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds
        """The ``time.monotonic()`` instant the budget runs out, ``None`` without one."""

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a limit."""
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def wait(self, future: APIFuture[T], what: str) -> T:
        """``future``'s result, waiting at most for what is left of the budget.

        ``what`` names the result for the error, e.g. ``"forward_backward of step 3"``.

        Raises:
            CommandError: the budget ran out first.
        """
        try:
            return future.result(timeout=self.remaining())
        except FutureTimeoutError:
            request = f" (request {future.request_id})" if future.request_id else ""
            raise self._ran_out(
                f"{what}{request}",
                "raise --timeout (the server may be busy: --log-level info shows its queue state)",
            ) from None

    def explain(self, error: BaseException) -> CommandError | None:
        """The ``--timeout`` error for ``error`` if the budget is why the client gave up.

        That is an HTTP call whose retries stopped because the budget had run out: a
        connection that kept failing, or a server answering 5xx or 429 until then.
        """
        if not self.expired():
            return None
        if isinstance(error, APIStatusError):
            if error.status_code < 500 and error.status_code != 429:
                return None
        elif not isinstance(error, APIConnectionError):
            return None
        return self._ran_out(
            f"an answer from the server: {error.message}",
            "raise --timeout, or check the base URL and that the server is running",
        )

    def _ran_out(self, what: str, advice: str) -> CommandError:
        return CommandError(
            f"--timeout {self.seconds:g} s ran out while waiting for {what}; {advice}"
        )

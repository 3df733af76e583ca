"""The ``retrieve_future`` polling loop (PROTOCOL §2.8, §4.2) and its byte budget.

A submission answers ``{"request_id": ...}`` at once; :func:`poll_future` then posts
``/api/v1/retrieve_future`` until the result is there, reacting to each answer as the table
in ``docs/futures.md`` says. It knows nothing about connection pools or auth: it is handed a
:data:`RetrieveSender` that posts one poll and returns the raw response.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Generic, TypeAlias, TypeVar

import httpx

from tinkex import telemetry
from tinkex.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    RequestFailedError,
    RequestInfo,
    RetryableFutureError,
    TinkexError,
    error_detail,
    redact_url,
    status_error,
)
from tinkex.protocol import PROTOBUF_CONTENT_TYPE, is_protobuf

from .events import (
    FUTURE_API_ERROR,
    FUTURE_COMPLETE,
    FUTURE_POLL,
    FUTURE_REQUEST_FAILED,
    FUTURE_RETRY,
    FUTURE_VALIDATION_ERROR,
    QUEUE_STATE_CHANGE,
)
from .queue_state import QueueStateName, normalize_queue_state

__all__ = [
    "BILLING_PAUSE_SECONDS",
    "DEFAULT_BYTE_BUDGET",
    "DEFAULT_MAX_BILLING_PAUSE",
    "DEFAULT_POLL_TIMEOUT",
    "FREE_SERVER_ERROR_RETRIES",
    "MAX_BACKOFF_SECONDS",
    "MAX_BAD_REQUEST_RETRIES",
    "ByteBudget",
    "QueueStateObserver",
    "RetrieveSender",
    "default_byte_budget",
    "poll_future",
]

T = TypeVar("T")

logger = logging.getLogger("tinkex.futures")

RetrieveSender: TypeAlias = Callable[
    [dict[str, Any], Mapping[str, str], float], Awaitable[httpx.Response]
]
"""``send(body, headers, timeout)``: POST ``body`` as JSON to ``/api/v1/retrieve_future``
with the extra ``headers`` and ``timeout`` (seconds), without HTTP-layer retries. Returns the
response whatever its status; raises :class:`~tinkex.errors.APIConnectionError` (or its
subclass :class:`~tinkex.errors.APITimeoutError`) when no response arrived."""

QueueStateObserver: TypeAlias = Callable[[QueueStateName, str | None], object]
"""``observer(queue_state, reason)``, called for every queue-state observation of a poll."""

DEFAULT_POLL_TIMEOUT: Final = 45.0
"""HTTP timeout of one poll, in seconds: longer than the server's long-poll hold."""
DEFAULT_BYTE_BUDGET: Final = 50 * 1024 * 1024
"""Bytes of announced (metadata-only) results that may be in flight at once, per loop."""
MAX_BACKOFF_SECONDS: Final = 30.0
FREE_SERVER_ERROR_RETRIES: Final = 5
"""Consecutive 5xx answers re-polled at once; later ones back off (1, 2, 4, ... 30 s)."""
MAX_BAD_REQUEST_RETRIES: Final = 3
"""400 answers re-polled before :class:`~tinkex.errors.BadRequestError` is raised."""
BILLING_PAUSE_SECONDS: Final = 5.0
DEFAULT_MAX_BILLING_PAUSE: Final = 3600.0

HEADER_ITERATION: Final = "X-Tinker-Request-Iteration"
HEADER_REQUEST_TYPE: Final = "X-Tinker-Request-Type"
HEADER_ROUNDTRIP: Final = "X-Tinker-Create-Promise-Roundtrip-Time"

_NO_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})
_CONTROL_BODY_LIMIT: Final = 1 << 20
"""JSON bodies above this size are results, never try-again / metadata-only / error bodies."""
_THREAD_DECODE_BYTES: Final = 1 << 20
"""Results at least this large are decoded in a worker thread, off the I/O loop."""


# --- byte budget -----------------------------------------------------------------------------


class ByteBudget:
    """An asyncio semaphore counted in bytes, granting reservations first come, first served.

    A reservation waits until it fits in ``capacity`` next to those already granted, or
    until nothing is reserved at all: a single payload larger than the whole budget goes
    through alone instead of waiting forever. Use it from one event loop only.
    """

    def __init__(self, capacity: int = DEFAULT_BYTE_BUDGET) -> None:
        if capacity <= 0:
            raise ValueError(f"a byte budget needs a positive capacity, got {capacity}")
        self.capacity = capacity
        self._in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        """Bytes currently reserved."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Reservations waiting for bytes to be released."""
        return sum(1 for _, waiter in self._waiters if not waiter.done())

    def _fits(self, size: int) -> bool:
        return self._in_use == 0 or self._in_use + size <= self.capacity

    async def reserve(self, size: int) -> None:
        """Wait until ``size`` bytes can be reserved, then reserve them."""
        if size < 0:
            raise ValueError(f"cannot reserve a negative number of bytes ({size})")
        if size == 0:
            return
        if not self._waiters and self._fits(size):
            self._in_use += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted, but the reserving task is gone
            else:
                self._waiters.remove(entry)
                self._grant()  # it may have been holding up smaller reservations
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes and wake the reservations that now fit."""
        if size < 0:
            raise ValueError(f"cannot release a negative number of bytes ({size})")
        self._in_use = max(0, self._in_use - size)
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if not self._fits(size):
                return
            self._waiters.popleft()
            self._in_use += size
            waiter.set_result(None)


_default_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ByteBudget] = (
    weakref.WeakKeyDictionary()
)


def default_byte_budget() -> ByteBudget:
    """The running loop's shared :class:`ByteBudget` of :data:`DEFAULT_BYTE_BUDGET` bytes."""
    loop = asyncio.get_running_loop()
    budget = _default_budgets.get(loop)
    if budget is None:
        budget = _default_budgets[loop] = ByteBudget()
    return budget


# --- the polling loop ------------------------------------------------------------------------


async def poll_future(
    send: RetrieveSender,
    *,
    request_id: str,
    request_type: str,
    decode: Callable[[httpx.Response], T],
    expects_protobuf: bool,
    metadata: Mapping[str, Any] = _NO_METADATA,
    roundtrip_seconds: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll_timeout: float = DEFAULT_POLL_TIMEOUT,
    budget: ByteBudget | None = None,
    observer: QueueStateObserver | None = None,
    max_billing_pause: float = DEFAULT_MAX_BILLING_PAUSE,
) -> T:
    """Poll ``retrieve_future`` for ``request_id`` until its result is decoded.

    Args:
        send: posts one poll (see :data:`RetrieveSender`).
        request_id: the promise's id.
        request_type: ``X-Tinker-Request-Type`` (``ForwardBackward``, ``Sample``, ...).
        decode: turns the successful response into the result (see
            :mod:`tinkex.futures.decoders`); a ``ValueError`` it raises becomes
            :class:`~tinkex.errors.APIResponseValidationError`.
        expects_protobuf: ask for a protobuf result (``Accept: application/x-protobuf``).
        metadata: added to every telemetry event (e.g. ``session_id``, ``model_id``).
        roundtrip_seconds: the submit round trip, sent on the first poll only.
        sleep: how to wait between backoff retries (injectable for tests).
        poll_timeout: HTTP timeout of one poll.
        budget: where metadata-only answers reserve their payload size (default: the
            loop's shared 50 MiB :func:`default_byte_budget`). Released once decoded.
        observer: called with ``(queue_state, reason)`` on every queue-state observation.
        max_billing_pause: how long (seconds of pauses) a 402 incident is waited out.

    Raises:
        RequestFailedError: the server ran the request and it failed.
        RetryableFutureError: 410, the promise expired or is unknown; resubmit.
        APIStatusError: a 4xx that is not retried (the subclass matches the status), a 400
            after :data:`MAX_BAD_REQUEST_RETRIES` retries, or a 402 after the billing pause.
        APIResponseValidationError: the result could not be decoded.
    """
    poller = _Poller(
        send=send,
        request_id=request_id,
        request_type=request_type,
        decode=decode,
        expects_protobuf=expects_protobuf,
        metadata=metadata,
        roundtrip_seconds=roundtrip_seconds,
        sleep=sleep,
        poll_timeout=poll_timeout,
        budget=budget,
        observer=observer,
        max_billing_pause=max_billing_pause,
    )
    return await poller.run()


class _Poller(Generic[T]):
    def __init__(
        self,
        *,
        send: RetrieveSender,
        request_id: str,
        request_type: str,
        decode: Callable[[httpx.Response], T],
        expects_protobuf: bool,
        metadata: Mapping[str, Any],
        roundtrip_seconds: float | None,
        sleep: Callable[[float], Awaitable[None]],
        poll_timeout: float,
        budget: ByteBudget | None,
        observer: QueueStateObserver | None,
        max_billing_pause: float,
    ) -> None:
        self.send = send
        self.request_id = request_id
        self.request_type = request_type
        self.decode = decode
        self.expects_protobuf = expects_protobuf
        self.meta: dict[str, Any] = {
            **metadata,
            "request_id": request_id,
            "request_type": request_type,
        }
        self.roundtrip_seconds = roundtrip_seconds
        self.sleep = sleep
        self.poll_timeout = poll_timeout
        self.budget = budget
        self.observer = observer
        self.max_billing_pause = max_billing_pause

        self.started = time.monotonic_ns()
        self.polls = 0
        self.allow_metadata_only = True
        self.queue_state: QueueStateName = "active"
        self.queue_state_reason: str | None = None
        """The server's last reason for :attr:`queue_state` (kept when an answer has none)."""
        self.last_status: int | None = None
        self.backoffs = 0
        """Consecutive 429 / connection-error backoffs (the exponent)."""
        self.server_errors = 0
        self.bad_requests = 0
        self.billing_paused: float | None = None
        """Seconds paused in the current 402 incident; ``None`` outside one."""
        self.reserved = 0
        self.reserved_in: ByteBudget | None = None

    @property
    def what(self) -> str:
        return f"request {self.request_id} ({self.request_type})"

    async def run(self) -> T:
        try:
            return await self._loop()
        except TinkexError as exc:
            self._report_failure(exc)
            raise
        finally:
            if self.reserved_in is not None:
                self.reserved_in.release(self.reserved)
                self.reserved_in, self.reserved = None, 0

    async def _loop(self) -> T:
        while True:
            response = await self._poll_once()
            if response is None:
                continue  # a transport failure, already waited out
            status = response.status_code
            self._note_status(status)
            if 200 <= status < 300:
                if is_protobuf(response.headers.get("content-type")):
                    return await self._decode(response)
                payload = (
                    _json_object(response) if len(response.content) <= _CONTROL_BODY_LIMIT else None
                )
                if payload is None:
                    return await self._decode(response)
                if payload.get("type") == "try_again":
                    self._observe(payload)
                elif payload.get("status") == "complete_metadata":
                    await self._metadata_only(response, payload)
                elif "error" in payload:
                    raise self._request_failed(payload)
                else:
                    return await self._decode(response)
            elif status == 408:
                self._observe(_json_object(response))
            elif status == 429:
                await self._backoff("rate_limited", status)
            elif status >= 500:
                await self._server_error(status)
            elif status == 400:
                self.bad_requests += 1
                if self.bad_requests > MAX_BAD_REQUEST_RETRIES:
                    raise self._status_error(
                        response, f", {MAX_BAD_REQUEST_RETRIES} retries exhausted"
                    )
                self._retry("bad_request", 0.0, status, self.bad_requests)
            elif status == 402:
                await self._billing_pause(response)
            elif status == 410:
                raise self._gone(response)
            else:
                raise self._status_error(response)

    # one poll -----------------------------------------------------------------------------

    async def _poll_once(self) -> httpx.Response | None:
        iteration = self.polls
        headers = {HEADER_ITERATION: str(iteration), HEADER_REQUEST_TYPE: self.request_type}
        if iteration == 0 and self.roundtrip_seconds is not None:
            headers[HEADER_ROUNDTRIP] = str(float(self.roundtrip_seconds))
        if self.expects_protobuf:
            headers["Accept"] = PROTOBUF_CONTENT_TYPE
        body = {"request_id": self.request_id, "allow_metadata_only": self.allow_metadata_only}
        self.polls += 1
        started = time.monotonic_ns()
        try:
            response = await self.send(body, headers, self.poll_timeout)
        except (APIConnectionError, httpx.TransportError) as exc:
            self._poll_event(iteration, started, None)
            timed_out = isinstance(exc, APITimeoutError | httpx.TimeoutException)
            await self._backoff("timeout" if timed_out else "connection_error", None, exc)
            return None
        self._poll_event(iteration, started, response.status_code)
        return response

    def _note_status(self, status: int) -> None:
        self.last_status = status
        if status != 429:
            self.backoffs = 0
        if status < 500:
            self.server_errors = 0
        if status != 400:
            self.bad_requests = 0
        if status != 402 and self.billing_paused is not None:
            logger.info("%s: billing pause over after %.0f s", self.what, self.billing_paused)
            self.billing_paused = None

    # outcomes -----------------------------------------------------------------------------

    async def _decode(self, response: httpx.Response) -> T:
        try:
            if len(response.content) >= _THREAD_DECODE_BYTES:
                value = await asyncio.to_thread(self.decode, response)
            else:
                value = self.decode(response)
        except TinkexError:
            raise
        except Exception as exc:
            raise APIResponseValidationError(
                f"the result of {self.what} could not be decoded: {exc}",
                _request_info(response),
                status_code=response.status_code,
            ) from exc
        self._settled()
        telemetry.execute(
            FUTURE_COMPLETE,
            {"duration": time.monotonic_ns() - self.started, "polls": self.polls},
            dict(self.meta),
        )
        return value

    def _request_failed(self, payload: Mapping[str, Any]) -> RequestFailedError:
        raw = payload.get("error")
        message = raw if isinstance(raw, str) else error_detail({"error": raw})
        category = payload.get("category")
        self._settled()
        return RequestFailedError(
            message or f"{self.what} failed without an error message",
            request_id=self.request_id,
            category=category.strip().lower() if isinstance(category, str) else "unknown",
        )

    async def _metadata_only(self, response: httpx.Response, payload: Mapping[str, Any]) -> None:
        if not self.allow_metadata_only:
            raise APIResponseValidationError(
                f"retrieve_future for {self.what} answered metadata-only although the poll "
                "asked for the full result (allow_metadata_only=false)",
                _request_info(response),
                body=dict(payload),
                status_code=response.status_code,
            )
        self.allow_metadata_only = False
        size = payload.get("response_payload_size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            budget = self.budget if self.budget is not None else default_byte_budget()
            await budget.reserve(size)
            self.reserved_in, self.reserved = budget, size

    def _gone(self, response: httpx.Response) -> RetryableFutureError:
        body = _body_of(response)
        detail = error_detail(body)
        return RetryableFutureError(
            f"{self.what} is gone (HTTP 410{': ' + detail if detail else ''}); its result "
            "expired or was lost. Submit the request again.",
            _request_info(response),
            body=body,
            request_id=self.request_id,
        )

    def _status_error(self, response: httpx.Response, note: str = "") -> APIStatusError:
        body = _body_of(response)
        empty = "" if body not in (None, "") else " with an empty body"
        return status_error(
            response.status_code,
            f"retrieve_future for {self.what} answered HTTP {response.status_code}{empty}{note}",
            _request_info(response),
            body,
            response.headers,
        )

    # retries ------------------------------------------------------------------------------

    async def _backoff(
        self, reason: str, status: int | None, error: BaseException | None = None
    ) -> None:
        delay = min(2.0 ** min(self.backoffs, 16), MAX_BACKOFF_SECONDS)
        self.backoffs += 1
        self._retry(reason, delay, status, self.backoffs, error)
        await self.sleep(delay)

    async def _server_error(self, status: int) -> None:
        self.server_errors += 1
        extra = self.server_errors - FREE_SERVER_ERROR_RETRIES
        delay = 0.0 if extra <= 0 else min(2.0 ** min(extra - 1, 16), MAX_BACKOFF_SECONDS)
        self._retry("server_error", delay, status, self.server_errors)
        if delay:
            await self.sleep(delay)

    async def _billing_pause(self, response: httpx.Response) -> None:
        if self.billing_paused is None:
            self.billing_paused = 0.0
            logger.warning(
                "%s: the server answered 402 (billing); pausing in %g s steps for up to %g s",
                self.what,
                BILLING_PAUSE_SECONDS,
                self.max_billing_pause,
            )
        if self.billing_paused >= self.max_billing_pause:
            raise self._status_error(
                response, f" for {self.billing_paused:g} s of billing pauses, giving up"
            )
        attempt = int(self.billing_paused // BILLING_PAUSE_SECONDS) + 1
        self._retry("billing", BILLING_PAUSE_SECONDS, 402, attempt)
        await self.sleep(BILLING_PAUSE_SECONDS)
        self.billing_paused += BILLING_PAUSE_SECONDS

    def _retry(
        self,
        reason: str,
        delay: float,
        status: int | None,
        attempt: int,
        error: BaseException | None = None,
    ) -> None:
        telemetry.execute(
            FUTURE_RETRY,
            {"delay": delay, "attempt": attempt},
            {**self.meta, "reason": reason, "status": status, "error": error},
        )

    # queue state --------------------------------------------------------------------------

    def _observe(self, payload: Mapping[str, Any] | None) -> None:
        if payload is None:
            return
        raw = payload.get("queue_state")
        reason = payload.get("queue_state_reason")
        reason = reason if isinstance(reason, str) and reason else None
        if raw is None and reason is None:
            return
        state = normalize_queue_state(raw)
        if state == "unknown" and reason is None:
            return
        self._notify(state, reason)

    def _settled(self) -> None:
        """The server finished the request: its queue was evidently moving."""
        if self.queue_state != "active":
            self._notify("active", None)

    def _notify(self, state: QueueStateName, reason: str | None) -> None:
        if self.observer is not None:
            try:
                self.observer(state, reason)
            except Exception:
                logger.exception("Queue-state observer %r raised for %s", self.observer, self.what)
        new_reason = reason is not None and reason != self.queue_state_reason
        if state != self.queue_state or new_reason:
            # A new server reason is news even while the state stays the same; an answer
            # that gives none keeps the last one.
            self.queue_state, self.queue_state_reason = state, reason
            telemetry.execute(
                QUEUE_STATE_CHANGE,
                {"polls": self.polls},
                {**self.meta, "queue_state": state, "queue_state_reason": reason},
            )

    # telemetry ----------------------------------------------------------------------------

    def _poll_event(self, iteration: int, started: int, status: int | None) -> None:
        telemetry.execute(
            FUTURE_POLL,
            {"duration": time.monotonic_ns() - started},
            {**self.meta, "iteration": iteration, "status": status},
        )

    def _report_failure(self, error: TinkexError) -> None:
        if isinstance(error, RequestFailedError):
            event = FUTURE_REQUEST_FAILED
        elif isinstance(error, APIResponseValidationError):
            event = FUTURE_VALIDATION_ERROR
        else:
            event = FUTURE_API_ERROR
        telemetry.execute(
            event,
            {"duration": time.monotonic_ns() - self.started, "polls": self.polls},
            {
                **self.meta,
                "status": self.last_status,
                "error_type": type(error).__name__,
                "category": getattr(error, "category", None),
                "error": error,
            },
        )


# --- helpers ---------------------------------------------------------------------------------


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` if it is empty, not JSON, or not an object."""
    if not response.content:
        return None
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _body_of(response: httpx.Response) -> object | None:
    """An error body: parsed JSON if it is JSON, else its text (``None`` if empty)."""
    if not response.content:
        return None
    try:
        parsed: object = response.json()
    except ValueError:
        return response.text.strip() or None
    return parsed


def _request_info(response: httpx.Response) -> RequestInfo | None:
    try:
        request = response.request
    except RuntimeError:  # a response built by hand, not sent
        return None
    return RequestInfo(request.method, redact_url(str(request.url)))

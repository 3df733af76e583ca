"""One HTTP call to the Tinker API, with the official SDK's HTTP-layer retries.

:class:`Transport` sends ``<base_url>/api/v1/<path>`` with the headers of PROTOCOL §1.3,
retries what is worth retrying (timeouts, connection errors, an empty 400, 408, 409, 429,
>= 500, ``x-should-retry: true``) with jittered exponential backoff or the server's
``Retry-After``, reads the body with a size limit, and turns what finally failed into an
exception of :mod:`tinkex.errors`. It runs on the I/O loop that owns its
:class:`~tinkex.transport.PoolRegistry`.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from pydantic import BaseModel

from .. import telemetry
from ..config import Config
from ..errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    RequestInfo,
    ResponseTooLargeError,
    redact_url,
)
from ..errors import (
    status_error as make_status_error,
)
from .headers import JSON_CONTENT_TYPE, build_headers, new_idempotency_key
from .pools import PoolRegistry
from .retry import RetryPolicy, retry_hint, should_retry_status

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HTTP_REQUEST_EVENT",
    "RETRY_ATTEMPT_EVENT",
    "Transport",
]

DEFAULT_MAX_RESPONSE_BYTES: Final = 256 * 1024 * 1024
"""Responses larger than this (after decompression) raise :class:`ResponseTooLargeError`."""

HTTP_REQUEST_EVENT: Final = "tinkex.http.request"
"""Span prefix: ``.start`` / ``.stop`` / ``.exception`` around every attempt."""
RETRY_ATTEMPT_EVENT: Final = "tinkex.retry.attempt"
"""Emitted before each HTTP-layer retry's wait."""

API_PREFIX: Final = "/api/v1/"

log = logging.getLogger("tinkex.transport")

Sleep = Callable[[float], Awaitable[object]]

LATE_ATTEMPT_SECONDS: Final = 1.0
"""The shortest timeout an attempt gets under a ``Config.deadline``: a call ends at most
this long after the deadline."""

_MAX_PREVIEW: Final = 200
_MAX_DEPRECATION_NOTES: Final = 1000
_deprecations_seen: set[tuple[str, str]] = set()
_deprecations_lock = threading.Lock()


class Transport:
    """Sends requests for one :class:`~tinkex.config.Config` through a shared pool.

    Args:
        config: credential, base URL, timeout and retry budget, extra headers.
        pools: where the ``httpx.AsyncClient`` comes from (``Config.http_client`` wins).
        retry_policy: backoff between retries (default: the official SDK's).
        rng: the random source of the backoff jitter; pass a seeded one for repeatable waits.
        sleep: awaited with each delay; ``asyncio.sleep`` by default (never a blocking sleep).
        max_response_bytes: larger responses raise :class:`ResponseTooLargeError`.
    """

    def __init__(
        self,
        config: Config,
        pools: PoolRegistry,
        *,
        retry_policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        sleep: Sleep | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        self._config = config
        self._pools = pools
        self.retry_policy = retry_policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._sleep: Sleep = sleep or asyncio.sleep
        self.max_response_bytes = max_response_bytes
        self._shown_base_url = redact_url(config.base_url)
        self._secrets = config.secrets

    @property
    def config(self) -> Config:
        return self._config

    @property
    def pools(self) -> PoolRegistry:
        return self._pools

    def url(self, path: str) -> str:
        """``<base_url>/api/v1/<path>``; path parameters inside ``path`` are kept raw."""
        return self._config.base_url + API_PREFIX + path.lstrip("/")

    # --- the call ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        sdk_method: str | None = None,
        follow_redirects: bool | None = None,
    ) -> httpx.Response:
        """Send one API call, retrying at the HTTP layer, and return its 2xx/3xx response.

        The response body is fully read (within ``max_response_bytes``). ``json`` (any
        JSON-able value or a pydantic model, dumped without ``None`` fields) and ``content``
        (raw bytes, e.g. protobuf, with ``content_type``) are mutually exclusive. ``timeout``
        (seconds per attempt) and ``max_retries`` default to the config's, and
        ``Config.deadline`` cuts both short (retries stop at it, and no attempt's timeout
        reaches beyond it by more than :data:`LATE_ATTEMPT_SECONDS`); ``sdk_method``
        (e.g. ``"TrainingClient.forward_backward"``) adds ``x-sdk-version``/``x-sdk-method``.
        ``params`` become the query string. ``follow_redirects=False`` returns a redirect as
        the answer (``None``: the HTTP client's own setting, which follows them).

        Raises:
            APIStatusError: a subclass by status, once retries are exhausted or not allowed.
            APIConnectionError: no usable answer (``APITimeoutError`` for a timeout).
            ResponseTooLargeError: the body exceeded ``max_response_bytes`` (not retried).
        """
        call = self._prepare(method, path, json, content, content_type, headers, params, timeout)
        call.sdk_method = sdk_method
        call.follow_redirects = follow_redirects
        retries = self._config.max_retries if max_retries is None else max_retries
        if retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries!r}")

        attempt = 0
        while True:
            request, info = self._build(call, attempt)
            can_retry = attempt < retries
            try:
                response = await self._attempt(call, request, info, attempt)
            except APIConnectionError as exc:
                reason = "timeout" if isinstance(exc, APITimeoutError) else "connection"
                if not (can_retry and await self._wait(attempt, reason, info, None, exc.message)):
                    raise self._exhausted(exc, info, attempt, deadline=can_retry) from exc.__cause__
                attempt += 1
                continue

            status = response.status_code
            if status < 400:
                return response
            if status == 400 and _is_bodyless(response):
                if (
                    can_retry
                    and retry_hint(response.headers) is not False
                    and await self._wait(attempt, "empty_400", info, response, "HTTP 400, no body")
                ):
                    attempt += 1
                    continue
                raise APIConnectionError(
                    f"{info} got HTTP 400 with an empty body{_attempts(attempt)}: that is "
                    "usually a proxy (e.g. Cloudflare) rejecting the connection, not the API; "
                    "check the network, proxy settings and base_url",
                    info,
                )
            if (
                can_retry
                and should_retry_status(status, response.headers)
                and await self._wait(attempt, "status", info, response, f"HTTP {status}")
            ):
                attempt += 1
                continue
            raise self.status_error(response)

    async def send_raw(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        sdk_method: str | None = None,
    ) -> httpx.Response:
        """One attempt, no retries, and the response whatever its status (body read).

        For callers with their own retry loop, such as the future poller, which must see
        408, 410 or 5xx answers itself. Same headers, telemetry span, size limit and
        deprecation logging as :meth:`request`; :meth:`status_error` turns a response into
        the error :meth:`request` would have raised.

        Raises:
            APIConnectionError: no answer (``APITimeoutError`` for a timeout).
            ResponseTooLargeError: the body exceeded ``max_response_bytes``.
        """
        call = self._prepare(method, path, json, content, content_type, headers, params, timeout)
        call.sdk_method = sdk_method
        request, info = self._build(call, 0)
        try:
            return await self._attempt(call, request, info, 0)
        except APIConnectionError as exc:
            raise self._exhausted(exc, info, 0, deadline=False) from exc.__cause__

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        sdk_method: str | None = None,
    ) -> Any:
        """:meth:`request`, then the body parsed as JSON.

        Raises:
            APIResponseValidationError: the body is empty or not JSON (plus what
                :meth:`request` raises).
        """
        response = await self.request(
            method,
            path,
            json=json,
            content=content,
            content_type=content_type,
            headers=headers,
            params=params,
            timeout=timeout,
            max_retries=max_retries,
            sdk_method=sdk_method,
        )
        return self.decode_json(response)

    def decode_json(self, response: httpx.Response) -> Any:
        """Parse a response body read by :meth:`request` as JSON, or raise a clear error."""
        info = RequestInfo(response.request.method, redact_url(str(response.request.url)))
        try:
            return jsonlib.loads(response.content)
        except (UnicodeDecodeError, ValueError):
            text = self._scrub(response.content.decode("utf-8", errors="replace"))
            content_type = response.headers.get("content-type") or "no Content-Type"
            preview = text[:_MAX_PREVIEW] + ("..." if len(text) > _MAX_PREVIEW else "")
            raise APIResponseValidationError(
                f"expected a JSON body from {info} but got {content_type} "
                f"({len(response.content)} bytes: {preview!r}); check that base_url "
                f"({self._shown_base_url}) points at a Tinker API server",
                info,
                body=text or None,
                status_code=response.status_code,
            ) from None

    # --- preparing requests ----------------------------------------------------------------

    def _prepare(
        self,
        method: str,
        path: str,
        json: Any,
        content: bytes | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> _Call:
        read_timeout = self._config.timeout if timeout is None else timeout
        if not (read_timeout > 0 and math.isfinite(read_timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        method = method.upper()
        body, body_type = _encode_body(json, content, content_type)
        return _Call(
            method=method,
            path=path,
            url=self.url(path),
            body=body,
            content_type=body_type,
            headers=headers,
            params=params,
            timeout=read_timeout,
            http_timeout=httpx.Timeout(
                read_timeout, connect=min(self._pools.connect_timeout, read_timeout)
            ),
            idempotency_key=new_idempotency_key() if method != "GET" else None,
            client=self._pools.client_for(self._config),
        )

    def _build(self, call: _Call, attempt: int) -> tuple[httpx.Request, RequestInfo]:
        request_headers = build_headers(
            self._config,
            method=call.method,
            attempt=attempt,
            read_timeout=call.timeout,
            idempotency_key=call.idempotency_key,
            content_type=call.content_type,
            sdk_method=call.sdk_method,
            extra=call.headers,
        )
        try:
            request = call.client.build_request(
                call.method,
                call.url,
                params=call.params,
                content=call.body,
                headers=request_headers,
                timeout=self._attempt_timeout(call),
            )
        except httpx.InvalidURL as exc:
            raise APIError(
                f"cannot build a URL from base_url {self._shown_base_url!r} and path "
                f"{call.path!r}: {exc}",
                RequestInfo(call.method, redact_url(call.url)),
            ) from None
        return request, RequestInfo(call.method, redact_url(str(request.url)))

    # --- one attempt ---------------------------------------------------------------------

    async def _attempt(
        self, call: _Call, request: httpx.Request, info: RequestInfo, attempt: int
    ) -> httpx.Response:
        metadata = {
            "method": request.method,
            "path": request.url.path,
            "attempt": attempt,
            "base_url": self._shown_base_url,
        }
        with telemetry.span(HTTP_REQUEST_EVENT, metadata) as span:
            response = await self._exchange(call, request, info)
            span.measurements["status"] = response.status_code
            span.metadata["status"] = response.status_code
        self._log_deprecation(response)
        return response

    async def _exchange(
        self, call: _Call, request: httpx.Request, info: RequestInfo
    ) -> httpx.Response:
        follow = (
            httpx.USE_CLIENT_DEFAULT if call.follow_redirects is None else call.follow_redirects
        )
        try:
            response = await call.client.send(
                request,
                stream=True,
                follow_redirects=httpx.USE_CLIENT_DEFAULT if follow is None else follow,
            )
            try:
                await self._read_body(response, info)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            seconds = request.extensions.get("timeout", {}).get("read") or call.timeout
            raise APITimeoutError(
                f"{info} timed out after {seconds:g} s ({type(exc).__name__})", info
            ) from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"{info} failed: {_describe_httpx(exc)}", info) from exc
        return response

    async def _read_body(self, response: httpx.Response, info: RequestInfo) -> None:
        limit = self.max_response_bytes
        declared = _content_length(response)
        if declared is not None and declared > limit:
            raise ResponseTooLargeError(
                f"the response to {info} declares {declared} bytes, over the {limit}-byte "
                "limit; it was not read (raise max_response_bytes if it is expected)",
                info,
                limit=limit,
                declared=declared,
            )
        buffer = bytearray()
        async for chunk in response.aiter_bytes():
            if len(buffer) + len(chunk) > limit:
                received = len(buffer) + len(chunk)
                raise ResponseTooLargeError(
                    f"the response to {info} exceeded the {limit}-byte limit after {received} "
                    "bytes and was abandoned (raise max_response_bytes if it is expected)",
                    info,
                    limit=limit,
                    received=received,
                    declared=declared,
                )
            buffer += chunk
        # What httpx's own aread() does: the body is now available as .content/.json().
        response._content = bytes(buffer)

    # --- retries and failures ------------------------------------------------------------

    async def _wait(
        self,
        attempt: int,
        reason: str,
        info: RequestInfo,
        response: httpx.Response | None,
        error: str,
    ) -> bool:
        """Wait before the next attempt, at most until ``Config.deadline``; ``False`` (no
        retry) once the deadline has passed."""
        delay = self.retry_policy.delay(
            attempt, self._rng, None if response is None else response.headers
        )
        left = self._time_left()
        if left is not None:
            if left <= 0:
                return False
            delay = min(delay, left)
        next_attempt = attempt + 1
        telemetry.execute(
            RETRY_ATTEMPT_EVENT,
            {"delay": delay, "attempt": next_attempt},
            {
                "attempt": next_attempt,
                "reason": reason,
                "status": None if response is None else response.status_code,
                "error": error,
                "method": info.method,
                "path": httpx.URL(info.url).path,
                "base_url": self._shown_base_url,
            },
        )
        log.info("Retrying %s in %.3f s (retry %d, %s)", info, delay, next_attempt, error)
        await self._sleep(delay)
        return True

    def _time_left(self) -> float | None:
        """Seconds until ``Config.deadline`` (negative once past it), ``None`` without one."""
        deadline = self._config.deadline
        return None if deadline is None else deadline - time.monotonic()

    def _attempt_timeout(self, call: _Call) -> httpx.Timeout:
        """The call's timeout, cut to the time left before ``Config.deadline`` but never
        below :data:`LATE_ATTEMPT_SECONDS` (so that a call made at or after the deadline, such
        as finishing the session, still gets one short attempt)."""
        left = self._time_left()
        seconds = None if left is None else max(left, LATE_ATTEMPT_SECONDS)
        if seconds is None or seconds >= call.timeout:
            return call.http_timeout
        return httpx.Timeout(seconds, connect=min(self._pools.connect_timeout, seconds))

    def _exhausted(
        self, exc: APIConnectionError, info: RequestInfo, attempt: int, *, deadline: bool
    ) -> APIError:
        """The error of a call given up on: retries exhausted, or (``deadline``) no time left."""
        if deadline:
            return APITimeoutError(
                f"{exc.message}{_attempts(attempt)}, the last one at the deadline of the whole "
                "operation",
                info,
            )
        where = f"could not reach {self._shown_base_url}"
        advice = "check base_url (or TINKER_BASE_URL), the network, and that the server is running"
        if isinstance(exc, APITimeoutError):
            return APITimeoutError(
                f"{exc.message}{_attempts(attempt)}: the server at {self._shown_base_url} is "
                "slow or unreachable; raise timeout= or " + advice,
                info,
            )
        return APIConnectionError(f"{where}: {exc.message}{_attempts(attempt)}; {advice}", info)

    def status_error(self, response: httpx.Response) -> APIStatusError:
        """The :mod:`tinkex.errors` exception for a 4xx/5xx response read by this transport.

        The message names the request and how many attempts it took (from the
        ``x-stainless-retry-count`` it carried) and includes the server's explanation, with
        the configured secrets scrubbed out.
        """
        info = RequestInfo(response.request.method, redact_url(str(response.request.url)))
        try:
            attempt = int(response.request.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            attempt = 0
        text = self._scrub(response.content.decode("utf-8", errors="replace"))
        body: object | None = None
        if text.strip():
            try:
                body = jsonlib.loads(text)
            except ValueError:
                body = text
        return make_status_error(
            response.status_code,
            f"HTTP {response.status_code} from {info}{_attempts(attempt)}",
            info,
            body,
            response.headers,
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret and secret in text:
                text = text.replace(secret, "***")
        return text

    def _log_deprecation(self, response: httpx.Response) -> None:
        note = response.headers.get("x-deprecation-note")
        if not note:
            return
        error = response.headers.get("x-deprecation-level", "").strip().lower() == "error"
        level = "error" if error else "warning"
        with _deprecations_lock:
            if (level, note) in _deprecations_seen:
                return
            if len(_deprecations_seen) < _MAX_DEPRECATION_NOTES:
                _deprecations_seen.add((level, note))
        log.log(logging.ERROR if error else logging.WARNING, "Deprecation notice: %s", note)


def _encode_body(
    json: Any, content: bytes | None, content_type: str | None
) -> tuple[bytes | None, str | None]:
    if json is not None and content is not None:
        raise TypeError("pass either json= or content=, not both")
    if content is not None:
        return content, content_type or "application/octet-stream"
    if json is None:
        return None, content_type
    value = json.model_dump(mode="json", exclude_none=True) if isinstance(json, BaseModel) else json
    encoded = jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return encoded, content_type or JSON_CONTENT_TYPE


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _is_bodyless(response: httpx.Response) -> bool:
    """An empty 400, or one without Content-Length: a proxy's rejection (PROTOCOL §1.5)."""
    return not response.content or response.headers.get("content-length") is None


def _attempts(attempt: int) -> str:
    return "" if attempt == 0 else f" after {attempt + 1} attempts"


def _describe_httpx(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Call:
    """What stays the same across the attempts of one call."""

    method: str
    path: str
    url: str
    body: bytes | None
    content_type: str | None
    headers: Mapping[str, str] | None
    params: Mapping[str, Any] | None
    timeout: float
    http_timeout: httpx.Timeout
    idempotency_key: str | None
    client: httpx.AsyncClient
    sdk_method: str | None = None
    follow_redirects: bool | None = None

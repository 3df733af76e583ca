"""The one exception hierarchy of tinkex.

Every error tinkex raises on purpose is a :class:`TinkexError`. The HTTP family mirrors the
official ``tinker`` SDK's names (``TinkerError`` is an alias of :class:`TinkexError`) so code
ported from it keeps its ``except`` clauses::

    TinkexError
    ├── ConfigError (also ValueError)                      a setting is missing or malformed
    ├── APIError                                           something went wrong talking to the API
    │   ├── APIStatusError                                 the server answered 4xx/5xx
    │   │   ├── BadRequestError 400, AuthenticationError 401, BillingError 402,
    │   │   ├── PermissionDeniedError 403, NotFoundError 404, ConflictError 409,
    │   │   └── UnprocessableEntityError 422, RateLimitError 429, InternalServerError >=500
    │   ├── APIConnectionError                             no usable answer (refused, dropped, ...)
    │   │   └── APITimeoutError                            the request timed out
    │   ├── APIResponseValidationError                     the answer is not what the API promises
    │   ├── ResponseTooLargeError                          the answer exceeds the size limit
    │   └── RetryableFutureError                           a future answered 410 (expired)
    ├── RequestFailedError                                 the server ran the request and it failed
    ├── FutureTimeoutError (also TimeoutError)             waiting on a future timed out
    └── TokenizerError                                     a tokenizer cannot be found or loaded

Errors carry what a caller needs to react (status code, parsed body, a safe subset of the
response headers, the request's method and URL) but never the request headers: API keys and
other secrets appear in no message, attribute or repr.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "ConfigError",
    "ConflictError",
    "ErrorCategory",
    "FutureTimeoutError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestFailedError",
    "RequestInfo",
    "ResponseInfo",
    "ResponseTooLargeError",
    "RetryableFutureError",
    "TinkerError",
    "TinkexError",
    "TokenizerError",
    "UnprocessableEntityError",
    "error_detail",
    "mask_secret",
    "redact_url",
    "retry_after_seconds",
    "status_error",
]

ErrorCategory = Literal["user", "server", "unknown"]

SAFE_RESPONSE_HEADERS: Final = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "date",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "x-request-id",
        "request-id",
        "www-authenticate",
        "x-deprecation-note",
        "x-deprecation-level",
    }
)
"""Response headers kept on :class:`APIStatusError` (nothing that can carry a credential)."""

_SECRET_QUERY_MARKERS: Final = (
    "key",
    "token",
    "secret",
    "password",
    "signature",
    "sig",
    "auth",
    "credential",
)
_MAX_DETAIL_CHARS: Final = 1000
_MASK: Final = "***"
PUBLIC_KEY_PREFIX: Final = "tml-"
"""What every Tinker API key starts with: the only part of one :func:`mask_secret` shows."""


def mask_secret(value: str | None) -> str | None:
    """``'tml-***'`` for a Tinker key, ``'***'`` for anything else.

    Only the fixed public prefix ``tml-`` is ever shown: no character of the value itself
    (a JWT's fourth character, a mistyped key's first ones) leaves this function.
    """
    if value is None:
        return None
    return PUBLIC_KEY_PREFIX + _MASK if value.startswith(PUBLIC_KEY_PREFIX) else _MASK


def redact_url(url: str) -> str:
    """``url`` without userinfo and with secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (name, _MASK if any(m in name.lower() for m in _SECRET_QUERY_MARKERS) else value)
                for name, value in pairs
            ],
            safe="*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class RequestInfo:
    """The request an :class:`APIError` is about: its method and redacted URL, no headers."""

    method: str
    url: str

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


@dataclass(frozen=True)
class ResponseInfo:
    """What an :class:`APIStatusError` keeps of the response: status and safe headers."""

    status_code: int
    headers: Mapping[str, str]


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class TinkexError(Exception):
    """Base of every error tinkex raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default pickling of exceptions.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


TinkerError = TinkexError
"""The official SDK's name for the base class, for ported code."""


class ConfigError(TinkexError, ValueError):
    """A setting is missing or malformed; ``field`` names the ``Config`` field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class APIError(TinkexError):
    """Something went wrong talking to the API.

    Attributes:
        message: the human-readable explanation (also ``str(error)``).
        request: method and URL of the request (URL without userinfo or query secrets), or
            ``None`` when there was no single request.
        body: the response body, parsed JSON if it was JSON, else its text; ``None`` if none.
    """

    def __init__(
        self, message: str, request: RequestInfo | None = None, *, body: object | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body

    @property
    def method(self) -> str | None:
        return None if self.request is None else self.request.method

    @property
    def url(self) -> str | None:
        return None if self.request is None else self.request.url


class APIStatusError(APIError):
    """The server answered with a 4xx/5xx status (the subclass names which one)."""

    def __init__(
        self,
        message: str,
        request: RequestInfo | None = None,
        *,
        status_code: int,
        body: object | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, request, body=body)
        self.status_code = status_code
        safe = {
            name.lower(): value
            for name, value in (headers or {}).items()
            if name.lower() in SAFE_RESPONSE_HEADERS
        }
        self.response = ResponseInfo(status_code, safe)
        """Status code and a safe subset of the response headers (see ``SAFE_RESPONSE_HEADERS``)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The kept response headers, lower-case names."""
        return self.response.headers

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id`` (or ``request-id``), for support requests."""
        return self.headers.get("x-request-id") or self.headers.get("request-id")


class BadRequestError(APIStatusError):
    """400: the server rejected the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong, or not valid for this server."""


class BillingError(APIStatusError):
    """402: the account cannot be billed for this request."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but not allowed to do this."""


class NotFoundError(APIStatusError):
    """404: the endpoint or the resource (model, checkpoint, session, ...) does not exist."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's current state."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if it sent one."""

    def __init__(
        self,
        message: str,
        request: RequestInfo | None = None,
        *,
        status_code: int = 429,
        body: object | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, request, status_code=status_code, body=body, headers=headers)
        self.retry_after = retry_after if retry_after is not None else retry_after_seconds(headers)


class InternalServerError(APIStatusError):
    """>=500: the server failed; usually transient."""


class APIConnectionError(APIError):
    """No usable answer: the connection was refused, dropped, reset, or proxied away."""


class APITimeoutError(APIConnectionError):
    """The request did not complete within its timeout."""


class APIResponseValidationError(APIError):
    """The server answered, but not with what the API promises (e.g. not JSON)."""

    def __init__(
        self,
        message: str,
        request: RequestInfo | None = None,
        *,
        body: object | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, request, body=body)
        self.status_code = status_code


class ResponseTooLargeError(APIError):
    """A response body exceeded the transport's size limit and was not read any further."""

    def __init__(
        self,
        message: str,
        request: RequestInfo | None = None,
        *,
        limit: int,
        received: int | None = None,
        declared: int | None = None,
    ) -> None:
        super().__init__(message, request)
        self.limit = limit
        """The limit in bytes."""
        self.received = received
        """Bytes read before giving up (``None`` when refused on ``Content-Length`` alone)."""
        self.declared = declared
        """The response's ``Content-Length``, if it sent one."""


class RetryableFutureError(APIError):
    """A future answered 410: its result expired or was lost; resubmitting may succeed."""

    def __init__(
        self,
        message: str,
        request: RequestInfo | None = None,
        *,
        body: object | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request, body=body)
        self.request_id = request_id


class RequestFailedError(TinkexError):
    """The server ran the request and reports that it failed.

    ``category`` says whose fault it was: ``"user"`` (bad input: fix the call),
    ``"server"`` (retrying may help) or ``"unknown"``.
    """

    def __init__(
        self, message: str, *, request_id: str | None = None, category: str = "unknown"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.category: ErrorCategory = (
            cast(ErrorCategory, category) if category in ("user", "server") else "unknown"
        )


class FutureTimeoutError(TinkexError, TimeoutError):
    """Waiting on a future's result took longer than the caller's timeout.

    The request itself may still complete on the server.
    """

    def __init__(
        self, message: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.timeout = timeout


class TokenizerError(TinkexError):
    """A tokenizer cannot be resolved, found or loaded.

    The message names the tokenizer id tried, where it was looked for (a local path, the
    Hugging Face cache directory) and how to provide the files offline. ``tokenizer_id`` is
    the id (or local path) that was tried, when there was one.
    """

    def __init__(self, message: str, *, tokenizer_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tokenizer_id = tokenizer_id


# --- status → class --------------------------------------------------------------------------

_STATUS_CLASSES: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

_HINTS: Final[dict[type[APIStatusError], str]] = {
    BadRequestError: "the server rejected the request as invalid; check the arguments",
    AuthenticationError: (
        "check the API key (api_key= or TINKER_API_KEY) and that it belongs to this base_url"
    ),
    BillingError: "the account cannot be billed; check its billing status in the Tinker console",
    PermissionDeniedError: "this API key is not allowed to do that; check its project and rights",
    NotFoundError: "the endpoint or resource does not exist; check the id and the base_url",
    ConflictError: "the request conflicts with the resource's current state; retry later",
    UnprocessableEntityError: "the server could not process the arguments; check them",
    RateLimitError: "rate limited: slow down and retry later",
    InternalServerError: "the server failed; this is usually transient, retry later",
}


def status_class(status: int) -> type[APIStatusError]:
    """The :class:`APIStatusError` subclass for an HTTP status."""
    if status >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status, APIStatusError)


def status_error(
    status: int,
    message: str,
    request: RequestInfo | None = None,
    body: object | None = None,
    headers: Mapping[str, str] | None = None,
) -> APIStatusError:
    """Build the error for an HTTP ``status``: the right subclass, with a full message.

    ``message`` says what happened (e.g. ``"HTTP 404 from GET http://…/api/v1/x"``); the
    server's ``detail``/``error`` text (when the body has one) and a hint on what to do are
    appended.
    """
    cls = status_class(status)
    parts = [message]
    detail = error_detail(body)
    if detail and detail not in message:
        parts.append(f": {detail}")
    hint = _HINTS.get(cls)
    if cls is RateLimitError:
        retry_after = retry_after_seconds(headers)
        if retry_after is not None:
            hint = f"{hint} (the server asks to wait {retry_after:g} s)"
    if hint:
        parts.append(f" ({hint})")
    return cls("".join(parts), request, status_code=status, body=body, headers=headers)


def error_detail(body: object | None) -> str | None:
    """The server's explanation in an error body: ``detail``, ``error`` or ``message``.

    FastAPI-style validation lists (``[{"loc": [...], "msg": "..."}]``) are flattened; a
    plain-text body is used as is. Long texts are truncated.
    """
    text: str | None = None
    if isinstance(body, Mapping):
        for key in ("detail", "error", "message"):
            value = body.get(key)
            if value:
                text = _describe(value)
                break
    elif isinstance(body, str):
        text = body.strip() or None
    if text is None:
        return None
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[: _MAX_DETAIL_CHARS - 3] + "..."
    return text


def _describe(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("message") or value.get("msg") or value.get("detail")
        if isinstance(inner, str):
            return inner
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, Mapping) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else ""
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                parts.append(_describe(item))
        return "; ".join(parts)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def retry_after_seconds(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """The wait a response asks for, in seconds, or ``None`` if it asks for none.

    ``retry-after-ms`` (milliseconds) wins over ``retry-after``, which may be seconds (an
    integer or, non-standard, a float) or an HTTP date (relative to ``now``, default the
    current time). The value is returned as sent; deciding whether it is reasonable (the
    transport honours 0 < value <= 60 s) is up to the caller.
    """
    if not headers:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) else None
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed)) - (time.time() if now is None else now)

"""The error hierarchy: classes by status, messages, safe attributes, pickling."""

from __future__ import annotations

import email.utils
import pickle

import pytest

from tinkex import errors
from tinkex.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ConfigError,
    FutureTimeoutError,
    RateLimitError,
    RequestFailedError,
    RequestInfo,
    ResponseTooLargeError,
    RetryableFutureError,
    TinkerError,
    TinkexError,
    error_detail,
    mask_secret,
    redact_url,
    retry_after_seconds,
    status_error,
)

REQUEST = RequestInfo("POST", "http://h/api/v1/x")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (402, errors.BillingError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.UnprocessableEntityError),
        (429, errors.RateLimitError),
        (500, errors.InternalServerError),
        (503, errors.InternalServerError),
        (599, errors.InternalServerError),
        (418, APIStatusError),
        (410, APIStatusError),
    ],
)
def test_status_error_picks_the_class(status: int, cls: type[APIStatusError]) -> None:
    error = status_error(status, f"HTTP {status} from {REQUEST}", REQUEST, None, {})
    assert type(error) is cls
    assert error.status_code == status and error.response.status_code == status
    assert isinstance(error, APIError) and isinstance(error, TinkexError)


def test_message_includes_the_server_detail_and_a_hint() -> None:
    error = status_error(401, "HTTP 401 from POST x", REQUEST, {"detail": "invalid API key"}, {})
    assert str(error).startswith("HTTP 401 from POST x: invalid API key (check the API key")
    assert error.message == str(error)
    assert error.request == REQUEST and error.method == "POST" and error.url == REQUEST.url


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"detail": "model 'x' does not exist"}, "model 'x' does not exist"),
        ({"error": "boom", "detail": None}, "boom"),
        ({"error": {"message": "nested"}}, "nested"),
        ({"message": "plain"}, "plain"),
        (
            {"detail": [{"loc": ["body", "seq_id"], "msg": "field required"}]},
            "body.seq_id: field required",
        ),
        ("upstream text", "upstream text"),
        ({"other": 1}, None),
        (None, None),
        ("   ", None),
    ],
)
def test_error_detail(body: object, detail: str | None) -> None:
    assert error_detail(body) == detail


def test_long_details_are_truncated() -> None:
    detail = error_detail({"detail": "x" * 5000})
    assert detail is not None and len(detail) == 1000 and detail.endswith("...")


def test_status_error_keeps_only_safe_headers() -> None:
    headers = {
        "Content-Type": "application/json",
        "Set-Cookie": "session=secret",
        "X-API-Key": "tml-echoed",
        "x-request-id": "req-1",
    }
    error = status_error(500, "HTTP 500", REQUEST, {"detail": "x"}, headers)
    assert dict(error.headers) == {"content-type": "application/json", "x-request-id": "req-1"}
    assert error.request_id == "req-1"


def test_rate_limit_error_reads_retry_after() -> None:
    error = status_error(429, "HTTP 429", REQUEST, None, {"retry-after-ms": "1500"})
    assert isinstance(error, RateLimitError) and error.retry_after == 1.5
    assert "1.5 s" in str(error)
    assert RateLimitError("x").retry_after is None


def test_retry_after_seconds_forms() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=now) == 42.0
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0.25"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0
    assert retry_after_seconds({"retry-after": "whenever"}) is None
    assert retry_after_seconds({"retry-after": "nan"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


def test_hierarchy_matches_the_official_names() -> None:
    assert TinkerError is TinkexError
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, TinkexError)
    assert issubclass(FutureTimeoutError, TimeoutError)
    assert issubclass(RetryableFutureError, APIError)
    assert issubclass(ResponseTooLargeError, APIError)
    assert not issubclass(RequestFailedError, APIError)


def test_request_failed_error_categories() -> None:
    assert RequestFailedError("bad", request_id="r", category="user").category == "user"
    assert RequestFailedError("bad", category="server").category == "server"
    assert RequestFailedError("bad", category="weird").category == "unknown"


@pytest.mark.parametrize(
    "error",
    [
        status_error(404, "HTTP 404", REQUEST, {"detail": "gone"}, {"x-request-id": "r"}),
        status_error(429, "HTTP 429", REQUEST, None, {"retry-after": "2"}),
        APITimeoutError("slow", REQUEST),
        ConfigError("bad url", field="base_url"),
        RequestFailedError("failed", request_id="r1", category="user"),
        FutureTimeoutError("waited", request_id="r2", timeout=1.5),
        ResponseTooLargeError("big", REQUEST, limit=10, received=11),
        RetryableFutureError("expired", REQUEST, request_id="r3"),
    ],
)
def test_errors_survive_pickling(error: TinkexError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and str(clone) == str(error)
    assert clone.__dict__ == error.__dict__


def test_mask_secret() -> None:
    assert mask_secret("tml-abcdefghijkl") == "tml-***"
    assert mask_secret("short") == "***"
    assert mask_secret(None) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/api/v1/x?limit=5", "http://h/api/v1/x?limit=5"),
        ("http://h/x?api_key=tml-s&limit=2", "http://h/x?api_key=***&limit=2"),
        ("http://h/x?token=abc", "http://h/x?token=***"),
        ("https://user:pw@h:1/x", "https://***@h:1/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown

"""Building events: user-error classification, sanitizing, severities, the wire shape."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from tinkex.errors import (
    APIConnectionError,
    BadRequestError,
    RateLimitError,
    RequestFailedError,
    RetryableFutureError,
    status_error,
)
from tinkex.reporting.events import (
    MAX_ITEMS,
    MAX_STRING,
    USER_ERROR_EVENT,
    check_severity,
    exception_event,
    generic_event,
    is_user_error,
    sanitize,
    session_end_event,
    session_start_event,
    signal_event,
)
from tinkex.telemetry import looks_secret
from tinkex.types import (
    GenericEvent,
    TelemetrySendRequest,
    UnhandledExceptionEvent,
)

SECRET = "tml-very-secret-key"


@pytest.mark.parametrize(
    ("error", "user"),
    [
        (status_error(400, "bad", None, None, None), True),
        (status_error(404, "missing", None, None, None), True),
        (status_error(422, "invalid", None, None, None), True),
        (status_error(408, "timeout", None, None, None), False),
        (RateLimitError("slow down", None), False),
        (RetryableFutureError("gone", None), False),
        (status_error(500, "oops", None, None, None), False),
        (RequestFailedError("bad input", category="user"), True),
        (RequestFailedError("server broke", category="server"), False),
        (RequestFailedError("who knows"), False),
        (APIConnectionError("no route"), False),
        (ValueError("plain"), False),
    ],
)
def test_user_errors_are_4xx_other_than_408_410_429_or_user_category(
    error: BaseException, user: bool
) -> None:
    assert is_user_error(error) is user


def test_a_user_error_is_found_through_the_exception_chain_even_with_cycles() -> None:
    try:
        try:
            raise BadRequestError("rejected", None, status_code=400)
        except BadRequestError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as wrapped:
        chained = wrapped
    assert is_user_error(chained)

    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first  # a cycle, and no user error
    assert not is_user_error(first)


def test_a_user_error_becomes_a_user_error_event() -> None:
    error = RequestFailedError(f"bad token (key {SECRET})", category="user", request_id="r1")
    event = exception_event(3, error, "ERROR", (SECRET,))
    assert isinstance(event, GenericEvent)
    assert event.event_name == USER_ERROR_EVENT
    assert event.severity == "WARNING"
    assert event.event_session_index == 3
    assert event.event_data == {
        "error_type": "RequestFailedError",
        "message": "bad token (key ***)",
        "category": "user",
        "request_id": "r1",
    }


def test_any_other_error_is_an_unhandled_exception_with_a_scrubbed_traceback() -> None:
    def fail() -> None:
        raise RuntimeError(f"crashed while holding {SECRET}")

    try:
        fail()
    except RuntimeError as error:
        event = exception_event(0, error, "CRITICAL", (SECRET,))
    assert isinstance(event, UnhandledExceptionEvent)
    assert event.severity == "CRITICAL"
    assert event.error_type == "RuntimeError"
    assert event.error_message == "crashed while holding ***"
    assert event.traceback is not None
    assert "in fail" in event.traceback and SECRET not in event.traceback


def test_sanitize_keeps_json_and_hides_secrets() -> None:
    class Odd:
        def __repr__(self) -> str:
            return f"Odd({SECRET})"

    data: dict[str, Any] = {
        "n": 1,
        "ok": True,
        "none": None,
        "ratio": 0.5,
        "inf": math.inf,
        "text": f"Bearer {SECRET}",
        "api_key": "whatever",
        "Authorization": "Basic abc",
        "headers": {"X-API-Key": SECRET},
        "nested": {"token_count": 3, "tuple": (1, 2), "set": {7}, "access_token": "t"},
        "error": ValueError("bad value"),
        "odd": Odd(),
        42: "int key",
    }
    assert sanitize(data, (SECRET,)) == {
        "n": 1,
        "ok": True,
        "none": None,
        "ratio": 0.5,
        "inf": "inf",
        "text": "Bearer ***",
        "api_key": "***",
        "Authorization": "***",
        "nested": {"token_count": 3, "tuple": [1, 2], "set": [7], "access_token": "***"},
        "error": "ValueError: bad value",
        "odd": "Odd(***)",
        "42": "int key",
    }


SECRET_KEYS = [
    "api_key",
    "X-API-Key",
    "apiKey",
    "APIKey",
    "key",
    "access_token",
    "token",
    "HF_TOKEN",
    "refreshToken",
    "secret",
    "client_secret",
    "secret_value",
    "password",
    "db-password",
    "Authorization",
    "proxy.authorization",
    "cookie",
    "credentials",
]
ML_KEYS = [
    "num_tokens",
    "max_tokens",
    "maxTokens",
    "tokens",
    "token_count",
    "token_type",
    "tokenizer_id",
    "keys_seen",
    "key_dim",
    "monkey",
    "keyboard",
    "turnkey_jobs",
    "secretary",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_key_that_names_a_secret_is_masked(key: str) -> None:
    assert looks_secret(key)
    assert sanitize({key: "value"}) == {key: "***"}


@pytest.mark.parametrize("key", ML_KEYS)
def test_ordinary_ml_data_is_not_mistaken_for_a_secret(key: str) -> None:
    # Secret words count as whole words of the key ("token" alone, not "tokens" or
    # "token_count"): masking these would hide the data the events are sent for.
    assert not looks_secret(key)
    assert sanitize({key: 512}) == {key: 512}


def test_sanitize_bounds_size_and_depth() -> None:
    deep: dict[str, Any] = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    assert sanitize(deep) == {"a": {"b": {"c": {"d": "{'e': 1}"}}}}
    long = sanitize("x" * (MAX_STRING * 2))
    assert len(long) == MAX_STRING and long.endswith("...")
    assert len(sanitize(list(range(MAX_ITEMS * 2)))) == MAX_ITEMS
    assert len(sanitize({str(i): i for i in range(MAX_ITEMS * 2)})) == MAX_ITEMS


@pytest.mark.parametrize(
    ("event", "metadata", "severity"),
    [
        ("tinkex.http.request.stop", {"status": 200, "path": "/api/v1/x"}, "INFO"),
        ("tinkex.http.request.stop", {"status": 503}, "WARNING"),
        ("tinkex.http.request.exception", {"reason": OSError("reset")}, "ERROR"),
        ("tinkex.queue.state_change", {"queue_state": "paused_capacity"}, "WARNING"),
        ("tinkex.queue.state_change", {"queue_state": "active"}, "INFO"),
        ("tinkex.future.api_error", {"error": status_error(500, "x", None, None, None)}, "ERROR"),
    ],
)
def test_forwarded_signals_get_a_severity_from_what_happened(
    event: str, metadata: dict[str, Any], severity: str
) -> None:
    forwarded = signal_event(0, event, {"duration": 5}, metadata)
    assert forwarded.event_name == event
    assert forwarded.severity == severity


def test_a_forwarded_signal_drops_local_noise_and_secrets() -> None:
    forwarded = signal_event(
        1,
        "tinkex.http.request.stop",
        {"duration": 7, "monotonic_time": 123, "status": 200},
        {
            "session_id": "s-1",
            "telemetry_span_context": 9,
            "stacktrace": object(),
            "path": "/api/v1/asample",
            "idempotency_key": "tinkex-retry-1",
            "note": f"key={SECRET}",
        },
        (SECRET,),
    )
    assert forwarded.event_data == {
        "measurements": {"duration": 7, "status": 200},
        "metadata": {"path": "/api/v1/asample", "idempotency_key": "***", "note": "key=***"},
    }


def test_a_failed_future_of_the_users_making_is_forwarded_as_a_user_error() -> None:
    error = RequestFailedError("prompt token id 300 is outside the vocabulary", category="user")
    forwarded = signal_event(
        2, "tinkex.future.request_failed", {"duration": 1}, {"error": error, "request_id": "r"}
    )
    assert forwarded.event_name == USER_ERROR_EVENT
    assert forwarded.severity == "WARNING"
    assert forwarded.event_data["signal"] == "tinkex.future.request_failed"
    assert forwarded.event_data["category"] == "user"


def test_severity_is_checked_case_insensitively() -> None:
    assert check_severity("warning") == "WARNING"
    with pytest.raises(ValueError, match="severity must be one of DEBUG, INFO, WARNING"):
        check_severity("loud")


def test_built_events_are_valid_on_the_wire() -> None:
    events = [
        session_start_event(0),
        generic_event(1, "x", {"a": [1, 2]}, "DEBUG"),
        exception_event(2, RuntimeError("boom"), "ERROR"),
        session_end_event(3, timedelta(minutes=1, seconds=2.5)),
    ]
    request = TelemetrySendRequest(
        events=events, platform="Linux", sdk_version="0.38.0", session_id="s", process_uuid="p"
    )
    wire = request.to_wire()
    assert [e["event"] for e in wire["events"]] == [
        "SESSION_START",
        "GENERIC_EVENT",
        "UNHANDLED_EXCEPTION",
        "SESSION_END",
    ]
    assert wire["events"][3]["duration"] == "0:01:02.500000"
    assert TelemetrySendRequest.model_validate(wire) == request
    assert len({e.event_id for e in events}) == 4

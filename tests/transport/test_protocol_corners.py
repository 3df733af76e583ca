"""Protocol corners ``tinkex serve`` never produces, through an injected ``httpx.MockTransport``.

Each test states the corner: bodyless 400s, ``Retry-After`` forms, ``x-should-retry``,
oversized bodies, deprecation headers, timeouts, non-JSON bodies, echoed secrets.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from tinkex.config import Config
from tinkex.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
)
from tinkex.transport import PoolRegistry, Transport

from .conftest import Events, mock_client

KEY = "tml-mock-secret-key-abcdef"
BASE = "http://mock.test/prefix"


class Script:
    """Answers requests with the given responses in order (the last one repeats)."""

    def __init__(self, *responses: Callable[[], httpx.Response] | httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses[min(len(self.requests), len(self.responses)) - 1]
        return answer() if callable(answer) else answer


class Sleeps:
    """A ``sleep`` that records delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def transport_for(pools: PoolRegistry, sleeps: Sleeps) -> Iterator[Callable[..., Transport]]:
    clients: list[httpx.AsyncClient] = []

    def build(handler: Callable[[httpx.Request], Any], **kwargs: Any) -> Transport:
        client = mock_client(handler)
        clients.append(client)
        overrides = {"max_retries": kwargs.pop("max_retries", 3), **kwargs.pop("config", {})}
        config = Config(api_key=KEY, base_url=BASE, http_client=client, **overrides)
        return Transport(config, pools, sleep=sleeps, rng=random.Random(7), **kwargs)

    yield build
    for client in clients:
        assert not client.is_closed  # injected clients are the caller's to close


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# --- the 400-without-body rule ---------------------------------------------------------------


async def test_empty_400_is_retried_as_a_connection_error(
    transport_for: Callable[..., Transport], retries: Events
) -> None:
    script = Script(httpx.Response(400), ok)
    response = await transport_for(script).request("POST", "x", json={})
    assert response.status_code == 200
    assert "content-length" not in httpx.Response(400).headers
    assert [(m["reason"], m["status"]) for _, _, m in retries] == [("empty_400", 400)]


async def test_400_with_a_streamed_body_but_no_length_is_retried(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(lambda: httpx.Response(400, content=_chunks(b'{"detail": "x"}')), ok)
    assert (await transport_for(script).request("POST", "x")).status_code == 200
    assert len(script.requests) == 2


async def test_empty_400_after_the_budget_is_a_connection_error(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(lambda: httpx.Response(400))
    with pytest.raises(APIConnectionError) as caught:
        await transport_for(script, max_retries=2).request("POST", "x")
    assert "empty body" in str(caught.value) and "proxy" in str(caught.value)
    assert len(script.requests) == 3


async def test_real_400_is_a_bad_request_and_not_retried(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(httpx.Response(400, json={"detail": "seq_id must be positive"}))
    with pytest.raises(BadRequestError, match="seq_id must be positive"):
        await transport_for(script).request("POST", "x")
    assert len(script.requests) == 1


# --- retry hints -----------------------------------------------------------------------------


async def test_retry_after_forms_are_honoured_up_to_60_s(
    transport_for: Callable[..., Transport], sleeps: Sleeps
) -> None:
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    script = Script(
        httpx.Response(503, headers={"Retry-After": in_30s}),
        httpx.Response(429, headers={"Retry-After": "2.5"}),
        httpx.Response(503, headers={"retry-after-ms": "150", "Retry-After": "9"}),
        httpx.Response(503, headers={"Retry-After": "120"}),  # too long: normal backoff
        ok,
    )
    await transport_for(script, max_retries=4).request("POST", "x")
    date_delay, seconds, millis, backoff = sleeps.delays
    assert 20 < date_delay <= 30
    assert (seconds, millis) == (2.5, 0.15)
    assert 4 * 0.75 <= backoff <= 4  # 4th retry (k=3): min(0.5 * 2**3, 10) with jitter


async def test_x_should_retry_overrides_the_status(
    transport_for: Callable[..., Transport],
) -> None:
    forced = Script(
        httpx.Response(400, json={"detail": "busy"}, headers={"x-should-retry": "true"}), ok
    )
    assert (await transport_for(forced).request("POST", "x")).status_code == 200
    assert len(forced.requests) == 2

    refused = Script(
        httpx.Response(503, json={"detail": "down"}, headers={"x-should-retry": "false"})
    )
    with pytest.raises(InternalServerError, match="down"):
        await transport_for(refused).request("POST", "x")
    assert len(refused.requests) == 1


async def test_backoff_is_exponential_capped_jittered_and_seeded(
    transport_for: Callable[..., Transport], sleeps: Sleeps
) -> None:
    script = Script(lambda: httpx.Response(502, json={"detail": "bad gateway"}))
    with pytest.raises(InternalServerError):
        await transport_for(script, max_retries=7).request("POST", "x")
    rng = random.Random(7)
    expected = [min(0.5 * 2**k, 10.0) * rng.uniform(0.75, 1.0) for k in range(7)]
    assert sleeps.delays == expected
    assert all(0.375 <= d <= 10.0 for d in sleeps.delays)


async def test_rate_limit_error_carries_retry_after(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimitError) as caught:
        await transport_for(script, max_retries=0).request("POST", "x")
    assert caught.value.retry_after == 7.0
    assert "slow down" in str(caught.value) and "7 s" in str(caught.value)


async def test_timeouts_are_retried_then_raised(
    transport_for: Callable[..., Transport], retries: Events
) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(APITimeoutError) as caught:
        await transport_for(hang, max_retries=1).request("POST", "x", timeout=3)
    assert "timed out after 3 s" in str(caught.value) and "after 2 attempts" in str(caught.value)
    assert [m["reason"] for _, _, m in retries] == ["timeout"]


async def test_a_deadline_cuts_each_attempt_and_stops_the_retries(
    transport_for: Callable[..., Transport], sleeps: Sleeps
) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    # A deadline 3 s away: the 60 s attempt is cut to what is left, and backoff waits with it.
    late = transport_for(hang, max_retries=50, config={"deadline": time.monotonic() + 3})
    with pytest.raises(APITimeoutError):
        await late.request("POST", "x", timeout=60, max_retries=2)
    # (the fake sleeps never pass time, so the retry budget ends this one)
    assert all(delay <= 3 for delay in sleeps.delays)

    script = Script(lambda: httpx.Response(503, json={"detail": "busy"}))
    past = transport_for(script, max_retries=50, config={"deadline": time.monotonic() - 1})
    with pytest.raises(InternalServerError):
        await past.request("POST", "x", timeout=60)
    assert len(script.requests) == 1, "no retry once the deadline has passed"
    [request] = script.requests
    assert request.extensions["timeout"]["read"] == 1.0  # the last, short attempt


async def test_a_connection_failing_past_the_deadline_says_so(
    transport_for: Callable[..., Transport],
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    past = transport_for(refuse, max_retries=50, config={"deadline": time.monotonic() - 1})
    with pytest.raises(APIConnectionError) as caught:
        await past.request("POST", "x")
    assert "deadline of the whole operation" in str(caught.value)


# --- response size limit ---------------------------------------------------------------------


async def test_declared_oversized_body_is_refused_unread(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(httpx.Response(200, content=b"x" * 2048))
    with pytest.raises(ResponseTooLargeError) as caught:
        await transport_for(script, max_response_bytes=1024).request("GET", "big")
    assert (caught.value.declared, caught.value.received, caught.value.limit) == (2048, None, 1024)
    assert len(script.requests) == 1, "an oversized answer is not retried"


async def test_streamed_oversized_body_is_abandoned_midway(
    transport_for: Callable[..., Transport],
) -> None:
    produced: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(1000):
            produced.append(index)
            yield b"y" * 100

    script = Script(lambda: httpx.Response(200, content=endless()))
    with pytest.raises(ResponseTooLargeError, match="1000-byte limit") as caught:
        await transport_for(script, max_response_bytes=1000).request("GET", "stream")
    assert caught.value.received == 1100
    assert len(produced) < 20, "the body was not read past the limit"


async def test_body_at_the_limit_is_accepted(transport_for: Callable[..., Transport]) -> None:
    script = Script(lambda: httpx.Response(200, content=_chunks(b"[1,", b"2]")))
    transport = transport_for(script, max_response_bytes=5)
    assert await transport.request_json("GET", "x") == [1, 2]


# --- deprecation notices ---------------------------------------------------------------------


async def test_deprecation_notes_are_logged_once_each(
    transport_for: Callable[..., Transport], caplog: pytest.LogCaptureFixture
) -> None:
    note = f"endpoint x is deprecated ({time.monotonic_ns()})"
    fatal = f"sdk too old ({time.monotonic_ns()})"
    script = Script(
        httpx.Response(200, json={}, headers={"x-deprecation-note": note}),
        httpx.Response(200, json={}, headers={"x-deprecation-note": note}),
        httpx.Response(
            200, json={}, headers={"x-deprecation-note": fatal, "x-deprecation-level": "error"}
        ),
    )
    transport = transport_for(script)
    with caplog.at_level(logging.WARNING, logger="tinkex.transport"):
        for _ in range(3):
            await transport.request("GET", "x")
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tinkex.transport"]
    assert records == [
        (logging.WARNING, f"Deprecation notice: {note}"),
        (logging.ERROR, f"Deprecation notice: {fatal}"),
    ]


# --- bodies ----------------------------------------------------------------------------------


async def test_non_json_body_is_a_validation_error(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(APIResponseValidationError) as caught:
        await transport_for(script).request_json("GET", "x")
    message = str(caught.value)
    assert "expected a JSON body" in message and "captive portal" in message
    assert "http://mock.test/prefix" in message and caught.value.status_code == 200


async def test_echoed_secrets_are_scrubbed_from_errors(
    transport_for: Callable[..., Transport],
) -> None:
    script = Script(httpx.Response(403, json={"detail": f"key {KEY} may not do this"}))
    with pytest.raises(PermissionDeniedError) as caught:
        await transport_for(script).request("POST", "x?api_key=" + KEY)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value.body)
    assert "may not do this" in str(caught.value)
    assert caught.value.url == "http://mock.test/prefix/api/v1/x?api_key=***"
    assert script.requests[0].url.path == "/prefix/api/v1/x"


async def test_echoed_header_and_proxy_credentials_are_scrubbed_from_errors(
    transport_for: Callable[..., Transport],
) -> None:
    leaked = "bearer-7f3e proxy-pass-1a trace-9"
    script = Script(httpx.Response(400, json={"detail": f"rejected: {leaked}"}))
    config = {
        "default_headers": {"Authorization": "Bearer bearer-7f3e", "X-Trace-Id": "trace-9"},
        "proxy": "http://bob:proxy-pass-1a@proxy.invalid:3128",  # never used: the client is
    }
    with pytest.raises(BadRequestError) as caught:
        await transport_for(script, config=config).request("POST", "x")
    assert "rejected: *** *** trace-9" in str(caught.value)


async def test_gzip_bodies_are_decoded_before_the_limit(
    transport_for: Callable[..., Transport],
) -> None:
    import gzip

    packed = gzip.compress(b'{"v": "' + b"z" * 5000 + b'"}')
    script = Script(httpx.Response(200, content=packed, headers={"content-encoding": "gzip"}))
    body = await transport_for(script).request_json("GET", "x")
    assert body == {"v": "z" * 5000}
    with pytest.raises(ResponseTooLargeError):
        await transport_for(script, max_response_bytes=len(packed) + 10).request("GET", "x")

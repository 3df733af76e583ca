"""poll_future against scripted answers (httpx.MockTransport): the corners of PROTOCOL §4.2
that ``tinkex serve`` does not produce (429/5xx/400/402 on polls, dropped connections,
odd queue states and categories, undecodable results)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from tests.futures.helpers import (
    ScriptedServer,
    SleepRecorder,
    metadata_only,
    optim_result,
    try_again,
)
from tinkex import telemetry
from tinkex.errors import (
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RequestFailedError,
    RetryableFutureError,
    UnprocessableEntityError,
)
from tinkex.futures import (
    FUTURE_API_ERROR,
    FUTURE_COMPLETE,
    FUTURE_POLL,
    FUTURE_REQUEST_FAILED,
    FUTURE_RETRY,
    FUTURE_VALIDATION_ERROR,
    QUEUE_STATE_CHANGE,
    ByteBudget,
    decode_forward_backward,
    decode_json,
    decode_sample,
    poll_future,
)
from tinkex.protocol import PROTOBUF_CONTENT_TYPE
from tinkex.types import OptimStepResponse

ALL_EVENTS = (
    QUEUE_STATE_CHANGE,
    FUTURE_POLL,
    FUTURE_RETRY,
    FUTURE_COMPLETE,
    FUTURE_API_ERROR,
    FUTURE_REQUEST_FAILED,
    FUTURE_VALIDATION_ERROR,
)


async def run(
    server: ScriptedServer,
    *,
    sleep: SleepRecorder | None = None,
    decode: Any = None,
    expects_protobuf: bool = False,
    **kwargs: Any,
) -> Any:
    async with server.sender() as send:
        return await poll_future(
            send,
            request_id="req-1",
            request_type=kwargs.pop("request_type", "OptimStep"),
            decode=decode or decode_json(OptimStepResponse),
            expects_protobuf=expects_protobuf,
            sleep=sleep or SleepRecorder(),
            **kwargs,
        )


def events_named(events: list[tuple[str, dict[str, Any], dict[str, Any]]], name: str) -> list[Any]:
    return [(m, md) for event, m, md in events if event == name]


# --- requests --------------------------------------------------------------------------------


async def test_poll_headers_and_bodies() -> None:
    server = ScriptedServer(try_again(), httpx.Response(408), optim_result())
    result = await run(server, roundtrip_seconds=0.25, request_type="OptimStep")
    assert result == OptimStepResponse(metrics={"grad_norm:mean": 1.5})
    headers = [r.headers for r in server.requests]
    assert [h["x-tinker-request-iteration"] for h in headers] == ["0", "1", "2"]
    assert {h["x-tinker-request-type"] for h in headers} == {"OptimStep"}
    assert headers[0]["x-tinker-create-promise-roundtrip-time"] == "0.25"
    assert all("x-tinker-create-promise-roundtrip-time" not in h for h in headers[1:])
    assert all(h.get("accept") != PROTOBUF_CONTENT_TYPE for h in headers)
    assert server.bodies == [{"request_id": "req-1", "allow_metadata_only": True}] * 3
    assert all(r.url.path == "/api/v1/retrieve_future" for r in server.requests)


async def test_protobuf_results_are_asked_for_on_every_poll() -> None:
    server = ScriptedServer(
        try_again(),
        httpx.Response(200, json={"loss_fn_outputs": [], "metrics": {"loss:sum": 2.0}}),
    )
    result = await run(server, decode=decode_forward_backward, expects_protobuf=True)
    assert result.metrics == {"loss:sum": 2.0}  # a JSON answer for a proto type is fine
    assert [r.headers["accept"] for r in server.requests] == [PROTOBUF_CONTENT_TYPE] * 2
    assert "x-tinker-create-promise-roundtrip-time" not in server.requests[0].headers


async def test_completion_telemetry_carries_the_caller_metadata() -> None:
    server = ScriptedServer(try_again(), httpx.Response(408), optim_result())
    with telemetry.capture(*ALL_EVENTS) as events:
        await run(server, metadata={"session_id": "s-1", "model_id": "m-1"})
    [(measurements, metadata)] = events_named(events, FUTURE_COMPLETE)
    assert measurements["polls"] == 3 and isinstance(measurements["duration"], int)
    assert metadata == {
        "session_id": "s-1",
        "model_id": "m-1",
        "request_id": "req-1",
        "request_type": "OptimStep",
    }
    polls = events_named(events, FUTURE_POLL)
    assert [(md["iteration"], md["status"]) for _, md in polls] == [(0, 200), (1, 408), (2, 200)]
    assert events_named(events, QUEUE_STATE_CHANGE) == []  # active all along
    assert events_named(events, FUTURE_RETRY) == []


# --- metadata-only ---------------------------------------------------------------------------


class RecordingBudget(ByteBudget):
    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.reserved: list[int] = []
        self.released: list[int] = []

    async def reserve(self, size: int) -> None:
        self.reserved.append(size)
        await super().reserve(size)

    def release(self, size: int) -> None:
        self.released.append(size)
        super().release(size)


async def test_metadata_only_reserves_then_asks_for_the_payload() -> None:
    budget = RecordingBudget(4096)
    sleep = SleepRecorder()
    server = ScriptedServer(metadata_only(1000), try_again(), optim_result())
    await run(server, budget=budget, sleep=sleep)
    assert [b["allow_metadata_only"] for b in server.bodies] == [True, False, False]
    assert budget.reserved == [1000] and budget.released == [1000]
    assert budget.in_use == 0 and sleep.delays == []


async def test_a_payload_larger_than_the_whole_budget_does_not_deadlock() -> None:
    budget = RecordingBudget(10)
    await run(ScriptedServer(metadata_only(10_000), optim_result()), budget=budget)
    assert budget.reserved == [10_000] and budget.in_use == 0


async def test_metadata_only_waits_for_budget() -> None:
    budget = ByteBudget(4096)
    await budget.reserve(4000)
    server = ScriptedServer(metadata_only(1000), optim_result())
    task = asyncio.create_task(run(server, budget=budget))
    for _ in range(1000):  # yield until the poller is queued on the budget
        if budget.waiting:
            break
        await asyncio.sleep(0)
    assert budget.waiting == 1 and len(server.requests) == 1
    budget.release(4000)
    assert (await task).metrics == {"grad_norm:mean": 1.5}
    assert budget.in_use == 0


async def test_metadata_only_bytes_are_released_on_failure_and_cancellation() -> None:
    budget = ByteBudget(4096)
    failing = ScriptedServer(metadata_only(500), httpx.Response(200, json={"error": "x"}))
    with pytest.raises(RequestFailedError):
        await run(failing, budget=budget)
    assert budget.in_use == 0

    hold = asyncio.Event()
    polled = asyncio.Event()

    async def hang() -> httpx.Response:
        polled.set()
        await hold.wait()
        raise AssertionError("never answered")

    hanging = ScriptedServer(metadata_only(700), hang)
    task = asyncio.create_task(run(hanging, budget=budget))
    await polled.wait()
    assert budget.in_use == 700
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.in_use == 0


async def test_metadata_only_when_the_full_result_was_asked_for_is_an_error() -> None:
    server = ScriptedServer(metadata_only(10), metadata_only(10))
    with (
        telemetry.capture(FUTURE_VALIDATION_ERROR) as events,
        pytest.raises(APIResponseValidationError, match="allow_metadata_only=false"),
    ):
        await run(server, budget=ByteBudget(100))
    assert len(events) == 1


async def test_metadata_only_without_a_size_reserves_nothing() -> None:
    budget = RecordingBudget(100)
    server = ScriptedServer(
        httpx.Response(200, json={"status": "complete_metadata"}), optim_result()
    )
    await run(server, budget=budget)
    assert budget.reserved == [] and server.bodies[1]["allow_metadata_only"] is False


# --- backoff ---------------------------------------------------------------------------------


async def test_429_backs_off_exponentially_up_to_30_s() -> None:
    sleep = SleepRecorder()
    server = ScriptedServer(*[httpx.Response(429)] * 7, optim_result())
    with telemetry.capture(FUTURE_RETRY) as events:
        await run(server, sleep=sleep)
    assert sleep.delays == [1, 2, 4, 8, 16, 30, 30]
    assert [(m["delay"], m["attempt"]) for _, m, _ in events] == [
        (1, 1),
        (2, 2),
        (4, 3),
        (8, 4),
        (16, 5),
        (30, 6),
        (30, 7),
    ]
    assert {md["reason"] for _, _, md in events} == {"rate_limited"}
    assert {md["status"] for _, _, md in events} == {429}


async def test_backoff_resets_on_any_other_response() -> None:
    sleep = SleepRecorder()
    answers = [httpx.Response(429), httpx.Response(429), httpx.Response(408)]
    server = ScriptedServer(*answers, httpx.Response(429), httpx.Response(503), optim_result())
    await run(server, sleep=sleep)
    assert sleep.delays == [1, 2, 1]


async def test_connection_errors_and_timeouts_share_the_backoff() -> None:
    sleep = SleepRecorder()
    server = ScriptedServer(
        httpx.ConnectError("refused"),
        httpx.Response(429),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        optim_result(),
    )
    with telemetry.capture(FUTURE_RETRY, FUTURE_POLL) as events:
        await run(server, sleep=sleep)
    assert sleep.delays == [1, 2, 4, 8]
    retries = events_named(events, FUTURE_RETRY)
    assert [md["reason"] for _, md in retries] == [
        "connection_error",
        "rate_limited",
        "timeout",
        "connection_error",
    ]
    assert type(retries[0][1]["error"]).__name__ == "APIConnectionError"
    assert type(retries[2][1]["error"]).__name__ == "APITimeoutError"
    assert [md["status"] for _, md in events_named(events, FUTURE_POLL)] == [
        None,
        429,
        None,
        None,
        200,
    ]


async def test_5xx_is_repolled_at_once_then_backs_off() -> None:
    sleep = SleepRecorder()
    server = ScriptedServer(*[httpx.Response(503)] * 8, optim_result())
    with telemetry.capture(FUTURE_RETRY) as events:
        await run(server, sleep=sleep)
    assert [m["delay"] for _, m, _ in events] == [0, 0, 0, 0, 0, 1, 2, 4]
    assert {md["reason"] for _, _, md in events} == {"server_error"}
    assert sleep.delays == [1, 2, 4]


async def test_5xx_streak_resets_on_another_answer() -> None:
    sleep = SleepRecorder()
    answers = [*[httpx.Response(500)] * 5, try_again(), *[httpx.Response(502)] * 5]
    await run(ScriptedServer(*answers, optim_result()), sleep=sleep)
    assert sleep.delays == []


# --- 400, 402 and other statuses -------------------------------------------------------------


async def test_400_is_retried_three_times() -> None:
    sleep = SleepRecorder()
    server = ScriptedServer(*[httpx.Response(400)] * 3, optim_result())
    with telemetry.capture(FUTURE_RETRY) as events:
        await run(server, sleep=sleep)
    assert sleep.delays == [] and len(server.requests) == 4
    assert [(m["attempt"], md["reason"]) for _, m, md in events] == [
        (1, "bad_request"),
        (2, "bad_request"),
        (3, "bad_request"),
    ]


async def test_the_fourth_400_raises_with_the_server_message() -> None:
    detail = {"detail": "request_id must not be empty"}
    server = ScriptedServer(httpx.Response(400, json=detail))
    with telemetry.capture(FUTURE_API_ERROR) as events, pytest.raises(BadRequestError) as info:
        await run(server)
    assert len(server.requests) == 4
    error = info.value
    assert error.status_code == 400 and error.body == detail
    assert "request_id must not be empty" in str(error) and "req-1" in str(error)
    assert "3 retries" in str(error)
    [(_, measurements, metadata)] = events
    assert measurements["polls"] == 4
    assert metadata["status"] == 400 and metadata["error_type"] == "BadRequestError"


async def test_400_without_a_body_says_so() -> None:
    with pytest.raises(BadRequestError, match="empty body"):
        await run(ScriptedServer(httpx.Response(400)))


async def test_the_400_budget_resets_on_another_answer() -> None:
    answers = [httpx.Response(400)] * 3 + [httpx.Response(408)] + [httpx.Response(400)] * 3
    await run(ScriptedServer(*answers, optim_result()))


async def test_402_pauses_5_s_at_a_time() -> None:
    sleep = SleepRecorder()
    server = ScriptedServer(httpx.Response(402), httpx.Response(402), optim_result())
    await run(server, sleep=sleep)
    assert sleep.delays == [5, 5]


async def test_402_gives_up_after_the_maximum_pause(caplog: pytest.LogCaptureFixture) -> None:
    sleep = SleepRecorder()
    body = {"detail": "payment required"}
    server = ScriptedServer(httpx.Response(402, json=body))
    with (
        caplog.at_level(logging.WARNING, logger="tinkex.futures"),
        telemetry.capture(FUTURE_API_ERROR, FUTURE_RETRY) as events,
        pytest.raises(BillingError) as info,
    ):
        await run(server, sleep=sleep, max_billing_pause=12)
    assert sleep.delays == [5, 5, 5]
    assert "payment required" in str(info.value) and "15 s of billing pauses" in str(info.value)
    assert [md["reason"] for _, md in events_named(events, FUTURE_RETRY)] == ["billing"] * 3
    [(_, metadata)] = events_named(events, FUTURE_API_ERROR)
    assert metadata["status"] == 402
    assert sum("402" in r.getMessage() for r in caplog.records) == 1  # one warning per incident


async def test_a_402_incident_ends_with_any_other_answer() -> None:
    sleep = SleepRecorder()
    answers = [httpx.Response(402)] * 2 + [try_again()] + [httpx.Response(402)] * 2
    await run(ScriptedServer(*answers, optim_result()), sleep=sleep, max_billing_pause=10)
    assert sleep.delays == [5, 5, 5, 5]


async def test_410_is_retryable_future_error() -> None:
    server = ScriptedServer(httpx.Response(410, json={"detail": "promise expired"}))
    with telemetry.capture(FUTURE_API_ERROR) as events, pytest.raises(RetryableFutureError) as info:
        await run(server)
    assert info.value.request_id == "req-1"
    assert "promise expired" in str(info.value) and "Submit the request again" in str(info.value)
    assert info.value.request is not None and info.value.request.method == "POST"
    [(_, _, metadata)] = events
    assert metadata["status"] == 410 and metadata["error_type"] == "RetryableFutureError"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (418, APIStatusError),
    ],
)
async def test_other_4xx_raise_the_matching_status_error(
    status: int, error_type: type[APIStatusError]
) -> None:
    server = ScriptedServer(httpx.Response(status, json={"detail": f"server says {status}"}))
    with pytest.raises(error_type) as info:
        await run(server)
    assert type(info.value) is error_type
    assert info.value.status_code == status and f"server says {status}" in str(info.value)
    assert len(server.requests) == 1


# --- request failures and decoding -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "category"),
    [
        ({"error": "bad tokens", "category": "user"}, "user"),
        ({"error": "bad tokens", "category": "server"}, "server"),
        ({"error": "bad tokens", "category": "USER"}, "user"),
        ({"error": "bad tokens", "category": "cosmic rays"}, "unknown"),
        ({"error": "bad tokens", "category": 7}, "unknown"),
        ({"error": "bad tokens"}, "unknown"),
    ],
)
async def test_request_failures_keep_the_message_and_normalise_the_category(
    body: dict[str, Any], category: str
) -> None:
    with (
        telemetry.capture(FUTURE_REQUEST_FAILED) as events,
        pytest.raises(RequestFailedError) as info,
    ):
        await run(ScriptedServer(httpx.Response(200, json=body)))
    assert str(info.value) == "bad tokens" and info.value.message == "bad tokens"
    assert info.value.category == category and info.value.request_id == "req-1"
    [(_, _, metadata)] = events
    assert metadata["category"] == category and metadata["error"] is info.value


async def test_a_result_that_does_not_validate() -> None:
    server = ScriptedServer(httpx.Response(200, json={"metrics": "not a dict"}))
    with (
        telemetry.capture(FUTURE_VALIDATION_ERROR) as events,
        pytest.raises(APIResponseValidationError) as info,
    ):
        await run(server)
    assert "request req-1 (OptimStep)" in str(info.value)
    assert info.value.status_code == 200
    assert info.value.__cause__ is not None
    assert len(events) == 1


async def test_garbage_protobuf_and_non_json_results() -> None:
    garbage = httpx.Response(
        200, content=b"\xff\xff\xff garbage", headers={"content-type": PROTOBUF_CONTENT_TYPE}
    )
    with pytest.raises(APIResponseValidationError, match="could not be decoded"):
        await run(ScriptedServer(garbage), decode=decode_forward_backward, expects_protobuf=True)
    text = httpx.Response(200, content=b"<html>oops</html>")
    with pytest.raises(APIResponseValidationError, match="not valid JSON"):
        await run(ScriptedServer(text))
    proto_for_json = httpx.Response(
        200, content=b"\x0a\x00", headers={"content-type": PROTOBUF_CONTENT_TYPE}
    )
    with pytest.raises(APIResponseValidationError, match="got a protobuf body"):
        await run(ScriptedServer(proto_for_json))


async def test_sample_json_results_get_the_sequence_ids() -> None:
    body = {
        "sequences": [
            {"stop_reason": "length", "tokens": [1, 2]},
            {"stop_reason": "stop", "tokens": [3]},
        ]
    }
    server = ScriptedServer(httpx.Response(200, json=body))
    result = await run(
        server, decode=decode_sample(["a", "b"]), expects_protobuf=True, request_type="Sample"
    )
    assert [s.sequence_id for s in result.sequences] == ["a", "b"]
    with pytest.raises(APIResponseValidationError, match="3 sequence ids for 2"):
        await run(server, decode=decode_sample(["a", "b", "c"]), request_type="Sample")


# --- queue states ----------------------------------------------------------------------------


async def test_queue_state_changes_are_reported_once_per_change() -> None:
    seen: list[tuple[str, str | None]] = []
    server = ScriptedServer(
        try_again("paused_capacity", "short on capacity"),
        try_again("paused_capacity", "short on capacity"),
        httpx.Response(408, json={"type": "try_again", "queue_state": "PAUSED_RATE_LIMIT"}),
        try_again("active"),
        try_again("paused_capacity"),
        optim_result(),
    )
    with telemetry.capture(QUEUE_STATE_CHANGE) as events:
        await run(
            server,
            observer=lambda state, reason: seen.append((state, reason)),
            metadata={"model_id": "m-1"},
        )
    assert seen == [
        ("paused_capacity", "short on capacity"),
        ("paused_capacity", "short on capacity"),
        ("paused_rate_limit", None),
        ("active", None),
        ("paused_capacity", None),
        ("active", None),  # the result shows the queue moved again
    ]
    changes = [(m["polls"], md["queue_state"], md["queue_state_reason"]) for _, m, md in events]
    assert changes == [
        (1, "paused_capacity", "short on capacity"),
        (3, "paused_rate_limit", None),
        (4, "active", None),
        (5, "paused_capacity", None),
        (6, "active", None),
    ]
    assert all(md["model_id"] == "m-1" and md["request_id"] == "req-1" for _, _, md in events)


async def test_unknown_queue_states() -> None:
    seen: list[tuple[str, str | None]] = []
    server = ScriptedServer(
        try_again("on_fire"),  # unknown and no reason: not an observation
        try_again(None),  # no state at all
        httpx.Response(408, content=b"not json"),
        try_again("on_fire", "the datacenter is on fire"),
        optim_result(),
    )
    with telemetry.capture(QUEUE_STATE_CHANGE) as events:
        await run(server, observer=lambda state, reason: seen.append((state, reason)))
    assert seen == [("unknown", "the datacenter is on fire"), ("active", None)]
    assert [md["queue_state"] for _, _, md in events] == ["unknown", "active"]


async def test_a_failing_observer_is_logged_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def observer(state: str, reason: str | None) -> None:
        raise RuntimeError("observer boom")

    server = ScriptedServer(try_again("paused_capacity"), optim_result())
    with caplog.at_level(logging.ERROR, logger="tinkex.futures"):
        assert (await run(server, observer=observer)).metrics == {"grad_norm:mean": 1.5}
    assert any("observer" in r.getMessage() for r in caplog.records)

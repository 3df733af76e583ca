"""poll_future against a real ``tinkex serve`` over HTTP: every answer the server can give."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.futures.helpers import Recorder, SleepRecorder, http_sender, real_client
from tests.local.raw import RawTinker, datum_json
from tinkex import telemetry
from tinkex.errors import RequestFailedError, RetryableFutureError
from tinkex.futures import (
    FUTURE_API_ERROR,
    FUTURE_COMPLETE,
    FUTURE_POLL,
    FUTURE_REQUEST_FAILED,
    QUEUE_STATE_CHANGE,
    APIFuture,
    ByteBudget,
    decode_forward_backward,
    decode_json,
    decode_sample,
    poll_future,
)
from tinkex.protocol import PROTOBUF_CONTENT_TYPE, is_protobuf
from tinkex.types import (
    CreateModelResponse,
    ForwardBackwardOutput,
    OptimStepResponse,
    SampleResponse,
)

pytest.importorskip("torch")

from tinkex.local import FaultProfile, LocalServer, ServerConfig

BASE_MODEL = "tinkex/tiny-llama"
TOKENS = list(b"futures!")


def start_server(tmp: Path, **settings: Any) -> Iterator[str]:
    from tests.conftest import API_KEY

    config = ServerConfig(port=0, data_dir=tmp, api_keys=frozenset({API_KEY}), **settings)
    with LocalServer(config) as server:
        yield server.url


@pytest.fixture(scope="module")
def quick_poll_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Long-polls of 0.2 s, so pending requests answer 408."""
    yield from start_server(tmp_path_factory.mktemp("quick"), long_poll_seconds=0.2)


@pytest.fixture(scope="module")
def paused_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    profile = FaultProfile.load("paused_polls=3,paused_state=paused_capacity")
    yield from start_server(tmp_path_factory.mktemp("paused"), faults=profile)


@pytest.fixture(scope="module")
def expiring_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_server(
        tmp_path_factory.mktemp("expiring"), faults=FaultProfile.load("expire_rate=1")
    )


@pytest.fixture(scope="module")
def metadata_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if "metadata_only_threshold_bytes" not in ServerConfig.__dataclass_fields__:
        pytest.skip("this local server cannot answer metadata-only")
    yield from start_server(tmp_path_factory.mktemp("metadata"), metadata_only_threshold_bytes=1)


@pytest.fixture(scope="module")
def trained(base_url: str) -> Iterator[tuple[RawTinker, str, str]]:
    """A raw caller, a session and a model on the shared server."""
    raw = RawTinker(base_url)
    session = raw.session()
    model = raw.model(session)
    yield raw, session, model
    raw.close()


async def poll(
    url: str,
    request_id: str,
    request_type: str,
    decode: Any,
    *,
    expects_protobuf: bool,
    recorder: list[Recorder] | None = None,
    **kwargs: Any,
) -> Any:
    async with real_client(url) as client:
        send = Recorder(http_sender(client))
        if recorder is not None:
            recorder.append(send)
        return await poll_future(
            send,
            request_id=request_id,
            request_type=request_type,
            decode=decode,
            expects_protobuf=expects_protobuf,
            **kwargs,
        )


def forward_body(model: str, tokens: list[int]) -> dict[str, Any]:
    return {
        "model_id": model,
        "forward_input": {"data": [datum_json(tokens)], "loss_fn": "cross_entropy"},
    }


# --- results ---------------------------------------------------------------------------------


async def test_create_model_json_result(base_url: str) -> None:
    raw = RawTinker(base_url)
    try:
        session = raw.session()
        body = {"session_id": session, "model_seq_id": 0, "base_model": BASE_MODEL}
        request_id = raw.ok("create_model", body)["request_id"]
    finally:
        raw.close()
    recorders: list[Recorder] = []
    sleep = SleepRecorder()
    with telemetry.capture(FUTURE_COMPLETE) as events:
        result = await poll(
            base_url,
            request_id,
            "CreateModel",
            decode_json(CreateModelResponse),
            expects_protobuf=False,
            recorder=recorders,
            metadata={"session_id": session},
            roundtrip_seconds=0.125,
            sleep=sleep,
        )
    assert isinstance(result, CreateModelResponse) and result.model_id.startswith(session)
    [send] = recorders
    assert send.statuses[-1] == 200 and sleep.delays == []
    first = send.headers[0]
    assert first["X-Tinker-Request-Iteration"] == "0"
    assert first["X-Tinker-Request-Type"] == "CreateModel"
    assert first["X-Tinker-Create-Promise-Roundtrip-Time"] == "0.125"
    assert "Accept" not in first
    [(_, measurements, metadata)] = events
    assert measurements["polls"] == len(send.statuses)
    assert metadata["session_id"] == session and metadata["request_id"] == request_id


async def test_forward_protobuf_result(base_url: str, trained: tuple[RawTinker, str, str]) -> None:
    raw, _, model = trained
    request_id = raw.ok("forward", forward_body(model, TOKENS))["request_id"]
    recorders: list[Recorder] = []
    result = await poll(
        base_url,
        request_id,
        "Forward",
        decode_forward_backward,
        expects_protobuf=True,
        recorder=recorders,
    )
    assert isinstance(result, ForwardBackwardOutput)
    assert len(result.loss_fn_outputs) == 1
    logprobs = result.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert logprobs.shape == (len(TOKENS) - 1,) and np.all(logprobs < 0)
    assert result.metrics["loss:sum"] > 0
    [send] = recorders
    assert all(h["Accept"] == PROTOBUF_CONTENT_TYPE for h in send.headers)
    assert is_protobuf(send.responses[-1].headers["content-type"])

    # The same forward pass asked for in JSON decodes to the same numbers.
    request_id = raw.ok("forward", forward_body(model, TOKENS))["request_id"]
    as_json = await poll(
        base_url,
        request_id,
        "Forward",
        decode_forward_backward,
        expects_protobuf=False,
        recorder=recorders,
    )
    assert not is_protobuf(recorders[-1].responses[-1].headers["content-type"])
    np.testing.assert_allclose(as_json.loss_fn_outputs[0]["logprobs"].to_numpy(), logprobs)


async def test_forward_backward_protobuf_result_then_optim_step_json(
    base_url: str, trained: tuple[RawTinker, str, str]
) -> None:
    raw, _, model = trained
    body = {
        "model_id": model,
        "forward_backward_input": {"data": [datum_json(TOKENS)], "loss_fn": "cross_entropy"},
    }
    request_id = raw.ok("forward_backward", body)["request_id"]
    recorders: list[Recorder] = []
    result = await poll(
        base_url,
        request_id,
        "ForwardBackward",
        decode_forward_backward,
        expects_protobuf=True,
        recorder=recorders,
    )
    assert is_protobuf(recorders[0].responses[-1].headers["content-type"])
    assert result.metrics["loss:sum"] > 0
    step_id = raw.ok("optim_step", {"model_id": model, "adam_params": {"learning_rate": 1e-3}})[
        "request_id"
    ]
    step = await poll(
        base_url, step_id, "OptimStep", decode_json(OptimStepResponse), expects_protobuf=False
    )
    assert isinstance(step, OptimStepResponse)


async def test_sample_protobuf_result_with_sequence_ids(
    base_url: str, trained: tuple[RawTinker, str, str]
) -> None:
    raw, session, _ = trained
    sampler = raw.ok(
        "create_sampling_session",
        {"session_id": session, "sampling_session_seq_id": 0, "base_model": BASE_MODEL},
    )["sampling_session_id"]
    promise = raw.ok(
        "asample",
        {
            "sampling_session_id": sampler,
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": TOKENS}]},
            "sampling_params": {"max_tokens": 3, "seed": 0},
            "num_samples": 2,
        },
    )
    ids = promise["sample_sequence_ids"]
    recorders: list[Recorder] = []
    result = await poll(
        base_url,
        promise["request_id"],
        "Sample",
        decode_sample(ids),
        expects_protobuf=True,
        recorder=recorders,
        metadata={"sampling_session_id": sampler},
    )
    assert isinstance(result, SampleResponse)
    assert [s.sequence_id for s in result.sequences] == ids and len(ids) == 2
    assert all(1 <= len(s.tokens) <= 3 for s in result.sequences)
    assert is_protobuf(recorders[0].responses[-1].headers["content-type"])


async def test_failed_future_is_request_failed_error(
    base_url: str, trained: tuple[RawTinker, str, str]
) -> None:
    raw, _, model = trained
    request_id = raw.ok("forward", forward_body(model, [1, 2, 999_999]))["request_id"]
    with (
        telemetry.capture(FUTURE_REQUEST_FAILED) as events,
        pytest.raises(RequestFailedError) as info,
    ):
        await poll(base_url, request_id, "Forward", decode_forward_backward, expects_protobuf=True)
    error = info.value
    assert error.category == "user" and error.request_id == request_id
    assert "999999" in error.message and "vocabulary" in error.message
    [(_, _, metadata)] = events
    assert metadata["category"] == "user" and metadata["error"] is error


# --- try-again, queue states, expiry ---------------------------------------------------------


async def test_408_and_try_again_repoll_without_sleeping(quick_poll_url: str) -> None:
    raw = RawTinker(quick_poll_url)
    try:
        model = raw.model(raw.session())
        adam = {"learning_rate": 1e-3}
        # seq_id 2 waits for seq_id 1, which is not sent yet: the polls long-poll and 408.
        held = raw.ok("optim_step", {"model_id": model, "seq_id": 2, "adam_params": adam})
    finally:
        raw.close()
    saw_408 = asyncio.Event()

    def on_poll(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        if metadata["request_id"] == held["request_id"] and metadata["status"] == 408:
            saw_408.set()

    sleep = SleepRecorder()
    recorders: list[Recorder] = []
    telemetry.attach("tests.futures.408", FUTURE_POLL, on_poll)
    try:
        with telemetry.capture(QUEUE_STATE_CHANGE) as changes:
            task = asyncio.create_task(
                poll(
                    quick_poll_url,
                    held["request_id"],
                    "OptimStep",
                    decode_json(OptimStepResponse),
                    expects_protobuf=False,
                    recorder=recorders,
                    sleep=sleep,
                )
            )
            await saw_408.wait()
            async with real_client(quick_poll_url) as client:
                response = await client.post(
                    "optim_step", json={"model_id": model, "seq_id": 1, "adam_params": adam}
                )
                assert response.status_code == 200, response.text
            result = await task
    finally:
        telemetry.detach("tests.futures.408")
    assert isinstance(result, OptimStepResponse)
    [send] = recorders
    assert 408 in send.statuses and send.statuses[-1] == 200
    assert sleep.delays == []
    assert [h["X-Tinker-Request-Iteration"] for h in send.headers] == [
        str(i) for i in range(len(send.headers))
    ]
    assert changes == []  # 408 says "active", which is where a future starts


async def test_paused_queue_reports_paused_capacity_then_active(paused_url: str) -> None:
    raw = RawTinker(paused_url)
    try:
        session = raw.session()
        body = {"session_id": session, "model_seq_id": 0, "base_model": BASE_MODEL}
        request_id = raw.ok("create_model", body)["request_id"]
    finally:
        raw.close()
    sleep = SleepRecorder()
    observed: list[tuple[str, str | None]] = []
    recorders: list[Recorder] = []
    with telemetry.capture(QUEUE_STATE_CHANGE) as changes:
        result = await poll(
            paused_url,
            request_id,
            "CreateModel",
            decode_json(CreateModelResponse),
            expects_protobuf=False,
            recorder=recorders,
            metadata={"session_id": session},
            sleep=sleep,
            observer=lambda state, reason: observed.append((state, reason)),
        )
    assert result.model_id
    assert sleep.delays == []
    assert recorders[0].statuses[:3] == [200, 200, 200]
    assert [(md["queue_state"], md["queue_state_reason"]) for _, _, md in changes] == [
        ("paused_capacity", "fault injection: queue paused"),
        ("active", None),
    ]
    assert changes[0][1] == {"polls": 1}
    for _, _, metadata in changes:
        assert metadata["request_id"] == request_id
        assert metadata["request_type"] == "CreateModel"
        assert metadata["session_id"] == session
    assert observed[:3] == [("paused_capacity", "fault injection: queue paused")] * 3
    assert observed[-1] == ("active", None)


async def test_expired_future_is_retryable(expiring_url: str) -> None:
    raw = RawTinker(expiring_url)
    try:
        body = {"session_id": raw.session(), "model_seq_id": 0, "base_model": BASE_MODEL}
        request_id = raw.ok("create_model", body)["request_id"]
    finally:
        raw.close()
    with telemetry.capture(FUTURE_API_ERROR) as events, pytest.raises(RetryableFutureError) as info:
        await poll(
            expiring_url,
            request_id,
            "CreateModel",
            decode_json(CreateModelResponse),
            expects_protobuf=False,
        )
    assert info.value.request_id == request_id and "expired" in str(info.value)
    [(_, measurements, metadata)] = events
    assert measurements["polls"] == 1 and metadata["status"] == 410


async def test_unknown_request_id_is_retryable(base_url: str) -> None:
    with pytest.raises(RetryableFutureError, match="unknown or its result has expired"):
        await poll(
            base_url,
            "no-such-request",
            "OptimStep",
            decode_json(OptimStepResponse),
            expects_protobuf=False,
        )


async def test_metadata_only_then_the_payload(metadata_url: str) -> None:
    raw = RawTinker(metadata_url)
    try:
        model = raw.model(raw.session())
        request_id = raw.ok("forward", forward_body(model, TOKENS))["request_id"]
    finally:
        raw.close()
    budget = ByteBudget(1 << 20)
    recorders: list[Recorder] = []
    result = await poll(
        metadata_url,
        request_id,
        "Forward",
        decode_forward_backward,
        expects_protobuf=True,
        recorder=recorders,
        budget=budget,
    )
    assert result.metrics["loss:sum"] > 0
    [send] = recorders
    flags = [b["allow_metadata_only"] for b in send.bodies]
    assert flags[0] is True and flags[-1] is False
    announced = [
        r.json()["response_payload_size"]
        for r in send.responses
        if not is_protobuf(r.headers.get("content-type")) and r.status_code == 200
    ]
    assert announced == [len(send.responses[-1].content)]
    assert budget.in_use == 0


# --- APIFuture on an I/O loop thread ---------------------------------------------------------


def test_api_future_over_the_poller_on_an_io_loop_thread(
    base_url: str, trained: tuple[RawTinker, str, str]
) -> None:
    raw, _, model = trained
    request_ids = [raw.ok("forward", forward_body(model, TOKENS))["request_id"] for _ in range(3)]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        client: httpx.AsyncClient = asyncio.run_coroutine_threadsafe(
            _open_client(base_url), loop
        ).result(30)
        send = http_sender(client)
        futures = [
            APIFuture.submit(
                poll_future(
                    send,
                    request_id=rid,
                    request_type="Forward",
                    decode=decode_forward_backward,
                    expects_protobuf=True,
                ),
                loop,
                request_id=rid,
                request_type="Forward",
            )
            for rid in request_ids
        ]
        losses = [f.map(lambda out: out.metrics["loss:sum"]) for f in futures]
        first = futures[0].result(timeout=60)
        assert first.metrics["loss:sum"] == losses[0].result(timeout=60)
        assert len({loss.result(timeout=60) for loss in losses}) == 1  # same input, same loss
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


async def _open_client(base_url: str) -> httpx.AsyncClient:
    return real_client(base_url)

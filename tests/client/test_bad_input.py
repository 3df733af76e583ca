"""Mistakes a user makes get clear, early errors that say what to fix, and leak no secret."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum, new_key
from tinkex import (
    APIConnectionError,
    AuthenticationError,
    ConfigError,
    Datum,
    FutureTimeoutError,
    ModelInput,
    RequestFailedError,
    SamplingParams,
    telemetry,
)

HTTP_START = "tinkex.http.request.start"
CLOSED_URL = "http://127.0.0.1:9"
"""The discard port: nothing listens there on a test machine (and nothing is sent)."""


def _closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago and has no listener now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _to(url: str, events: list[tuple[str, Any, Any]]) -> list[Any]:
    """The metadata of the events about requests to ``url`` (other tests' may be running)."""
    return [md for _, _, md in events if md["base_url"] == url]


# --- the API key -----------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, "", "   "])
def test_a_missing_api_key_fails_at_construction(
    api_key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with telemetry.capture(HTTP_START) as requests, pytest.raises(ConfigError) as info:
        tinkex.ServiceClient(base_url=CLOSED_URL, api_key=api_key)
    assert info.value.field == "api_key"
    message = str(info.value)
    assert "api_key=" in message and "TINKER_API_KEY" in message, message
    assert _to(CLOSED_URL, requests) == [], "nothing may be sent without a key"


def test_the_environment_key_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("TINKER_API_KEY", secret)
    with telemetry.capture(HTTP_START) as requests, pytest.raises(ConfigError) as info:
        tinkex.ServiceClient(base_url=CLOSED_URL)
    assert info.value.field == "api_key"
    assert "tml-" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert _to(CLOSED_URL, requests) == []


@pytest.mark.parametrize("api_key", ["sk-live-0123456789abcdef", "TML-0123456789abcdef", 1234])
def test_a_malformed_api_key_fails_at_construction(api_key: Any) -> None:
    with telemetry.capture(HTTP_START) as requests, pytest.raises(ConfigError) as info:
        tinkex.ServiceClient(base_url=CLOSED_URL, api_key=api_key)
    assert info.value.field == "api_key"
    message = str(info.value)
    assert "tml-" in message or "must be a string" in message, message
    assert str(api_key) not in message and str(api_key) not in repr(info.value)
    assert _to(CLOSED_URL, requests) == []


def test_a_malformed_api_key_error_says_how_to_set_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        tinkex.ServiceClient(base_url=CLOSED_URL, api_key="sk-live-0123456789abcdef")
    assert "api_key=" in str(info.value) and "TINKER_API_KEY" in str(info.value)


def test_a_wrong_key_is_refused_with_the_servers_message(serve: Callable[..., Any]) -> None:
    good, wrong = new_key(), new_key()
    server = serve(api_keys=frozenset({good}))
    service = tinkex.ServiceClient(base_url=server.url, api_key=wrong)
    with pytest.raises(AuthenticationError) as info:
        service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=30)
    error = info.value
    assert error.status_code == 401
    assert "invalid API key: it is not one of the keys this server accepts" in str(error)
    for shown in (str(error), repr(error), repr(error.body), repr(error.headers)):
        assert wrong not in shown and good not in shown
    service.close().result(timeout=30)

    # The same calls with the right key go through: it was the key, nothing else.
    with tinkex.ServiceClient(base_url=server.url, api_key=good) as service:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
        assert sampler.get_base_model() == BASE_MODEL


# --- the base URL ----------------------------------------------------------------------------


def test_an_unreachable_server_fails_after_the_retry_budget() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    service = tinkex.ServiceClient(base_url=url, api_key=new_key(), max_retries=1)
    with (
        telemetry.capture(HTTP_START) as attempts,
        pytest.raises(APIConnectionError) as info,
    ):
        service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
    message = str(info.value)
    assert url in message and "after 2 attempts" in message, message
    assert "check base_url" in message
    # One attempt and the one retry allowed, then the error; nothing else was tried.
    assert [md["attempt"] for md in _to(url, attempts)] == [0, 1]
    service.close().result(timeout=30)


# --- bad training and sampling inputs: the server's user errors ----------------------------


@pytest.fixture
def training(serve: Callable[..., Any]) -> Iterator[tuple[tinkex.ServiceClient, Any]]:
    server = serve()
    with tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service:
        client = service.create_lora_training_client(BASE_MODEL, rank=4, seed=1).result(timeout=60)
        yield service, client


GOOD = datum("a good datum")
VOCAB_OVERFLOW = 10**6


@pytest.mark.parametrize(
    ("data", "loss_fn", "server_says"),
    [
        ([GOOD], "no_such_loss", "loss_fn 'no_such_loss' is not supported"),
        (
            [Datum(model_input=ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={})],
            "cross_entropy",
            "loss_fn 'cross_entropy' requires loss_fn_inputs target_tokens",
        ),
        (
            [
                Datum(
                    model_input=ModelInput.from_ints([1, VOCAB_OVERFLOW, 3]),
                    loss_fn_inputs={"target_tokens": [2, 3, 4]},
                )
            ],
            "cross_entropy",
            f"model_input token id {VOCAB_OVERFLOW} is outside the vocabulary",
        ),
        (
            [
                Datum(
                    model_input=ModelInput.from_ints([1, 2, 3]),
                    loss_fn_inputs={"target_tokens": [2, 3, VOCAB_OVERFLOW]},
                )
            ],
            "cross_entropy",
            f"token id {VOCAB_OVERFLOW} is outside the vocabulary",
        ),
    ],
    ids=["unknown-loss-fn", "no-target-tokens", "input-token-out-of-range", "target-out-of-range"],
)
def test_a_rejected_training_input_is_a_user_error_and_harms_nothing(
    training: Any, data: list[Datum], loss_fn: str, server_says: str
) -> None:
    _, client = training
    before = client.forward([GOOD], "cross_entropy").result(timeout=60)
    with pytest.raises(RequestFailedError) as info:
        client.forward_backward(data, loss_fn).result(timeout=60)
    assert info.value.category == "user"
    assert server_says in str(info.value)
    # The model (and its request numbering) goes on as if the bad call had not been made.
    client.optim_step(tinkex.AdamParams(learning_rate=1e-2)).result(timeout=60)
    after = client.forward([GOOD], "cross_entropy").result(timeout=60)
    assert after.metrics == before.metrics, "no gradient of the rejected call was applied"


@pytest.mark.parametrize(
    ("data", "loss_fn_config"),
    [
        ([Datum(model_input=ModelInput.from_ints([2**40]), loss_fn_inputs={})], None),
        ([GOOD], {"clip": object()}),
    ],
    ids=["token-beyond-int32", "unencodable-config"],
)
def test_a_call_that_cannot_be_encoded_fails_alone(
    training: Any, data: list[Datum], loss_fn_config: Any
) -> None:
    _, client = training
    with pytest.raises((ValueError, TypeError)):
        client.forward_backward(data, "cross_entropy", loss_fn_config).result(timeout=60)
    # No seq_id was used up: the next call is not stuck behind a hole in the sequence
    # (the server would wait out its gap timeout, far longer than this result's).
    client.forward([GOOD], "cross_entropy").result(timeout=60)


def test_a_sample_with_an_out_of_range_token_is_a_user_error(training: Any) -> None:
    service, _ = training
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
    prompt = ModelInput.from_ints([1, VOCAB_OVERFLOW])
    with pytest.raises(RequestFailedError) as info:
        sampler.sample(prompt, 1, SamplingParams(max_tokens=2)).result(timeout=60)
    assert info.value.category == "user"
    assert f"prompt token id {VOCAB_OVERFLOW} is outside the vocabulary" in str(info.value)


# --- waiting too little ----------------------------------------------------------------------


def test_a_result_timeout_leaves_the_future_running(serve: Callable[..., Any]) -> None:
    # Every poll is answered after 2 s, so no result can arrive within 0.1 s.
    server = serve("slow_poll_seconds=2")
    with tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
        future = sampler.sample(ModelInput.from_ints([1, 2]), 1, SamplingParams(max_tokens=2))
        with telemetry.capture("tinkex.future.timeout") as timeouts:
            with pytest.raises(FutureTimeoutError) as info:
                future.result(timeout=0.1)
            with pytest.raises(FutureTimeoutError):
                asyncio.run(future.result_async(timeout=0.1))
        assert info.value.timeout == 0.1
        assert "still running" in str(info.value)
        assert len(timeouts) == 2
        assert not future.done()

        response = future.result(timeout=60)
        assert len(response.sequences) == 1
        assert future.request_id is not None


# --- forgetting to close -----------------------------------------------------------------


def test_a_process_that_never_closed_its_client_still_exits(serve: Callable[..., Any]) -> None:
    server = serve()
    script = textwrap.dedent(
        f"""
        import tinkex
        service = tinkex.ServiceClient(base_url={server.url!r}, api_key={new_key()!r})
        service.create_sampling_client(base_model={BASE_MODEL!r}).result(timeout=30)
        print("sampled nothing, closed nothing")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "closed nothing" in done.stdout


# --- leaving a client --------------------------------------------------------------------------


def test_the_repr_hides_credentials_in_the_base_url() -> None:
    service = tinkex.ServiceClient(base_url="http://alice:pw-4c1d@127.0.0.1:9", api_key=new_key())
    assert "pw-4c1d" not in repr(service) and "127.0.0.1:9" in repr(service)
    service.close()


def test_a_session_that_cannot_be_finished_does_not_hide_the_blocks_error(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve()
    config = {"base_url": server.url, "api_key": new_key(), "max_retries": 0, "telemetry": False}
    with (
        pytest.raises(ValueError, match="the block's own error"),
        tinkex.ServiceClient(**config) as service,
    ):
        assert service.session_id
        server.stop()  # finishing the session will fail: nothing listens any more
        raise ValueError("the block's own error")
    assert any("could not finish session" in r.getMessage() for r in caplog.records)

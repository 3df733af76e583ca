"""Queue-state warnings (PROTOCOL §4.8): readable, per model or sampler, debounced.

The clock is injected: time passes only when a test says so, never by sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum, new_key, serve
from tinkex import ModelInput, SamplingParams, telemetry
from tinkex.actors.runtime import Runtime
from tinkex.futures import (
    FUTURE_COMPLETE,
    FUTURE_POLL,
    QUEUE_STATE_CHANGE,
    QueueStateLogger,
)
from tinkex.futures import queue_state as queue_state_module
from tinkex.futures.queue_state import DEFAULT_LOGGER_ID

__all__ = ["serve"]  # the fixture, imported for these tests

PAUSED = "fault injection: queue paused"
PROMPT = ModelInput.from_ints(list(b"wait"))


class Clock:
    """Stands still until moved; optionally jumps ahead after its first reading."""

    def __init__(self, jump_after_first: float = 0.0) -> None:
        self.now = 1000.0
        self.readings = 0
        self._jump = jump_after_first

    def __call__(self) -> float:
        self.readings += 1
        if self.readings == 2:
            self.now += self._jump
        return self.now


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    logger = logging.getLogger("tests.queue_state")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        yield lambda: [r.getMessage() for r in caplog.records if r.name == logger.name]


def make_logger(clock: Clock, kind: Any = None) -> QueueStateLogger:
    return QueueStateLogger(kind, clock=clock, logger=logging.getLogger("tests.queue_state"))


# --- the rules -------------------------------------------------------------------------------


def test_training_is_silent_for_15_minutes_then_warns_once_a_minute_per_model(
    warnings: Callable[[], list[str]],
) -> None:
    clock = Clock()
    log = make_logger(clock, "training")
    assert not log.observe("paused_rate_limit", subject="model m-1")
    clock.now += 899
    assert not log.observe("paused_rate_limit", subject="model m-1")
    assert not log.observe("paused_capacity", subject="model m-2")  # a pause of its own
    clock.now += 1
    assert log.observe("paused_rate_limit", subject="model m-1")
    clock.now += 59
    assert not log.observe("paused_rate_limit", subject="model m-1")
    clock.now += 1
    assert log.observe("paused_capacity", "  the server's words  ", subject="model m-1")
    clock.now += 899
    assert log.observe("paused_capacity", subject="model m-2")
    assert warnings() == [
        "Training is paused for model m-1. Reason: concurrent training clients rate limit hit",
        "Training is paused for model m-1. Reason: the server's words",
        "Training is paused for model m-2. Reason: Tinker backend is running short on "
        "capacity, please wait",
    ]


def test_sampling_warns_at_once_then_once_a_minute_per_sampler(
    warnings: Callable[[], list[str]],
) -> None:
    clock = Clock()
    log = make_logger(clock, "sampling")
    assert log.observe("paused_rate_limit", subject="sampler s-1")
    assert log.observe("paused_rate_limit", "busy", subject="sampler s-2")
    clock.now += 59
    assert not log.observe("paused_rate_limit", subject="sampler s-1")
    assert not log.observe("active", subject="sampler s-1")
    assert not log.observe("paused_rate_limit", subject="sampler s-1")  # still within 60 s
    clock.now += 1
    assert log.observe("unknown", "  ", subject="sampler s-1")
    assert warnings() == [
        "Sampling is paused for sampler s-1. Reason: concurrent sampler weights limit hit",
        "Sampling is paused for sampler s-2. Reason: busy",
        "Sampling is paused for sampler s-1. Reason: the queue is in an unknown state",
    ]


def test_active_ends_a_training_pause_and_the_15_minutes_start_again(
    warnings: Callable[[], list[str]],
) -> None:
    clock = Clock()
    log = make_logger(clock, "training")
    log.observe("paused_capacity", subject="model m")
    clock.now += 800
    assert not log.observe("active", subject="model m")
    assert not log.observe("paused_capacity", subject="model m")
    clock.now += 800
    assert not log.observe("paused_capacity", subject="model m")
    clock.now += 100
    assert log.observe("paused_capacity", subject="model m")
    assert len(warnings()) == 1


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        QueueStateLogger(interval_seconds=-1)


# --- fed by signals --------------------------------------------------------------------------


def test_as_a_handler_it_follows_each_request_from_its_signals(
    warnings: Callable[[], list[str]],
) -> None:
    clock = Clock()
    log = make_logger(clock)
    paused = {
        "request_id": "r-1",
        "request_type": "ForwardBackward",
        "model_id": "m-1",
        "session_id": "s",
        "queue_state": "paused_capacity",
        "queue_state_reason": None,
    }
    log.handle(QUEUE_STATE_CHANGE, {"polls": 1}, paused)
    for _ in range(3):  # later polls of the still-paused request count as observations
        clock.now += 400
        log.handle(FUTURE_POLL, {"duration": 1}, {"request_id": "r-1", "iteration": 2})
    log.handle(FUTURE_COMPLETE, {"duration": 1}, {"request_id": "r-1"})
    clock.now += 400
    log.handle(FUTURE_POLL, {"duration": 1}, {"request_id": "r-1", "iteration": 5})
    sampling = {
        "request_id": "r-2",
        "request_type": "Sample",
        "sampling_session_id": "s:sample:0",
        "queue_state": "paused_rate_limit",
        "queue_state_reason": "waiting on weights",
    }
    log.handle(QUEUE_STATE_CHANGE, {"polls": 1}, sampling)
    assert warnings() == [
        "Training is paused for model m-1. Reason: Tinker backend is running short on "
        "capacity, please wait",
        "Sampling is paused for sampler s:sample:0. Reason: waiting on weights",
    ]


def test_what_it_tracks_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_state_module, "MAX_TRACKED", 3)
    clock = Clock()
    log = make_logger(clock)
    for n in range(10):
        log.handle(
            QUEUE_STATE_CHANGE,
            {},
            {"request_id": f"r-{n}", "model_id": f"m-{n}", "queue_state": "paused_capacity"},
        )
    assert clock.readings == 10
    log.handle(FUTURE_POLL, {}, {"request_id": "r-0"})  # forgotten: not an observation
    assert clock.readings == 10
    log.handle(FUTURE_POLL, {}, {"request_id": "r-9"})
    assert clock.readings == 11


# --- through the local server ----------------------------------------------------------------


@pytest.fixture
def attached() -> Iterator[Callable[..., None]]:
    ids: list[str] = []

    def attach(handler: Callable[..., Any], events: tuple[str, ...] | None = None) -> None:
        handler_id = f"tests.queue_state.{len(ids)}"
        if events is None:
            assert isinstance(handler, QueueStateLogger)
            handler.attach(handler_id)
        else:
            telemetry.attach_many(handler_id, events, handler)
        ids.append(handler_id)

    yield attach
    for handler_id in ids:
        telemetry.detach(handler_id)


def test_a_paused_sampler_is_reported_once_with_the_servers_reason(
    serve: Callable[..., Any],
    attached: Callable[..., None],
    warnings: Callable[[], list[str]],
) -> None:
    server = serve("paused_polls=3")
    attached(make_logger(Clock()))  # time stands still: one warning per sampler
    with tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service:
        samplers = [
            service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
            for _ in range(2)
        ]
        for sampler in samplers:
            sampler.sample(PROMPT, 1, SamplingParams(max_tokens=2)).result(timeout=60)
    assert warnings() == [
        f"Sampling is paused for sampler {sampler.sampling_session_id}. Reason: {PAUSED}"
        for sampler in samplers
    ]


def test_a_paused_model_warns_only_once_the_pause_is_long(
    serve: Callable[..., Any],
    attached: Callable[..., None],
    warnings: Callable[[], list[str]],
) -> None:
    server = serve("paused_polls=3")
    attached(make_logger(Clock()))  # time stands still: no pause lasts 15 minutes
    with tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service:
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        training.forward_backward([datum("patience")], "cross_entropy").result(timeout=60)
        assert warnings() == []

        # Now 15 minutes pass between the first and the second observation of the pause.
        slow = make_logger(Clock(jump_after_first=901))
        model_id = training.model_id

        def this_model(event: str, measurements: Any, metadata: Any) -> None:
            if metadata.get("model_id") == model_id:
                slow.handle(event, measurements, metadata)

        attached(this_model, (QUEUE_STATE_CHANGE, FUTURE_POLL, FUTURE_COMPLETE))
        training.forward_backward([datum("patience")], "cross_entropy").result(timeout=60)

    assert warnings() == [f"Training is paused for model {model_id}. Reason: {PAUSED}"]


def test_the_runtime_installs_a_logger_for_the_whole_process(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    Runtime.get()
    assert DEFAULT_LOGGER_ID in [info.id for info in telemetry.list_handlers()]
    server = serve("paused_polls=2,paused_state=paused_rate_limit")
    with (
        caplog.at_level(logging.WARNING, logger="tinkex.queue"),
        tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service,
    ):
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        sampler.sample(PROMPT, 1, SamplingParams(max_tokens=2)).result(timeout=60)
    expected = f"Sampling is paused for sampler {sampler.sampling_session_id}. Reason: {PAUSED}"
    assert expected in [r.getMessage() for r in caplog.records if r.name == "tinkex.queue"]


def test_a_new_reason_within_a_pause_is_logged_with_the_next_warning(
    warnings: Callable[[], list[str]],
) -> None:
    clock = Clock()
    log = make_logger(clock, "sampling")
    paused = {"request_id": "r-1", "sampling_session_id": "s-1", "queue_state": "paused_capacity"}
    log.handle(QUEUE_STATE_CHANGE, {}, {**paused, "queue_state_reason": "busy"})
    clock.now += 30
    log.handle(QUEUE_STATE_CHANGE, {}, {**paused, "queue_state_reason": "busier"})  # debounced
    clock.now += 30
    log.handle(FUTURE_POLL, {}, {"request_id": "r-1"})
    assert warnings() == [
        "Sampling is paused for sampler s-1. Reason: busy",
        "Sampling is paused for sampler s-1. Reason: busier",
    ]


def test_the_servers_new_reason_in_the_same_state_is_signalled_and_logged(
    serve: Callable[..., Any],
    attached: Callable[..., None],
    warnings: Callable[[], list[str]],
) -> None:
    # The key may train one model at a time: a second one waits in paused_rate_limit. The
    # first poll of its creation answers with the fault's reason, the later ones with the
    # server's own: the same state with a new reason, which must not be lost.
    server = serve("paused_polls=1,paused_state=paused_rate_limit", max_training_clients_per_key=1)
    config = {"base_url": server.url, "api_key": new_key()}
    first, second = tinkex.ServiceClient(**config), tinkex.ServiceClient(**config)
    clock = Clock()
    logger = QueueStateLogger(
        clock=clock, logger=logging.getLogger("tests.queue_state"), training_grace_seconds=0
    )
    changes: list[tuple[str, str | None]] = []
    progress = threading.Condition()

    def wait_for(done: Callable[[], bool]) -> None:
        with progress:
            assert progress.wait_for(done, 30), (changes, warnings())

    try:
        first.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        session = second.session_id

        def second_session(event: str, measurements: Any, metadata: Any) -> None:
            if metadata.get("session_id") != session:
                return
            logger.handle(event, measurements, metadata)
            with progress:
                if event == QUEUE_STATE_CHANGE:
                    changes.append((metadata["queue_state"], metadata["queue_state_reason"]))
                progress.notify_all()

        attached(second_session, (QUEUE_STATE_CHANGE, FUTURE_POLL, FUTURE_COMPLETE))
        waiting = second.create_lora_training_client(BASE_MODEL, rank=4)
        wait_for(lambda: len(changes) == 2)
        clock.now += 60  # the next poll of the paused request may warn again
        wait_for(lambda: len(warnings()) == 2)
        first.close().result(timeout=60)  # frees the key's training slot
        waiting.result(timeout=60)
    finally:
        first.close().result(timeout=60)
        second.close().result(timeout=60)

    server_reason = "concurrent training clients rate limit hit for this API key"
    assert changes == [
        ("paused_rate_limit", PAUSED),
        ("paused_rate_limit", server_reason),
        ("active", None),
    ]
    assert warnings() == [
        f"Training is paused for session {session}. Reason: {PAUSED}",
        f"Training is paused for session {session}. Reason: {server_reason}",
    ]

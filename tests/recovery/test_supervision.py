"""The recovery tree under faults: its own actors crash, the runtime gives up on a training
actor, and recoveries compete for the concurrency bound."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import tinkex
from tests.conftest import API_KEY
from tests.supervisors import Supervisors, watching
from tinkex.recovery import (
    DuplicateRunError,
    RecoveryError,
    RecoveryMonitor,
    RecoveryPolicy,
    events,
)
from tinkex.types import TrainingRun

from .conftest import BATCH, WAIT, Recorder, corrupt, new_client

StartMonitor = Callable[..., RecoveryMonitor]


@pytest.fixture
def supervisors() -> Iterator[Supervisors]:
    with watching("tests.recovery.supervisors") as watcher:
        yield watcher


def crash(monitor: RecoveryMonitor, child: str) -> None:
    """Crash one of the tree's actors (they crash on a message they do not understand)."""
    monitor.registry.lookup(child).tell("a message no recovery actor understands")


def test_a_crashed_monitor_keeps_watching_its_runs(
    base_url: str,
    service: tinkex.ServiceClient,
    recorder: Recorder,
    supervisors: Supervisors,
    start_monitor: StartMonitor,
) -> None:
    client = new_client(service, seed=4)
    path = client.save_state("watched").result(WAIT).path
    monitor = start_monitor(on_recovery=recorder.on_recovery)
    monitor.monitor_run(client, service)
    first = monitor.registry.lookup("monitor")

    crash(monitor, "monitor")
    supervisors.wait("child_restarted", "monitor")

    assert monitor.registry.lookup("monitor") is not first
    assert monitor.watched_runs() == [client.model_id]
    corrupt(base_url, client.model_id)
    recorder.wait_calls(1)
    ((_, (old, _new, checkpoint)),) = recorder.calls
    assert old is client and checkpoint == path


def test_a_crashed_executor_keeps_its_recoveries_and_their_attempt_count(
    base_url: str,
    service: tinkex.ServiceClient,
    recorder: Recorder,
    supervisors: Supervisors,
    start_monitor: StartMonitor,
) -> None:
    client = new_client(service, seed=5)  # no checkpoint: every attempt fails
    monitor = start_monitor(max_attempts=3, backoff=0.2, on_failure=recorder.on_failure)
    monitor.monitor_run(client, service)
    corrupt(base_url, client.model_id)
    recorder.wait_for(lambda r: len(r.of(events.FAILED)) >= 1, "first failed attempt")

    crash(monitor, "executor")  # most likely while it waits out the first backoff
    supervisors.wait("child_restarted", "executor")
    recorder.wait_calls(1)

    assert [name for name, _ in recorder.calls] == ["on_failure"]
    attempts = [m["attempt"] for _, m, _ in recorder.of(events.STARTED)]
    assert attempts == [1, 2, 3]
    assert recorder.names().count("exhausted") == 1
    assert monitor.pending_recoveries() == []


class GatedService(tinkex.ServiceClient):
    """A real ServiceClient whose restores wait for the test to open the gate."""

    def __init__(self, **config_fields: Any) -> None:
        super().__init__(**config_fields)
        self.gate = threading.Event()

    def create_training_client_from_state_with_optimizer(
        self, *args: Any, **kwargs: Any
    ) -> tinkex.APIFuture[tinkex.TrainingClient]:
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return super().create_training_client_from_state_with_optimizer(*args, **kwargs)


def test_recoveries_queue_behind_the_concurrency_bound_and_duplicates_are_refused(
    base_url: str, recorder: Recorder, start_monitor: StartMonitor
) -> None:
    with GatedService(base_url=base_url, api_key=API_KEY) as service:
        try:
            clients = [new_client(service, seed=seed) for seed in (6, 7)]
            paths = [c.save_state("queued").result(WAIT).path for c in clients]
            monitor = start_monitor(max_concurrent=1, on_recovery=recorder.on_recovery)
            for client in clients:
                monitor.monitor_run(client, service)
            for client in clients:
                corrupt(base_url, client.model_id)
            recorder.wait_for(
                lambda r: len(r.of(events.DETECTED)) == 2 and len(r.of(events.STARTED)) == 1,
                "both runs detected, one attempt started",
            )

            # One attempt is held at the gate; the other recovery waits in the queue. (The
            # monitor answers this call only after it finished handing both runs over.)
            with pytest.raises(DuplicateRunError, match="being recovered"):
                monitor.monitor_run(clients[0], service)
            assert sorted(monitor.pending_recoveries()) == sorted(c.model_id for c in clients)
            assert len(recorder.of(events.STARTED)) == 1
        finally:
            service.gate.set()
        recorder.wait_calls(2)

    attempts = [
        (event.removeprefix("tinkex.recovery."), metadata["run_id"])
        for event, _, metadata in recorder.events
        if event != events.DETECTED
    ]
    assert [name for name, _ in attempts] == ["started", "succeeded", "started", "succeeded"]
    assert attempts[0][1] == attempts[1][1] != attempts[2][1] == attempts[3][1]
    recovered = {args[0].model_id: args[2] for _, args in recorder.calls}
    assert recovered == {c.model_id: p for c, p in zip(clients, paths, strict=True)}


def test_a_training_actor_the_runtime_gives_up_on_is_recovered(
    service: tinkex.ServiceClient,
    recorder: Recorder,
    supervisors: Supervisors,
    start_monitor: StartMonitor,
) -> None:
    client = new_client(service, seed=8)
    path = client.save_state("lost").result(WAIT).path  # also starts the training actor
    monitor = start_monitor(poll_interval=60.0, on_recovery=recorder.on_recovery)
    monitor.monitor_run(client, service, metadata={"job": "lost-actor"})

    # Crash the model's actor until the clients supervisor exceeds its restart intensity.
    supervisors.crash_until_given_up(f"training:{client.model_id}", "clients")
    recorder.wait_calls(1)

    ((_, (old, new, checkpoint)),) = recorder.calls
    assert old is client and checkpoint == path and new.model_id != client.model_id
    assert recorder.names() == ["detected", "started", "succeeded"]
    (_, _, detected) = recorder.of(events.DETECTED)[0]
    assert detected["reason"] == "actor_lost" and detected["checkpoint"] is None
    assert detected["job"] == "lost-actor"
    # The old client is not dead: its next call starts a fresh actor for the same model.
    assert client.forward(BATCH, "cross_entropy").result(WAIT).loss_fn_outputs


def test_stopping_gives_up_an_attempt_in_flight_at_once(
    service: tinkex.ServiceClient,
    recorder: Recorder,
    supervisors: Supervisors,
    start_monitor: StartMonitor,
) -> None:
    # A server that reports the run corrupted, then never answers the retry's fetch: the
    # one corner the local backend cannot produce on demand.
    corrupted = TrainingRun(
        training_run_id="stuck-run",
        base_model="tinkex/tiny-llama",
        model_owner="tenant",
        is_lora=True,
        corrupted=True,
        last_request_time=datetime.now(UTC),
    )
    never: tinkex.APIFuture[TrainingRun] = tinkex.APIFuture()
    answers = iter([tinkex.APIFuture.completed(corrupted)])

    def fetch(_service: tinkex.ServiceClient, run_id: str) -> tinkex.APIFuture[TrainingRun]:
        assert run_id == "stuck-run"
        return next(answers, never)

    monitor = start_monitor(fetch_run=fetch, max_attempts=2, on_failure=recorder.on_failure)
    monitor.monitor_run("stuck-run", service)
    recorder.wait_for(lambda r: len(r.of(events.STARTED)) == 2, "the second attempt")

    monitor.stop()  # well within the task supervisor's 5 s shutdown

    assert not monitor.is_alive()
    assert not [seen for seen in supervisors.seen if seen[0] == "child_abandoned"]
    assert recorder.names() == ["detected", "started", "failed", "started"]
    assert recorder.calls == []
    with pytest.raises(RecoveryError, match="this RecoveryMonitor is stopped"):
        monitor.watched_runs()
    with pytest.raises(RecoveryError, match="start a new one"):
        monitor.monitor_run("another-run", service)


@pytest.mark.parametrize("answer", ["raises", "not-a-run"])
def test_a_misbehaving_fetcher_is_a_poll_error_not_a_crash(
    answer: str,
    service: tinkex.ServiceClient,
    recorder: Recorder,
    supervisors: Supervisors,
    start_monitor: StartMonitor,
) -> None:
    def fetch(_service: tinkex.ServiceClient, run_id: str) -> tinkex.APIFuture[TrainingRun]:
        if answer == "raises":
            raise RuntimeError(f"no route to {run_id}")
        return tinkex.APIFuture.completed({"corrupted": True})  # type: ignore[arg-type]

    monitor = start_monitor(fetch_run=fetch)
    monitor.monitor_run("run-x", service)
    recorder.wait_for(lambda r: len(r.of(events.POLL_ERROR)) >= 2, "two poll errors")

    errors = [metadata["error"] for _, _, metadata in recorder.of(events.POLL_ERROR)]
    assert all(isinstance(e, RuntimeError if answer == "raises" else TypeError) for e in errors)
    assert monitor.watched_runs() == ["run-x"]
    assert supervisors.seen == []  # nothing crashed, nothing restarted


def test_a_stopped_monitor_is_not_kept_for_the_exit_hook() -> None:
    # Monitors still running at exit are stopped then; a stopped one must be let go, or a
    # daemon starting monitors would keep each one (and its callbacks) for ever.
    callbacks = Recorder()
    monitor = RecoveryMonitor.start(RecoveryPolicy(enabled=True, on_failure=callbacks.on_failure))
    monitor.stop()
    gone = weakref.ref(callbacks)
    del monitor, callbacks
    gc.collect()
    assert gone() is None

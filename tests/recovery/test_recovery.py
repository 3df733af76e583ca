"""Recovery end to end against ``tinkex serve``: train, checkpoint, corrupt, recover."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import tinkex
from tinkex.errors import NotFoundError
from tinkex.recovery import (
    DuplicateRunError,
    NoCheckpointError,
    RecoveryDisabledError,
    RecoveryMonitor,
    RecoveryPolicy,
    events,
)

from .conftest import WAIT, Recorder, corrupt, logprobs, new_client, train

StartMonitor = Callable[..., RecoveryMonitor]


def test_a_corrupted_run_is_recovered_from_its_latest_checkpoint_with_its_optimizer(
    base_url: str,
    service: tinkex.ServiceClient,
    recorder: Recorder,
    start_monitor: StartMonitor,
) -> None:
    client = new_client(service)
    train(client, 1)
    path = client.save_state("before-crash").result(WAIT).path
    monitor = start_monitor(on_recovery=recorder.on_recovery)
    assert monitor.monitor_run(client, service, metadata={"job": "nightly"}) == client.model_id

    corrupt(base_url, client.model_id)
    recorder.wait_calls(1)

    ((name, (old, new, checkpoint)),) = recorder.calls
    assert name == "on_recovery" and old is client and checkpoint == path
    assert isinstance(new, tinkex.TrainingClient) and new.model_id != client.model_id
    assert recorder.names() == ["detected", "started", "succeeded"]
    for _, _, metadata in recorder.events:
        assert metadata["run_id"] == client.model_id
        assert metadata["reason"] == "corrupted" and metadata["job"] == "nightly"
    (_, _, detected), (_, started, _), (_, succeeded, done) = recorder.events
    assert detected["checkpoint"] == path
    assert started == {"attempt": 1}
    assert succeeded["attempt"] == 1 and succeeded["duration"] > 0
    assert done["checkpoint"] == path and done["new_model_id"] == new.model_id
    assert monitor.watched_runs() == [] and monitor.pending_recoveries() == []

    # Weights and optimizer state are the checkpoint's: the recovered client takes the same
    # step as a client restored by hand from the same path with its optimizer state (Adam's
    # moments decide the step, so a weights-only restore would take another one).
    manual = service.create_training_client_from_state_with_optimizer(path).result(WAIT)
    for restored in (new, manual):
        train(restored, 1)
    np.testing.assert_array_equal(logprobs(new), logprobs(manual))

    monitor.stop()  # joins timers and workers: nothing can fire any more
    assert len(recorder.calls) == 1
    assert recorder.names() == ["detected", "started", "succeeded"]


def test_a_chosen_checkpoint_is_restored_weights_only(
    base_url: str,
    service: tinkex.ServiceClient,
    recorder: Recorder,
    start_monitor: StartMonitor,
) -> None:
    client = new_client(service, seed=2)
    early = client.save_state("early").result(WAIT).path
    train(client, 1)
    client.save_state("late").result(WAIT)
    monitor = start_monitor(
        checkpoint_strategy=early, restore_optimizer=False, on_recovery=recorder.on_recovery
    )
    monitor.monitor_run(client.model_id, service)

    corrupt(base_url, client.model_id)
    recorder.wait_calls(1)

    ((_, (old, new, checkpoint)),) = recorder.calls
    assert old is None and checkpoint == early  # watched by id: there is no old client
    manual = service.create_training_client_from_state(early).result(WAIT)
    np.testing.assert_array_equal(logprobs(new), logprobs(manual))
    (_, _, started) = recorder.of(events.STARTED)[0]
    assert started["strategy"] == early


def test_a_run_without_checkpoint_exhausts_its_attempts_with_doubling_backoff(
    base_url: str,
    service: tinkex.ServiceClient,
    recorder: Recorder,
    start_monitor: StartMonitor,
) -> None:
    client = new_client(service, seed=3)
    monitor = start_monitor(
        max_attempts=4,
        backoff=0.01,
        max_backoff=0.03,
        on_recovery=recorder.on_recovery,
        on_failure=recorder.on_failure,
    )
    monitor.monitor_run(client, service)
    corrupt(base_url, client.model_id)
    recorder.wait_calls(1)

    ((name, (run_id, reason)),) = recorder.calls
    assert name == "on_failure" and run_id == client.model_id
    assert isinstance(reason, NoCheckpointError) and "save_state" in str(reason)
    assert recorder.names() == [
        "detected",
        *["started", "failed"] * 3,
        "started",
        "exhausted",
    ]
    attempts = [m["attempt"] for _, m, _ in recorder.of(events.STARTED)]
    delays = [m["delay"] for _, m, _ in recorder.of(events.FAILED)]
    assert attempts == [1, 2, 3, 4]
    assert delays == [0.01, 0.02, 0.03]
    (_, exhausted, metadata) = recorder.of(events.EXHAUSTED)[0]
    assert exhausted["attempts"] == 4 and metadata["error"] is reason
    assert monitor.pending_recoveries() == []
    monitor.stop()
    assert len(recorder.calls) == 1


def test_a_disabled_policy_refuses_to_monitor(service: tinkex.ServiceClient) -> None:
    with RecoveryMonitor.start(RecoveryPolicy()) as monitor:
        with pytest.raises(RecoveryDisabledError, match="enabled=True"):
            monitor.monitor_run("some-run", service)
        assert monitor.watched_runs() == []


def test_bad_arguments_and_duplicates_are_refused(
    service: tinkex.ServiceClient, start_monitor: StartMonitor
) -> None:
    monitor = start_monitor(poll_interval=60.0)
    with pytest.raises(TypeError, match="RecoveryPolicy"):
        RecoveryMonitor.start({"enabled": True})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TrainingClient or a non-empty"):
        monitor.monitor_run("", service)
    with pytest.raises(TypeError, match="ServiceClient"):
        monitor.monitor_run("run-a", "http://localhost")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        monitor.monitor_run("run-a", service, metadata=[("k", "v")])  # type: ignore[arg-type]
    assert monitor.watched_runs() == []

    monitor.monitor_run("run-a", service)
    with pytest.raises(DuplicateRunError, match="already monitored"):
        monitor.monitor_run("run-a", service)
    assert monitor.stop_monitoring("run-a") is True
    assert monitor.stop_monitoring("run-a") is False
    assert monitor.watched_runs() == []


def test_a_failing_poll_is_reported_and_the_run_stays_watched(
    service: tinkex.ServiceClient, recorder: Recorder, start_monitor: StartMonitor
) -> None:
    monitor = start_monitor()
    monitor.monitor_run("no-such-run", service, metadata={"job": "ghost"})
    recorder.wait_for(lambda r: len(r.of(events.POLL_ERROR)) >= 2, "two poll errors")

    (_, measurements, metadata) = recorder.of(events.POLL_ERROR)[0]
    assert measurements == {}
    assert metadata["run_id"] == "no-such-run" and metadata["job"] == "ghost"
    assert isinstance(metadata["error"], NotFoundError)
    assert monitor.watched_runs() == ["no-such-run"]
    assert set(recorder.names()) == {"poll_error"}

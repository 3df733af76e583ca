"""Fixtures of the recovery tests: a client of the session's ``tinkex serve``, a recorder of
``tinkex.recovery.*`` signals, and the local backend's corrupt-run hook."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum
from tests.conftest import API_KEY
from tinkex import AdamParams, telemetry
from tinkex.recovery import RecoveryMonitor, RecoveryPolicy, events

WAIT = 60.0
"""Bound on every wait for something that must happen (never reached when it works)."""

BATCH = [datum("recover me")]
ADAM = AdamParams(learning_rate=1e-2)

Event = tuple[str, dict[str, Any], dict[str, Any]]


class Recorder:
    """Collects signals, and user callbacks' calls, and lets a test wait for them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = threading.Condition()

    def __call__(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        with self._changed:
            self.events.append((event, measurements, metadata))
            self._changed.notify_all()

    def on_recovery(self, *args: Any) -> None:
        self._called("on_recovery", args)

    def on_failure(self, *args: Any) -> None:
        self._called("on_failure", args)

    def _called(self, name: str, args: tuple[Any, ...]) -> None:
        with self._changed:
            self.calls.append((name, args))
            self._changed.notify_all()

    def wait_for(self, done: Callable[[Recorder], bool], what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: done(self), WAIT), f"no {what}: {self.names()}"

    def wait_calls(self, count: int) -> None:
        self.wait_for(lambda r: len(r.calls) >= count, f"{count} callback call(s)")

    def names(self, run_id: str | None = None) -> list[str]:
        """Recovery signal names (without the ``tinkex.recovery.`` prefix), in order."""
        with self._changed:
            return [
                event.removeprefix("tinkex.recovery.")
                for event, _, metadata in self.events
                if run_id is None or metadata.get("run_id") == run_id
            ]

    def of(self, event: str, run_id: str | None = None) -> list[Event]:
        with self._changed:
            return [
                e for e in self.events if e[0] == event and run_id in (None, e[2].get("run_id"))
            ]


@pytest.fixture(autouse=True)
def _no_leaked_handlers() -> Iterator[None]:
    """A stopped monitor detaches the telemetry handler each of its incarnations attached."""
    yield
    leaked = [i.id for i in telemetry.list_handlers() if i.id.startswith("tinkex.recovery")]
    for handler_id in leaked:
        telemetry.detach(handler_id)
    assert not leaked, f"handlers left attached: {leaked}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    telemetry.attach_many("tests.recovery.recorder", events.ALL_EVENTS, recorder)
    yield recorder
    telemetry.detach("tests.recovery.recorder")


@pytest.fixture
def service(base_url: str) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as client:
        yield client


@pytest.fixture
def start_monitor() -> Iterator[Callable[..., RecoveryMonitor]]:
    """``start_monitor(**policy_fields)``: a monitor with fast polls; stopped after the test."""
    started: list[RecoveryMonitor] = []

    def start(fetch_run: Any = None, **fields: Any) -> RecoveryMonitor:
        settings = {"enabled": True, "poll_interval": 0.05, "backoff": 0.01, **fields}
        settings.setdefault("max_backoff", max(0.02, settings["backoff"]))
        monitor = RecoveryMonitor.start(RecoveryPolicy(**settings), fetch_run=fetch_run)
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        monitor.stop()


def corrupt(base_url: str, run_id: str) -> None:
    """Mark ``run_id`` corrupted through the local backend's test hook."""
    response = httpx.post(
        f"{base_url}/api/v1/local/corrupt_run",
        json={"model_id": run_id},
        headers={"X-API-Key": API_KEY},
        timeout=WAIT,
    )
    assert response.status_code == 200, response.text


def new_client(service: tinkex.ServiceClient, seed: int = 1) -> tinkex.TrainingClient:
    return service.create_lora_training_client(BASE_MODEL, rank=4, seed=seed).result(WAIT)


def train(client: tinkex.TrainingClient, steps: int) -> None:
    for _ in range(steps):
        client.forward_backward(BATCH, "cross_entropy")
        client.optim_step(ADAM).result(WAIT)


def logprobs(client: tinkex.TrainingClient) -> np.ndarray:
    out = client.forward(BATCH, "cross_entropy").result(WAIT)
    return np.concatenate([o["logprobs"].to_numpy() for o in out.loss_fn_outputs])

"""Killing the client's actors mid-training changes nothing but timing.

Each actor of the runtime is crashed (an actor crashes on a message it does not
understand) while a training loop and samples are in flight; the supervisor restarts it,
the work it held resumes, and the final weights equal those of an undisturbed run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import tinkex
from tests.conftest import API_KEY
from tinkex import AdamParams, Datum, ModelInput, SamplingParams, telemetry
from tinkex.actors.runtime import Runtime
from tinkex.local import FaultProfile, LocalServer, ServerConfig

BASE_MODEL = "tinkex/tiny-llama"
LINES = ["kill me softly", "restart and carry on", "the daemon survives"]
BATCH = [
    Datum(
        model_input=ModelInput.from_ints(list(line.encode())[:-1]),
        loss_fn_inputs={"target_tokens": list(line.encode())[1:]},
    )
    for line in LINES
]
ADAM = AdamParams(learning_rate=1e-2)
STEPS = 6
RESTART_TIMEOUT = 30.0


class Restarts:
    """Watches ``tinkex.supervisor.child_restarted`` and the I/O loop's resumed jobs."""

    def __init__(self) -> None:
        self.restarted: dict[str, threading.Event] = {}
        self.resumed_jobs = 0
        self._lock = threading.Lock()

    def _event(self, name: str) -> threading.Event:
        with self._lock:
            return self.restarted.setdefault(name, threading.Event())

    def on_restart(
        self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        self._event(metadata["child_id"]).set()

    def on_resume(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        with self._lock:
            self.resumed_jobs += measurements["jobs"]

    def kill(self, name: str) -> None:
        restarted = self._event(name)
        restarted.clear()
        Runtime.get().ref(name).tell("a message no actor understands")
        assert restarted.wait(RESTART_TIMEOUT), f"{name} was not restarted in time"


@pytest.fixture
def restarts() -> Iterator[Restarts]:
    watcher = Restarts()
    telemetry.attach("test-restarts", "tinkex.supervisor.child_restarted", watcher.on_restart)
    telemetry.attach("test-resumed", "tinkex.io_loop.resumed", watcher.on_resume)
    yield watcher
    telemetry.detach("test-restarts")
    telemetry.detach("test-resumed")


@pytest.fixture(scope="module")
def slow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose polls answer slowly, so work is in flight when actors die."""
    config = ServerConfig(
        port=0,
        data_dir=tmp_path_factory.mktemp("slow"),
        faults=FaultProfile(slow_poll_seconds=0.2),
    )
    with LocalServer(config) as server:
        yield server.url


def _train(
    base_url: str, kill_at: dict[int, list[str]], kill: Callable[[str], None]
) -> tuple[np.ndarray, list[list[int]]]:
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as service:
        client = service.create_lora_training_client(BASE_MODEL, rank=4, seed=11).result(60)
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(60)
        names = {
            "training": f"training:{client.model_id}",
            "sampling": f"sampling:{sampler.sampling_session_id}",
        }
        samples = []
        for step in range(STEPS):
            fwdbwd = client.forward_backward(BATCH, "cross_entropy")
            optim = client.optim_step(ADAM)
            sample = sampler.sample(
                ModelInput.from_ints(list(b"kill")), 1, SamplingParams(max_tokens=6, seed=step)
            )
            for name in kill_at.get(step, []):
                kill(names.get(name, name))
            fwdbwd.result(60)
            optim.result(60)
            samples.append(sample.result(60).sequences[0].tokens)
        out = client.forward(BATCH, "cross_entropy").result(60)
    logprobs = np.concatenate([o["logprobs"].to_numpy() for o in out.loss_fn_outputs])
    return logprobs, samples


def test_killing_every_actor_mid_loop_changes_nothing(slow_url: str, restarts: Restarts) -> None:
    undisturbed, undisturbed_samples = _train(slow_url, {}, lambda name: None)
    kills = {
        0: ["training"],
        1: ["io_loop"],
        2: ["sampling"],
        3: ["rate_limiter"],
        4: ["session_manager"],
    }
    killed, killed_samples = _train(slow_url, kills, restarts.kill)
    assert restarts.resumed_jobs > 0, "the I/O loop died with no work in flight"
    np.testing.assert_array_equal(killed, undisturbed)
    assert killed_samples == undisturbed_samples

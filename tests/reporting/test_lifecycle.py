"""A reporter lives as long as its session: through supervisors giving up, and to the end of
a process that never closed its client.

What the server received is read back from ``tinkex serve`` (``/api/v1/local/telemetry_events``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum, new_key
from tests.reporting.conftest import events_of
from tests.supervisors import Supervisors, watching
from tinkex.actors.runtime import Runtime

WAIT = 60.0
"""Bound on every wait for something that must happen (never reached when it works)."""
DRAIN = 15.0
"""What a prompt close() needs here, well under the 30 s it waits for an actor that is gone."""


@pytest.fixture
def supervisors() -> Iterator[Supervisors]:
    with watching("tests.reporting.supervisors") as watcher:
        yield watcher


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e.get("event_name", e["event"]) for e in events]


# --- supervisors giving up ---------------------------------------------------------------------


def test_telemetry_outlives_the_clients_supervisor_giving_up(
    open_server: Any, supervisors: Supervisors
) -> None:
    # What recovery's "actor lost" reacts to: a training actor crashing until the clients
    # supervisor gives up and the runtime restarts it with no children.
    key = new_key()
    service = tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=True)
    try:
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(WAIT)
        training.forward([datum("before")], "cross_entropy").result(WAIT)  # starts its actor
        reporter = service.telemetry_reporter
        assert reporter is not None
        session = service.session_id
        supervisors.crash_until_given_up(f"training:{training.model_id}", "clients")

        assert reporter.log("after.give_up")
        training.forward([datum("after")], "cross_entropy").result(WAIT)  # a fresh actor
        assert reporter.close(timeout=DRAIN), "the queue was not drained"
    finally:
        service.close().result(WAIT)

    events = events_of(open_server, key, session)
    after = events[names(events).index("after.give_up") :]
    assert after[-1]["event"] == "SESSION_END"
    # The session's signals are still forwarded: the reporter never stopped.
    forwarded = [
        e["event_data"]["metadata"]["path"]
        for e in after
        if e.get("event_name") == "tinkex.http.request.stop"
    ]
    assert "/api/v1/forward_backward" in forwarded


def test_a_reporter_lost_with_its_supervisor_starts_again_on_demand(
    open_server: Any, supervisors: Supervisors
) -> None:
    key = new_key()
    with tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=True) as service:
        reporter = service.telemetry_reporter
        assert reporter is not None
        session = service.session_id
        supervisors.crash_until_given_up(reporter.name, "telemetry")
        registry = Runtime.get().registry
        assert registry.whereis(reporter.name) is None, "the reporter's actor should be gone"

        assert reporter.log("after.give_up")
        assert reporter.flush(timeout=DRAIN)
        assert registry.whereis(reporter.name) is not None
        assert reporter.close(timeout=DRAIN)

    assert names(events_of(open_server, key, session))[-2:] == ["after.give_up", "SESSION_END"]


# --- the end of a process that never closed its client ----------------------------------------

PREAMBLE = """
import sys, threading
import tinkex

service = tinkex.ServiceClient(base_url=sys.argv[1], api_key=sys.argv[2], telemetry=True)
reporter = service.telemetry_reporter
"""

SCRIPTS = {
    "crash": PREAMBLE
    + """
reporter.log("script.event", {"step": 1})
raise RuntimeError("the script crashed")
""",
    "thread-crash-then-exit": PREAMBLE
    + """
worker = threading.Thread(target=lambda: 1 / 0)
worker.start()
worker.join()
reporter.log("script.event", {"step": 2})
""",
    "closed-then-crash": PREAMBLE
    + """
reporter.log("script.event", {"step": 3})
service.close().result(60)
raise RuntimeError("after the session ended")
""",
}


def run_script(server: Any, script: str) -> tuple[subprocess.CompletedProcess[str], str]:
    key = new_key()
    env = {name: value for name, value in os.environ.items() if name != "TINKER_TELEMETRY"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPTS[script], server.url, key],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        env=env,
        check=False,
    )
    return done, key


@pytest.mark.parametrize(
    ("script", "returncode", "printed", "expected"),
    [
        (
            "crash",
            1,
            "RuntimeError: the script crashed",
            ["SESSION_START", "script.event", "UNHANDLED_EXCEPTION", "SESSION_END"],
        ),
        (
            # The thread's exception is reported at once; the session ends with the process.
            "thread-crash-then-exit",
            0,
            "ZeroDivisionError: division by zero",
            ["SESSION_START", "UNHANDLED_EXCEPTION", "script.event", "SESSION_END"],
        ),
        (
            # No reporter is open any more: the hook only prints the traceback.
            "closed-then-crash",
            1,
            "RuntimeError: after the session ended",
            ["SESSION_START", "script.event", "SESSION_END"],
        ),
    ],
    ids=list(SCRIPTS),
)
def test_what_ends_the_process_is_reported_and_the_queue_drained(
    open_server: Any, script: str, returncode: int, printed: str, expected: list[str]
) -> None:
    done, key = run_script(open_server, script)
    assert done.returncode == returncode, done.stderr
    assert printed in done.stderr  # the hooks that were there before still ran
    # The script's own events, not the signals forwarded from its requests.
    events = [e for e in events_of(open_server, key) if not names([e])[0].startswith("tinkex.")]
    assert names(events) == expected
    for crash in (e for e in events if e["event"] == "UNHANDLED_EXCEPTION"):
        assert printed == f"{crash['error_type']}: {crash['error_message']}"
        assert crash["traceback"] and printed in crash["traceback"]

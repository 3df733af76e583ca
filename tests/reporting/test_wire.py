"""``POST /api/v1/telemetry`` on the local server: validated and kept per owner (§2.10)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.client.conftest import new_key
from tests.reporting.conftest import batches_of
from tinkex.types import TelemetrySendRequest


def event(index: int, **fields: Any) -> dict[str, Any]:
    return {
        "event": "GENERIC_EVENT",
        "event_id": str(uuid.uuid4()),
        "event_session_index": index,
        "severity": "INFO",
        "timestamp": "2025-01-02T03:04:05.678901+00:00",
        "event_name": "test.event",
        "event_data": {"n": index},
        **fields,
    }


def batch(*events: dict[str, Any], session_id: str = "session-1") -> dict[str, Any]:
    return {
        "events": list(events),
        "platform": "Linux",
        "sdk_version": "0.38.0",
        "session_id": session_id,
        "process_uuid": str(uuid.uuid4()),
    }


def post(server: Any, key: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/telemetry", headers={"X-API-Key": key}, json=body, timeout=10
    )


def test_a_valid_batch_is_accepted_and_kept_for_its_owner_only(open_server: Any) -> None:
    server = open_server
    owner, other = new_key(), new_key()
    sent = batch(
        {
            "event": "SESSION_START",
            "event_id": str(uuid.uuid4()),
            "event_session_index": 0,
            "severity": "INFO",
            "timestamp": "2025-01-02T03:04:05Z",
        },
        event(1),
        {
            "event": "UNHANDLED_EXCEPTION",
            "event_id": str(uuid.uuid4()),
            "event_session_index": 2,
            "severity": "ERROR",
            "timestamp": "2025-01-02T03:04:06Z",
            "error_type": "RuntimeError",
            "error_message": "boom",
        },
        {
            "event": "SESSION_END",
            "event_id": str(uuid.uuid4()),
            "event_session_index": 3,
            "severity": "INFO",
            "timestamp": "2025-01-02T03:04:07Z",
            "duration": "0:00:02",
        },
    )

    response = post(server, owner, sent)

    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    [kept] = batches_of(server, owner)
    assert TelemetrySendRequest.model_validate(kept) == TelemetrySendRequest.model_validate(sent)
    assert [e["event"] for e in kept["events"]] == [
        "SESSION_START",
        "GENERIC_EVENT",
        "UNHANDLED_EXCEPTION",
        "SESSION_END",
    ]
    assert batches_of(server, other) == []
    assert batches_of(server, owner, session_id="another-session") == []


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({}, "events: Field required"),
        (batch(event(0), session_id=""), "session_id"),
        ({**batch(event(0)), "process_uuid": None}, "process_uuid"),
        (batch(event(0, event="SOMETHING_ELSE")), "does not match any of the expected tags"),
        (batch(event(0, severity="LOUD")), "events.0.GENERIC_EVENT.severity"),
        (batch(event(-1)), "event_session_index"),
        (batch(event(0, timestamp="yesterday")), "timestamp"),
        (batch({"event_id": "x"}), "Unable to extract tag using discriminator 'event'"),
        ([event(0)], "Input should be a valid dictionary"),
    ],
    ids=[
        "empty",
        "blank-session",
        "no-process-uuid",
        "unknown-event",
        "bad-severity",
        "negative-index",
        "bad-timestamp",
        "no-event-type",
        "not-an-object",
    ],
)
def test_a_malformed_batch_is_refused_with_what_is_wrong(
    open_server: Any, body: Any, complaint: str
) -> None:
    server = open_server
    key = new_key()

    response = post(server, key, body)

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("invalid TelemetrySendRequest: ")
    assert complaint in detail
    assert batches_of(server, key) == []


def test_a_body_that_is_not_json_is_refused(open_server: Any) -> None:
    server = open_server
    key = new_key()
    response = httpx.post(
        f"{server.url}/api/v1/telemetry",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        content=b"{not json",
        timeout=10,
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]

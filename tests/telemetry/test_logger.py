"""attach_logger(): readable records, and no secrets in them."""

from __future__ import annotations

import logging

import pytest

from tinkex import telemetry


def test_logs_tinkex_events_at_the_chosen_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "tinkex.telemetry")
    handler_id = telemetry.attach_logger(logging.WARNING)
    try:
        telemetry.execute(
            telemetry.SUPERVISOR_CHILD_RESTARTED,
            {"duration": 1_500_000, "monotonic_time": 42},
            {"supervisor": "app", "child_id": "cache", "generation": 7},
        )
    finally:
        assert telemetry.detach(handler_id)

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "tinkex.supervisor.child_restarted duration=1.500ms "
        "supervisor='app' child_id='cache' generation=7"
    )


def test_secrets_are_masked_at_any_depth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tinkex.telemetry")
    handler_id = telemetry.attach_logger(events=["tinkex.http.request.stop"])
    try:
        telemetry.execute(
            "tinkex.http.request.stop",
            {},
            {
                "api_key": "sk-live-123",
                "headers": {"Authorization": "Bearer abc", "X-Session-Token": "t0k"},
                "client_secret": "shh",
                "path": "/api/v1/forward",
                "num_tokens": 512,
                "tokenizer_id": "acme/tok",
            },
        )
    finally:
        telemetry.detach(handler_id)

    message = caplog.records[0].getMessage()
    for secret in ("sk-live-123", "Bearer abc", "t0k", "shh"):
        assert secret not in message
    assert "api_key='***'" in message
    assert "'Authorization': '***'" in message
    assert "path='/api/v1/forward'" in message
    # A secret is named by a whole word of the key, so ML data is not hidden:
    assert "num_tokens=512" in message and "tokenizer_id='acme/tok'" in message


def test_long_values_are_truncated_and_a_custom_logger_is_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = logging.getLogger("tests.telemetry.custom")
    caplog.set_level(logging.INFO, target.name)
    handler_id = telemetry.attach_logger(events=["big.event"], log=target, handler_id="custom")
    try:
        telemetry.execute("big.event", {}, {"payload": "x" * 1000})
    finally:
        telemetry.detach(handler_id)

    [record] = caplog.records
    assert record.name == target.name
    assert len(record.getMessage()) < 300
    assert record.getMessage().endswith("...")


def test_the_default_events_cover_every_supervisor_signal() -> None:
    supervisor_events = {
        value
        for name, value in vars(telemetry).items()
        if name.startswith("SUPERVISOR_") and isinstance(value, str)
    }

    assert supervisor_events <= set(telemetry.DEFAULT_LOG_EVENTS)
    assert len(supervisor_events) == 7

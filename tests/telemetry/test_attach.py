"""Attaching, listing and detaching handlers by id."""

from __future__ import annotations

from typing import Any

import pytest

from tinkex import telemetry


def ignore(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    pass


def test_attach_list_detach() -> None:
    telemetry.attach("h", "tests.queue.state_change", ignore)

    [info] = telemetry.list_handlers("tests")
    assert (info.id, info.events, info.function, info.config) == (
        "h",
        ("tests.queue.state_change",),
        ignore,
        None,
    )
    assert telemetry.detach("h") is True
    assert telemetry.detach("h") is False
    assert telemetry.list_handlers("tests") == []


def test_ids_are_unique() -> None:
    telemetry.attach("h", "tests.a.b", ignore)
    try:
        with pytest.raises(telemetry.HandlerExistsError):
            telemetry.attach_many("h", ["tests.c.d"], ignore)
    finally:
        telemetry.detach("h")


def test_list_handlers_matches_whole_segments() -> None:
    telemetry.attach_many("http", ["tests.http.request.stop", "tests.retry.attempt.failed"], ignore)
    telemetry.attach("httpx", "tests.httpx.other", ignore)
    try:
        assert [i.id for i in telemetry.list_handlers("tests.http")] == ["http"]
        assert [i.id for i in telemetry.list_handlers(("tests", "retry"))] == ["http"]
        assert sorted(i.id for i in telemetry.list_handlers("tests")) == ["http", "httpx"]
        assert telemetry.list_handlers("tests.queue") == []
    finally:
        telemetry.detach("http")
        telemetry.detach("httpx")


def test_tuple_and_dotted_names_are_the_same_event() -> None:
    seen: list[str] = []
    telemetry.attach("h", ("tests", "queue", "state_change"), lambda e, m, md: seen.append(e))
    try:
        telemetry.execute("tests.queue.state_change")
        telemetry.execute(("tests", "queue", "state_change"))
    finally:
        telemetry.detach("h")

    assert seen == ["tests.queue.state_change"] * 2


def test_a_handler_attached_with_config_receives_it() -> None:
    seen: list[Any] = []

    def handler(
        event: str, measurements: dict[str, Any], metadata: dict[str, Any], config: dict[str, int]
    ) -> None:
        seen.append((event, measurements, metadata, config))

    telemetry.attach("h", "tests.a.b", handler, {"threshold": 3})
    try:
        telemetry.execute("tests.a.b", {"n": 1}, {"k": "v"})
        assert telemetry.list_handlers("tests.a")[0].config == {"threshold": 3}
    finally:
        telemetry.detach("h")

    assert seen == [("tests.a.b", {"n": 1}, {"k": "v"}, {"threshold": 3})]


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", ()])
def test_invalid_event_names_are_refused(name: telemetry.EventName) -> None:
    with pytest.raises(ValueError, match="event name"):
        telemetry.attach("h", name, ignore)


def test_no_events_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        telemetry.attach_many("h", [], ignore)


def test_coroutine_handlers_are_refused() -> None:
    async def handler(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        pass

    with pytest.raises(TypeError, match="coroutine"):
        telemetry.attach("h", "tests.a.b", handler)

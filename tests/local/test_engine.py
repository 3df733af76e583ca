"""The engine's ordering, deduplication and queue states, on the real Engine class."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tinkex.local.engine import Engine, ModelLane, Work
from tinkex.local.promises import JsonResult, Promise, PromiseStore

WAIT = 10.0


@pytest.fixture
def promises() -> PromiseStore:
    return PromiseStore(ttl_seconds=60)


@pytest.fixture
def engine(promises: PromiseStore) -> Iterator[Engine]:
    engine = Engine(
        promises,
        capacity_limit=1,
        max_models_per_owner=1,
        max_samplers_per_owner=1,
        seq_gap_timeout=0.0,
    )
    yield engine
    engine.shutdown()


def _recorder(log: list[int], seq: int) -> JsonResult:
    log.append(seq)
    return JsonResult({"seq": seq})


def _settled(promise: Promise, timeout: float = WAIT) -> bool:
    return promise.wait_settled(timeout)


def _ordered(
    engine: Engine, promises: PromiseStore, lane: ModelLane, seq: int | None, work: Work
) -> Promise:
    promise = promises.get(engine.submit_ordered(lane, seq, "T", work))
    assert promise is not None
    return promise


def test_early_arrivals_are_held_until_their_turn(engine: Engine, promises: PromiseStore) -> None:
    lane, _ = engine.open_lane("m", "owner")
    ran: list[int] = []
    late = [
        _ordered(engine, promises, lane, seq, lambda s=seq: _recorder(ran, s)) for seq in (2, 1)
    ]
    assert not any(p.done for p in late), "nothing may run before seq_id 0"
    first = _ordered(engine, promises, lane, 0, lambda: _recorder(ran, 0))
    assert all(_settled(p) for p in [first, *late])
    assert ran == [0, 1, 2]


def test_a_resent_seq_id_gets_the_first_promise_and_runs_once(
    engine: Engine, promises: PromiseStore
) -> None:
    lane, _ = engine.open_lane("m", "owner")
    ran: list[int] = []
    first = _ordered(engine, promises, lane, 0, lambda: _recorder(ran, 0))
    again = _ordered(engine, promises, lane, 0, lambda: _recorder(ran, 99))
    assert again is first
    assert _settled(first)
    assert ran == [0]


def test_a_seq_id_from_the_past_is_rejected(engine: Engine, promises: PromiseStore) -> None:
    from tinkex.local.errors import BadRequest

    lane, _ = engine.open_lane("m", "owner")
    assert _settled(_ordered(engine, promises, lane, 0, lambda: JsonResult({})))
    lane.seen.clear()
    with pytest.raises(BadRequest, match="seq_id 0 on model m is in the past"):
        _ordered(engine, promises, lane, 0, lambda: JsonResult({}))


def test_a_missing_seq_id_is_skipped_after_the_gap_timeout(
    engine: Engine, promises: PromiseStore
) -> None:
    lane, _ = engine.open_lane("m", "owner")
    ran: list[int] = []
    assert _settled(_ordered(engine, promises, lane, 0, lambda: _recorder(ran, 0)))
    waiting = _ordered(engine, promises, lane, 2, lambda: _recorder(ran, 2))
    assert not waiting.done
    engine.skip_gaps()  # gap timeout is 0 in this fixture
    assert _settled(waiting)
    assert ran == [0, 2]


def test_queue_depth_beyond_capacity_reports_paused_capacity(engine: Engine) -> None:
    release = threading.Event()
    blocker = engine.submit("Sample", "owner", lambda: JsonResult({"ok": release.wait(WAIT)}))
    queued = [engine.submit("Sample", "owner", lambda: JsonResult({})) for _ in range(2)]
    assert queued[-1].queue_state() == "paused_capacity"
    release.set()
    assert all(_settled(p) for p in [blocker, *queued])
    assert queued[-1].queue_state() == "active"


def test_models_beyond_the_owner_limit_wait_for_admission(
    engine: Engine, promises: PromiseStore
) -> None:
    first, _ = engine.open_lane("a", "owner")
    second, _ = engine.open_lane("b", "owner")
    other, _ = engine.open_lane("c", "someone-else")
    assert first.admitted and other.admitted and not second.admitted
    waiting = _ordered(engine, promises, second, 0, lambda: JsonResult({}))
    assert waiting.queue_state() == "paused_rate_limit"
    assert not waiting.done
    engine.close_lane("a")
    assert _settled(waiting)
    assert second.admitted


def test_closing_a_lane_fails_what_it_still_held(engine: Engine, promises: PromiseStore) -> None:
    lane, _ = engine.open_lane("m", "owner")
    held = _ordered(engine, promises, lane, 3, lambda: JsonResult({}))
    engine.close_lane("m")
    assert held.done and held.error is not None
    assert held.error.category == "user" and "unloaded" in held.error.message

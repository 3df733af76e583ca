"""Restart intensity, give-up and escalation."""

from __future__ import annotations

import itertools
import threading

import pytest

from tinkex.supervision import (
    ChildSpec,
    ExitKind,
    MaxRestartsExceeded,
    Registry,
    Restart,
    Strategy,
    Supervisor,
)
from tinkex.supervision.intensity import RestartIntensity

from .helpers import WAIT, Journal, Signals, Worker, ping


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_more_than_max_restarts_in_the_window_exceeds() -> None:
    intensity = RestartIntensity(3, 5.0, clock=FakeClock())

    assert [intensity.add_restart() for _ in range(4)] == [True, True, True, False]


def test_restarts_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    intensity = RestartIntensity(2, 5.0, clock=clock)
    intensity.add_restart()
    intensity.add_restart()

    clock.now += 5.0

    assert intensity.add_restart()
    assert len(intensity) == 1


def test_zero_max_restarts_means_never_restart() -> None:
    assert not RestartIntensity(0, 5.0, clock=FakeClock()).add_restart()


@pytest.mark.parametrize(("max_restarts", "max_seconds"), [(-1, 5.0), (3, 0.0)])
def test_intensity_limits_are_validated(max_restarts: int, max_seconds: float) -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        RestartIntensity(max_restarts, max_seconds)


def crash_current(registry: Registry, child_id: str, signals: Signals) -> None:
    """Crash the current incarnation of ``child_id`` and wait until its exit was handled."""
    ref = registry.lookup(child_id)
    generation = ping(ref)[1]
    ref.tell("crash")
    signals.wait_for("tinkex.supervisor.child_exited", child_id=child_id, generation=generation)


@pytest.mark.parametrize("max_restarts", [0, 1, 3])
def test_the_supervisor_gives_up_after_max_restarts(
    max_restarts: int, journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    children = [ChildSpec(i, Worker, args=(journal,)) for i in ("a", "b", "c")]
    sup = Supervisor.start(children, max_restarts=max_restarts, max_seconds=60, registry=registry)
    for restarts in range(1, max_restarts + 1):
        crash_current(registry, "b", signals)
        signals.wait_for("tinkex.supervisor.child_restarted", count=restarts, child_id="b")
    assert signals.matching("tinkex.supervisor.max_restarts_exceeded") == []

    crash_current(registry, "b", signals)
    reason = sup.wait(WAIT)

    assert reason.kind is ExitKind.CRASH
    assert isinstance(reason.error, MaxRestartsExceeded)
    [gave_up] = signals.matching("tinkex.supervisor.max_restarts_exceeded")
    assert gave_up["child_id"] == "b"
    assert journal.ids("init").count("b") == max_restarts + 1
    assert journal.ids("terminate")[-3:] == ["b", "c", "a"]


def test_one_for_all_counts_one_restart_per_event(journal: Journal, signals: Signals) -> None:
    registry = Registry()
    children = [ChildSpec(i, Worker, args=(journal,)) for i in ("a", "b", "c")]
    with Supervisor.start(
        children, strategy=Strategy.ONE_FOR_ALL, max_restarts=1, registry=registry
    ) as sup:
        crash_current(registry, "a", signals)
        sup.which_children()  # answered after the restart that followed the exit

        assert sup.is_alive()
        assert journal.ids("init") == ["a", "b", "c"] * 2


def test_escalation_through_two_levels(journal: Journal, signals: Signals) -> None:
    registry = Registry()
    inner = Supervisor.child_spec(
        "inner", [ChildSpec("w", Worker, args=(journal,))], max_restarts=1, registry=registry
    )
    root = Supervisor.start([inner], max_restarts=1, max_seconds=60, name="root")

    for inner_incarnation in (1, 2):
        crash_current(registry, "w", signals)  # inner restarts w
        crash_current(registry, "w", signals)  # inner gives up
        signals.wait_for(
            "tinkex.supervisor.max_restarts_exceeded", count=inner_incarnation, supervisor="inner"
        )
        if inner_incarnation == 1:
            signals.wait_for("tinkex.supervisor.child_restarted", child_id="inner")

    reason = root.wait(WAIT)

    assert isinstance(reason.error, MaxRestartsExceeded)
    assert reason.error.supervisor == "root"
    exceeded = signals.matching("tinkex.supervisor.max_restarts_exceeded")
    assert [m["supervisor"] for m in exceeded] == ["inner", "inner", "root"]
    assert [m["reason"] for m in signals.matching("tinkex.supervisor.shutdown")] == ["crash"] * 3


def test_a_restart_that_fails_to_start_is_retried_and_counted(
    journal: Journal, signals: Signals
) -> None:
    attempts = itertools.count()
    recovered = threading.Event()

    def fail_second_and_third() -> bool:
        attempt = next(attempts)
        if attempt == 3:
            recovered.set()
        return attempt in (1, 2)

    registry = Registry()
    child = ChildSpec("w", Worker, args=(journal,), kwargs={"fail_init": fail_second_and_third})
    with Supervisor.start([child], max_restarts=3, max_seconds=60, registry=registry) as sup:
        crash_current(registry, "w", signals)

        assert recovered.wait(WAIT)
        assert ping(registry.lookup("w"))[0] == "w"
        assert sup.is_alive()
        assert journal.ids("init") == ["w"] * 4


def test_a_restart_that_keeps_failing_gives_up(journal: Journal, signals: Signals) -> None:
    first = threading.Event()

    def fail_after_first() -> bool:
        if first.is_set():
            return True
        first.set()
        return False

    registry = Registry()
    child = ChildSpec("w", Worker, args=(journal,), kwargs={"fail_init": fail_after_first})
    sup = Supervisor.start([child], max_restarts=3, max_seconds=60, registry=registry)
    crash_current(registry, "w", signals)

    assert isinstance(sup.wait(WAIT).error, MaxRestartsExceeded)
    assert journal.ids("init") == ["w"] * 4  # the first start, then three failed restarts


def test_a_transient_supervisor_that_gave_up_is_restarted(
    journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    inner = Supervisor.child_spec(
        "inner",
        [ChildSpec("w", Worker, args=(journal,))],
        max_restarts=0,
        registry=registry,
        restart=Restart.TRANSIENT,
    )
    with Supervisor.start([inner]):
        crash_current(registry, "w", signals)

        signals.wait_for("tinkex.supervisor.child_restarted", child_id="inner")
        assert ping(registry.lookup("w"))[0] == "w"

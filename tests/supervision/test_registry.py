"""Registry: names that follow restarts."""

from __future__ import annotations

import threading

import pytest

from tinkex.supervision import (
    ChildSpec,
    Crash,
    MaxRestartsExceeded,
    NameNotFoundError,
    NameTakenError,
    Registry,
    Restart,
    Supervisor,
)

from .helpers import WAIT, Journal, Signals, Worker, in_thread, ping


def test_register_whereis_unregister() -> None:
    registry = Registry()
    ref, other = Worker.start(), Worker.start()
    registry.register("w", ref)

    assert registry.whereis("w") is ref
    assert registry.lookup("w") is ref
    assert "w" in registry
    assert len(registry) == 1
    assert registry.unregister("w", other) is False  # it points at another actor
    assert registry.unregister("w") is True
    assert registry.whereis("w") is None
    for actor in (ref, other):
        actor.stop(timeout=WAIT)


def test_a_live_name_cannot_be_taken_but_a_dead_one_can() -> None:
    registry = Registry()
    first, second = Worker.start(), Worker.start()
    registry.register("w", first)

    with pytest.raises(NameTakenError):
        registry.register("w", second)
    first.stop(timeout=WAIT)
    registry.register("w", second)

    assert registry.lookup("w") is second
    second.stop(timeout=WAIT)


def test_lookup_of_an_unknown_name_fails_at_once() -> None:
    with pytest.raises(NameNotFoundError):
        Registry().lookup("nobody", timeout=WAIT)


def test_lookup_of_a_dead_actor_nobody_restarts_times_out() -> None:
    registry = Registry()
    ref = Worker.start()
    registry.register("w", ref)
    ref.stop(timeout=WAIT)

    assert registry.whereis("w") is None
    with pytest.raises(TimeoutError):
        registry.lookup("w", timeout=0.01)


def test_after_a_crash_the_name_leads_to_the_new_incarnation(
    journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    with Supervisor.start([ChildSpec("w", Worker, args=(journal,))], registry=registry):
        old = registry.lookup("w")
        with pytest.raises(Crash):
            old.ask("let-it-crash", timeout=WAIT)

        new = registry.lookup("w", timeout=WAIT)  # waits for the restart if need be

        assert new is not old
        assert ping(new)[0] == "w"


def test_a_lookup_during_a_restart_waits_for_it(journal: Journal, signals: Signals) -> None:
    registry = Registry()
    gate = threading.Event()
    gate.set()  # the first start goes through
    child = ChildSpec("w", Worker, args=(journal,), kwargs={"init_gate": gate})
    with Supervisor.start([child], registry=registry):
        old = registry.lookup("w")
        gate.clear()  # the restart will block in init() until released

        old.tell("crash")
        signals.wait_for("tinkex.supervisor.child_exited", child_id="w")
        found = in_thread(lambda: registry.lookup("w", WAIT))
        gate.set()

        assert found.result(WAIT) is not old
        assert found.result(WAIT) is registry.whereis("w")


def test_a_waiting_lookup_fails_when_the_name_is_given_up(journal: Journal) -> None:
    registry = Registry()
    terminating, gate = threading.Event(), threading.Event()
    child = ChildSpec(
        "w",
        Worker,
        args=(journal,),
        kwargs={"on_terminate": lambda _: terminating.set(), "terminate_gate": gate},
        restart=Restart.TRANSIENT,
    )
    with Supervisor.start([child], registry=registry):
        registry.lookup("w").tell("stop")  # a normal exit: not restarted
        assert terminating.wait(WAIT)  # dead, but its supervisor does not know yet

        found = in_thread(lambda: registry.lookup("w", WAIT))
        gate.set()

        with pytest.raises(NameNotFoundError):
            found.result(WAIT)


def test_names_outlive_a_crashed_supervisor_but_not_a_stopped_one(journal: Journal) -> None:
    registry = Registry()
    crashing = Supervisor.start(
        [ChildSpec("c", Worker, args=(journal,))], max_restarts=0, registry=registry
    )
    registry.lookup("c").tell("crash")
    assert isinstance(crashing.wait(WAIT).error, MaxRestartsExceeded)
    assert registry.names() == ["c"]
    assert registry.whereis("c") is None

    with Supervisor.start([ChildSpec("s", Worker, args=(journal,))], registry=registry):
        assert registry.names() == ["c", "s"]
    assert registry.names() == ["c"]

"""DynamicSupervisor: one_for_one children added at run time."""

from __future__ import annotations

import pytest

from tinkex.supervision import (
    ChildSpec,
    DuplicateChildError,
    DynamicSupervisor,
    MaxChildrenError,
    MaxRestartsExceeded,
    Registry,
    Restart,
    Supervisor,
)

from .helpers import WAIT, Journal, Signals, Worker, ping


def worker(journal: Journal, child_id: str, restart: Restart = Restart.PERMANENT) -> ChildSpec:
    return ChildSpec(child_id, Worker, args=(journal,), restart=restart)


def test_children_come_and_go(journal: Journal) -> None:
    with DynamicSupervisor.start(max_children=2) as sup:
        ref = sup.start_child(worker(journal, "a"))
        sup.start_child(worker(journal, "b"))

        assert ping(ref)[0] == "a"
        with pytest.raises(DuplicateChildError):
            sup.start_child(worker(journal, "a"))
        with pytest.raises(MaxChildrenError):
            sup.start_child(worker(journal, "c"))

        sup.terminate_child("a")
        assert [c.id for c in sup.which_children()] == ["b"]
        assert sup.count_children().active == 1


def test_only_the_crashed_child_restarts(journal: Journal, signals: Signals) -> None:
    registry = Registry()
    with DynamicSupervisor.start(registry=registry) as sup:
        a = sup.start_child(worker(journal, "a"))
        b = sup.start_child(worker(journal, "b"))

        a.tell("crash")
        signals.wait_for("tinkex.supervisor.child_restarted", child_id="a")

        assert registry.lookup("a") is not a
        assert registry.lookup("b") is b


@pytest.mark.parametrize(
    ("restart", "message"),
    [(Restart.TRANSIENT, "stop"), (Restart.TEMPORARY, "crash")],
)
def test_a_child_that_is_not_restarted_is_forgotten(
    restart: Restart, message: str, journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    with DynamicSupervisor.start(registry=registry) as sup:
        sup.start_child(worker(journal, "a", restart)).tell(message)
        signals.wait_for("tinkex.supervisor.child_exited", child_id="a")

        assert sup.which_children() == []
        assert "a" not in registry


def test_the_dynamic_supervisor_gives_up_too(journal: Journal, signals: Signals) -> None:
    sup = DynamicSupervisor.start(max_restarts=0)
    sup.start_child(worker(journal, "a")).tell("crash")

    assert isinstance(sup.wait(WAIT).error, MaxRestartsExceeded)


def test_a_dynamic_supervisor_nests_in_a_static_one(journal: Journal) -> None:
    registry = Registry()
    nested = DynamicSupervisor.child_spec("clients", registry=registry)

    with Supervisor.start([nested], registry=registry):
        clients = DynamicSupervisor(registry.lookup("clients"))
        clients.start_child(worker(journal, "training:1"))

        assert ping(registry.lookup("training:1"))[0] == "training:1"
    assert journal.ids("terminate") == ["training:1"]


def test_max_children_is_validated() -> None:
    with pytest.raises(ValueError, match="max_children"):
        DynamicSupervisor.child_spec("d", max_children=-1)

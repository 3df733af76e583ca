"""Inspecting and changing a live tree."""

from __future__ import annotations

import pykka
import pytest

from tinkex.supervision import (
    ChildCounts,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    ChildStartError,
    ChildType,
    DuplicateChildError,
    Registry,
    Restart,
    Supervisor,
)

from .helpers import WAIT, Journal, Worker, ping


def worker(journal: Journal, child_id: str, **options: object) -> ChildSpec:
    return ChildSpec(child_id, Worker, args=(journal,), **options)  # type: ignore[arg-type]


def test_which_children_and_count_children(journal: Journal) -> None:
    inner = Supervisor.child_spec("inner", [worker(journal, "x")])
    with Supervisor.start([worker(journal, "a", restart=Restart.TRANSIENT), inner]) as sup:
        a, nested = sup.which_children()

        assert (a.id, a.type, a.restart) == ("a", ChildType.WORKER, Restart.TRANSIENT)
        assert (nested.id, nested.type) == ("inner", ChildType.SUPERVISOR)
        assert sup.count_children() == ChildCounts(specs=2, active=2, supervisors=1, workers=1)
        assert nested.ref is not None
        assert [c.id for c in Supervisor(nested.ref).which_children()] == ["x"]


def test_start_child_appends_and_starts(journal: Journal) -> None:
    with Supervisor.start([worker(journal, "a")]) as sup:
        ref = sup.start_child(worker(journal, "b"))

        assert ping(ref)[0] == "b"
        assert [c.id for c in sup.which_children()] == ["a", "b"]
        with pytest.raises(DuplicateChildError):
            sup.start_child(worker(journal, "b"))
    assert journal.ids("terminate")[-2:] == ["b", "a"]


def test_a_child_that_fails_to_start_is_not_added(journal: Journal) -> None:
    with Supervisor.start([]) as sup:
        with pytest.raises(ChildStartError):
            sup.start_child(worker(journal, "bad", kwargs={"fail_init": lambda: True}))

        assert sup.which_children() == []


def test_terminate_restart_and_delete_a_child(journal: Journal) -> None:
    registry = Registry()
    with Supervisor.start([worker(journal, "a"), worker(journal, "b")], registry=registry) as sup:
        sup.terminate_child("a")

        assert [c.ref is None for c in sup.which_children()] == [True, False]
        assert "a" not in registry
        with pytest.raises(ChildRunningError):
            sup.delete_child("b")
        with pytest.raises(ChildRunningError):
            sup.restart_child("b")

        ref = sup.restart_child("a")
        assert registry.lookup("a") is ref

        sup.terminate_child("a")
        sup.delete_child("a")
        assert [c.id for c in sup.which_children()] == ["b"]


def test_terminating_a_temporary_child_forgets_it(journal: Journal) -> None:
    with Supervisor.start([worker(journal, "t", restart=Restart.TEMPORARY)]) as sup:
        sup.terminate_child("t")

        assert sup.which_children() == []


@pytest.mark.parametrize("call", ["terminate_child", "restart_child", "delete_child"])
def test_unknown_children_are_lookup_errors(call: str) -> None:
    with Supervisor.start([]) as sup, pytest.raises(ChildNotFoundError) as caught:
        getattr(sup, call)("ghost")

    assert isinstance(caught.value, LookupError)


def test_only_the_started_root_can_be_waited_for(journal: Journal) -> None:
    with Supervisor.start([worker(journal, "a")]) as sup:
        with pytest.raises(TypeError):
            Supervisor(sup.ref).wait(WAIT)
        assert "alive" in repr(sup)


def test_calls_to_a_stopped_supervisor_fail_fast() -> None:
    sup = Supervisor.start([])
    sup.stop()

    with pytest.raises(pykka.ActorDeadError):
        sup.which_children()

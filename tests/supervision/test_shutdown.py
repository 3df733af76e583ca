"""Shutdown: reverse start order, a bound per child, abandon what will not stop."""

from __future__ import annotations

import threading

import pytest

from tinkex.supervision import ChildSpec, DynamicSupervisor, ExitKind, ExitReason, Supervisor

from .helpers import WAIT, Journal, Signals, Worker


def test_children_stop_in_reverse_start_order(journal: Journal, signals: Signals) -> None:
    children = [ChildSpec(i, Worker, args=(journal,)) for i in ("a", "b", "c")]

    with Supervisor.start(children, name="root"):
        pass

    assert journal.ids("terminate") == ["c", "b", "a"]
    exits = signals.matching("tinkex.supervisor.child_exited")
    assert [(m["child_id"], m["reason"]) for m in exits] == [
        ("c", "shutdown"),
        ("b", "shutdown"),
        ("a", "shutdown"),
    ]
    [shutdown] = signals.matching("tinkex.supervisor.shutdown", supervisor="root")
    assert shutdown["reason"] == "normal"


def test_children_see_the_shutdown_reason(journal: Journal) -> None:
    reasons: list[ExitReason] = []
    child = ChildSpec("a", Worker, args=(journal,), kwargs={"on_terminate": reasons.append})

    with Supervisor.start([child]):
        pass

    assert [reason.kind for reason in reasons] == [ExitKind.SHUTDOWN]


def test_nested_supervisors_stop_depth_first_in_reverse(journal: Journal) -> None:
    inner = Supervisor.child_spec("inner", [ChildSpec(i, Worker, args=(journal,)) for i in "xy"])
    children = [
        ChildSpec("a", Worker, args=(journal,)),
        inner,
        ChildSpec("c", Worker, args=(journal,)),
    ]

    with Supervisor.start(children):
        pass

    assert journal.ids("init") == ["a", "x", "y", "c"]
    assert journal.ids("terminate") == ["c", "y", "x", "a"]


def test_a_child_that_will_not_stop_is_abandoned_and_the_rest_still_stop(
    journal: Journal, signals: Signals
) -> None:
    gate = threading.Event()
    stuck = ChildSpec("b", Worker, args=(journal,), kwargs={"terminate_gate": gate}, shutdown=0.05)
    children = [
        ChildSpec("a", Worker, args=(journal,)),
        stuck,
        ChildSpec("c", Worker, args=(journal,)),
    ]
    sup = Supervisor.start(children)

    sup.stop()

    assert journal.ids("terminate") == ["c", "b", "a"]
    [abandoned] = signals.matching("tinkex.supervisor.child_abandoned")
    assert abandoned["child_id"] == "b"
    exited = [m["child_id"] for m in signals.matching("tinkex.supervisor.child_exited")]
    assert exited == ["c", "a"]
    assert sup.wait(WAIT).kind is ExitKind.NORMAL
    gate.set()  # let the abandoned thread finish, for the leak check


def test_a_dynamic_supervisor_stops_its_children_concurrently(journal: Journal) -> None:
    # Each child's terminate() waits until all three are terminating: only a concurrent
    # shutdown lets them through; a sequential one would abandon them one by one.
    all_terminating = threading.Barrier(3)

    def rendezvous(_reason: ExitReason) -> None:
        all_terminating.wait(WAIT)

    sup = DynamicSupervisor.start()
    for child_id in ("a", "b", "c"):
        sup.start_child(
            ChildSpec(
                child_id,
                Worker,
                args=(journal,),
                kwargs={"on_terminate": rendezvous},
                shutdown=WAIT,
            )
        )

    sup.stop()

    assert sorted(journal.ids("terminate")) == ["a", "b", "c"]
    assert not all_terminating.broken


def test_stop_is_bounded_even_if_the_tree_is_not(journal: Journal) -> None:
    gate = threading.Event()
    stuck = ChildSpec("a", Worker, args=(journal,), kwargs={"terminate_gate": gate})
    sup = Supervisor.start([stuck])

    with pytest.raises(TimeoutError):
        sup.stop(timeout=0.05)
    gate.set()

    assert sup.wait(WAIT).kind is ExitKind.NORMAL

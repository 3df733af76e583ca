"""Exit reports of incarnations that were already replaced or retired are ignored."""

from __future__ import annotations

from tinkex.supervision import ChildSpec, ExitReason, Registry, Strategy, Supervisor
from tinkex.supervision.supervising import ChildExit

from .helpers import Journal, Signals, Worker


def test_two_crashes_under_one_for_all_make_one_restart(journal: Journal, signals: Signals) -> None:
    registry = Registry()
    children = [ChildSpec(i, Worker, args=(journal,)) for i in ("a", "b")]
    with Supervisor.start(
        children, strategy=Strategy.ONE_FOR_ALL, max_restarts=5, registry=registry
    ) as sup:
        a, b = registry.lookup("a"), registry.lookup("b")

        a.tell("crash")
        b.tell("crash")  # its report is stale whether it comes before or after a's restart
        signals.wait_for("tinkex.supervisor.child_restarted", child_id="b")
        # b reported its exit before it answered the supervisor's shutdown request (or died
        # unasked), so that report is in the supervisor's inbox ahead of this call:
        children_after = sup.which_children()

        assert journal.ids("init") == ["a", "b", "a", "b"]
        assert all(child.ref is not None for child in children_after)
        assert len(signals.matching("tinkex.supervisor.child_restarted")) == 2


def test_the_report_of_a_terminated_child_is_stale(journal: Journal, signals: Signals) -> None:
    with Supervisor.start([ChildSpec("a", Worker, args=(journal,))]) as sup:
        sup.terminate_child("a")  # its report is queued before this returns
        ref = sup.restart_child("a")

        assert sup.which_children()[0].ref is ref
        assert journal.ids("init") == ["a", "a"]
        assert signals.matching("tinkex.supervisor.child_restarted") == []


def test_a_report_from_an_older_generation_is_ignored(journal: Journal, signals: Signals) -> None:
    with Supervisor.start([ChildSpec("a", Worker, args=(journal,))]) as sup:
        [current] = sup.which_children()

        sup.ref.tell(ChildExit("a", current.generation - 1, ExitReason.crashed(RuntimeError())))
        sup.ref.tell(ChildExit("nobody", current.generation, ExitReason.normal()))

        assert sup.which_children() == [current]
        assert signals.matching("tinkex.supervisor.child_exited") == []

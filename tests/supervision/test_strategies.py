"""Each strategy x restart type x exit kind, against OTP's rules written out by hand."""

from __future__ import annotations

import pytest

from tinkex.supervision import ChildSpec, Registry, Restart, Strategy, Supervisor

from .helpers import Journal, Signals, Worker, ping

SCOPE = {
    Strategy.ONE_FOR_ONE: ["b"],
    Strategy.ONE_FOR_ALL: ["a", "b", "c"],
    Strategy.REST_FOR_ONE: ["b", "c"],
}
"""Children restarted when ``b`` (of ``a, b, c``) is to be restarted."""

SIBLINGS_STOPPED = {
    Strategy.ONE_FOR_ONE: [],
    Strategy.ONE_FOR_ALL: ["c", "a"],
    Strategy.REST_FOR_ONE: ["c"],
}
"""Siblings the supervisor stops before restarting, in the order it stops them."""


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("restart", list(Restart))
@pytest.mark.parametrize("crash", [True, False], ids=["crash", "normal-exit"])
def test_which_children_restart(
    strategy: Strategy, restart: Restart, crash: bool, journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    children = [
        ChildSpec("a", Worker, args=(journal,)),
        ChildSpec("b", Worker, args=(journal,), restart=restart),
        ChildSpec("c", Worker, args=(journal,)),
    ]
    with Supervisor.start(children, strategy=strategy, registry=registry) as sup:
        before = {child.id: child.generation for child in sup.which_children()}

        registry.lookup("b").tell("crash" if crash else "stop")
        signals.wait_for("tinkex.supervisor.child_exited", child_id="b", generation=before["b"])
        after = sup.which_children()

    restarted_by_otp = restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and crash)
    expected = SCOPE[strategy] if restarted_by_otp else []
    assert [c.id for c in after if c.generation != before[c.id]] == expected
    assert journal.ids("init") == ["a", "b", "c", *expected]
    terminated_before_stop = journal.ids("terminate")[: 1 + len(SIBLINGS_STOPPED[strategy])]
    if restarted_by_otp:
        assert terminated_before_stop == ["b", *SIBLINGS_STOPPED[strategy]]
    if restart is Restart.TEMPORARY:
        assert "b" not in [c.id for c in after]
        assert "b" not in registry
    elif not restarted_by_otp:
        assert [(c.id, c.ref is None) for c in after if c.id == "b"] == [("b", True)]
    assert all(c.ref is not None for c in after if c.id != "b")
    assert len(signals.matching("tinkex.supervisor.child_restarted", restart_of="b")) == len(
        expected
    )


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
def test_a_temporary_sibling_is_stopped_and_dropped_not_restarted(
    strategy: Strategy, journal: Journal, signals: Signals
) -> None:
    children = [
        ChildSpec("a", Worker, args=(journal,)),
        ChildSpec("t", Worker, args=(journal,), restart=Restart.TEMPORARY),
        ChildSpec("c", Worker, args=(journal,)),
    ]
    with Supervisor.start(children, strategy=strategy) as sup:
        first = sup.which_children()[0].ref
        assert first is not None

        first.tell("crash")
        signals.wait_for("tinkex.supervisor.child_restarted", child_id="c")

        assert [c.id for c in sup.which_children()] == ["a", "c"]
        assert journal.ids("terminate") == ["a", "c", "t"]


def test_one_for_all_also_starts_a_sibling_that_had_stopped(
    journal: Journal, signals: Signals
) -> None:
    children = [
        ChildSpec("a", Worker, args=(journal,), restart=Restart.TRANSIENT),
        ChildSpec("b", Worker, args=(journal,)),
    ]
    with Supervisor.start(children, strategy=Strategy.ONE_FOR_ALL) as sup:
        a, b = (child.ref for child in sup.which_children())
        assert a is not None and b is not None
        a.tell("stop")
        signals.wait_for("tinkex.supervisor.child_exited", child_id="a")
        assert sup.which_children()[0].ref is None

        b.tell("crash")
        signals.wait_for("tinkex.supervisor.child_restarted", child_id="b")

        assert all(child.ref is not None for child in sup.which_children())
        assert journal.ids("init") == ["a", "b", "a", "b"]


def test_system_exit_in_a_child_is_a_crash_of_that_child_only(
    journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    children = [ChildSpec(i, Worker, args=(journal,)) for i in ("a", "b")]
    with Supervisor.start(children, registry=registry) as sup:
        a = registry.lookup("a")

        registry.lookup("b").tell("exit")
        [exited] = signals.wait_for("tinkex.supervisor.child_exited", child_id="b")
        signals.wait_for("tinkex.supervisor.child_restarted", child_id="b")

        assert exited["reason"] == "crash"
        assert isinstance(exited["error"], SystemExit)
        assert registry.lookup("a") is a
        assert ping(registry.lookup("b")) == (
            "b",
            sup.which_children()[1].generation,
        )

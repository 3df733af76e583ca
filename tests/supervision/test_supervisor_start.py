"""Starting a tree: in order, one handshake per child, rollback in reverse on failure."""

from __future__ import annotations

import threading
from functools import partial

import pykka
import pytest

from tinkex.supervision import ChildSpec, ChildStartError, Registry, Supervisor

from .helpers import WAIT, Journal, Signals, Worker


def specs(journal: Journal, *ids: str) -> list[ChildSpec]:
    return [ChildSpec(child_id, Worker, args=(journal,)) for child_id in ids]


def test_children_start_in_order_each_after_the_previous_init(journal: Journal) -> None:
    with Supervisor.start(specs(journal, "a", "b", "c")) as sup:
        children = sup.which_children()

    assert journal.ids("init") == ["a", "b", "c"]
    assert [child.id for child in children] == ["a", "b", "c"]
    generations = [child.generation for child in children]
    assert generations == sorted(set(generations))
    assert all(child.ref is not None for child in children)


def test_a_failing_child_stops_the_started_ones_in_reverse_and_fails_the_start(
    journal: Journal, signals: Signals
) -> None:
    registry = Registry()
    children = [
        *specs(journal, "a", "b"),
        ChildSpec("c", Worker, args=(journal,), kwargs={"fail_init": lambda: True}),
        *specs(journal, "d"),
    ]

    with pytest.raises(ChildStartError) as caught:
        Supervisor.start(children, registry=registry)

    assert caught.value.child_id == "c"
    assert isinstance(caught.value.__cause__, ValueError)
    assert "'c' failed to start" in str(caught.value)
    assert journal.ids("init") == ["a", "b", "c"]
    assert journal.ids("terminate") == ["b", "a"]
    assert registry.names() == []
    assert [m["child_id"] for m in signals.matching("tinkex.supervisor.child_exited")] == [
        "b",
        "a",
    ]


def test_an_init_that_overruns_start_timeout_fails_the_start(journal: Journal) -> None:
    gate = threading.Event()
    slow = ChildSpec(
        "slow", Worker, args=(journal,), kwargs={"init_gate": gate}, start_timeout=0.05
    )

    with pytest.raises(ChildStartError) as caught:
        Supervisor.start([*specs(journal, "a"), slow])

    assert isinstance(caught.value.__cause__, TimeoutError)
    assert journal.ids("terminate") == ["a"]
    gate.set()  # the abandoned child finishes init, then handles the stop it was sent


def test_a_nested_start_failure_names_the_whole_path(journal: Journal) -> None:
    failing = ChildSpec("w", Worker, args=(journal,), kwargs={"fail_init": lambda: True})
    inner = Supervisor.child_spec("inner", [*specs(journal, "x"), failing])

    with pytest.raises(ChildStartError) as caught:
        Supervisor.start([*specs(journal, "a"), inner])

    assert caught.value.child_id == "inner"
    assert isinstance(caught.value.__cause__, ChildStartError)
    assert caught.value.__cause__.child_id == "w"
    assert journal.ids("terminate") == ["x", "a"]


def test_start_must_start_a_supervised_actor() -> None:
    class Plain(pykka.ThreadingActor):
        pass

    with pytest.raises(ChildStartError) as caught:
        Supervisor.start([ChildSpec("plain", Plain.start)])

    assert isinstance(caught.value.__cause__, TypeError)


def test_a_class_or_a_start_callable_both_work(journal: Journal) -> None:
    children = [
        ChildSpec("by-class", Worker, args=(journal,)),
        ChildSpec("by-callable", partial(Worker.start, journal)),
    ]
    with Supervisor.start(children):
        assert journal.ids("init") == ["by-class", "by-callable"]


def test_child_ids_must_be_unique(journal: Journal) -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor.start(specs(journal, "a", "a"))


@pytest.mark.parametrize("field", ["shutdown", "start_timeout"])
@pytest.mark.parametrize("value", [0, -1.0, float("inf")])
def test_every_wait_on_a_child_is_bounded(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ChildSpec("a", Worker, **{field: value})  # type: ignore[arg-type]


def test_a_nested_supervisor_waits_as_long_as_its_children_may_need() -> None:
    children = [ChildSpec("a", Worker, shutdown=2.0), ChildSpec("b", Worker, shutdown=3.0)]

    spec = Supervisor.child_spec("inner", children)

    assert spec.shutdown > 5.0
    assert spec.start_timeout > 10.0


def test_a_stopped_root_reports_a_normal_exit(journal: Journal) -> None:
    sup = Supervisor.start(specs(journal, "a"))

    sup.stop()

    assert sup.wait(WAIT).kind == "normal"
    assert not sup.is_alive()
    sup.stop()  # stopping again does nothing

"""State that must outlive a crash lives in the supervisor-owned store."""

from __future__ import annotations

from typing import Any

import pytest

from tinkex.supervision import ChildSpec, Registry, Restart, Store, SupervisedActor, Supervisor

from .helpers import WAIT, Signals


class Counter(SupervisedActor):
    """Keeps ``count`` in the store and ``scratch`` in an attribute."""

    def init(self) -> None:
        self.store.setdefault("count", 0)
        self.scratch = 0

    def increment(self) -> tuple[int, int]:
        self.store["count"] += 1
        self.scratch += 1
        return self.store["count"], self.scratch

    def on_receive(self, message: object) -> object:
        if message == "crash":
            raise RuntimeError("told to crash")
        return super().on_receive(message)


def crash_and_lookup(registry: Registry, name: str, signals: Signals) -> Any:
    old = registry.lookup(name)
    old.tell("crash")
    signals.wait_for("tinkex.supervisor.child_exited", child_id=name)
    new = registry.lookup(name, WAIT)
    assert new is not old
    return new.proxy()


def test_the_store_survives_a_restart_and_attributes_do_not(signals: Signals) -> None:
    registry = Registry()
    with Supervisor.start([ChildSpec("counter", Counter)], registry=registry):
        counter = registry.lookup("counter").proxy()
        counter.increment().get(timeout=WAIT)
        counter.increment().get(timeout=WAIT)

        restarted = crash_and_lookup(registry, "counter", signals)

        assert restarted.increment().get(timeout=WAIT) == (3, 1)


def test_the_store_survives_the_restart_of_the_supervisor_too(signals: Signals) -> None:
    registry = Registry()
    inner = Supervisor.child_spec(
        "inner", [ChildSpec("counter", Counter)], max_restarts=0, registry=registry
    )
    store = Store()
    with Supervisor.start([inner], store=store):
        registry.lookup("counter").proxy().increment().get(timeout=WAIT)

        restarted = crash_and_lookup(registry, "counter", signals)  # inner gives up, restarts
        signals.wait_for("tinkex.supervisor.child_restarted", child_id="inner")

        assert restarted.increment().get(timeout=WAIT) == (2, 1)
        assert store.substore("inner").substore("counter")["count"] == 2


def test_the_store_goes_when_the_child_goes(signals: Signals) -> None:
    store = Store()
    children = [ChildSpec("kept", Counter), ChildSpec("temp", Counter, restart=Restart.TEMPORARY)]
    with Supervisor.start(children, store=store) as sup:
        assert sorted(store) == ["kept", "temp"]

        sup.terminate_child("temp")
        sup.terminate_child("kept")
        assert list(store) == ["kept"]

        sup.delete_child("kept")
        assert list(store) == []


def test_store_is_a_mapping_with_atomic_setdefault_and_substores() -> None:
    store = Store({"a": 1})

    assert store.setdefault("a", 2) == 1
    assert store.substore("child") is store.substore("child")
    with pytest.raises(TypeError):
        store.substore("a")
    for key in store:  # iterating a snapshot: changing the store meanwhile is fine
        del store[key]
    assert len(store) == 0
    assert repr(store) == "Store({})"

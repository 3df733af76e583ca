"""Watching the runtime's supervisors from a test: restarts, give-ups and abandoned children
as they are signalled, and crashing an actor until its supervisor gives up."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tinkex import telemetry
from tinkex.actors.runtime import Runtime

WAIT = 60.0
"""Bound on every wait for something that must happen (never reached when it works)."""

SIGNALS = (
    telemetry.SUPERVISOR_CHILD_RESTARTED,
    telemetry.SUPERVISOR_MAX_RESTARTS_EXCEEDED,
    telemetry.SUPERVISOR_CHILD_ABANDONED,
)


class Supervisors:
    """Records ``tinkex.supervisor.*`` signals as ``(kind, supervisor, child_id)``; lets a
    test wait for them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        with self._changed:
            kind = event.rpartition(".")[2]
            self.seen.append((kind, str(metadata.get("supervisor")), str(metadata["child_id"])))
            self._changed.notify_all()

    def count(self, kind: str, child_id: str, supervisor: str | None = None) -> int:
        with self._changed:
            return sum(
                1
                for seen_kind, seen_supervisor, seen_child in self.seen
                if (seen_kind, seen_child) == (kind, child_id)
                and supervisor in (None, seen_supervisor)
            )

    def wait(self, kind: str, child_id: str, count: int = 1) -> None:
        self.wait_until(lambda: self.count(kind, child_id) >= count, f"{kind} of {child_id}")

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(done, WAIT), f"no {what}: {self.seen}"

    def crash_until_given_up(self, name: str, supervisor: str) -> None:
        """Crash actor ``name`` (our actors crash on a message they do not understand) until
        ``supervisor`` exceeds its restart intensity and gives up; return once the runtime
        has restarted that supervisor, empty."""
        registry = Runtime.get().registry
        for crashes in range(1, 50):
            registry.lookup(name, timeout=WAIT).tell("a message no actor understands")
            self.wait_until(
                lambda: (
                    self.count("child_restarted", name) >= crashes  # noqa: B023
                    or self.count("max_restarts_exceeded", name) > 0
                ),
                f"restart {crashes} of {name}",
            )
            if self.count("max_restarts_exceeded", name):
                break
        self.wait_until(
            lambda: self.count("child_restarted", supervisor, supervisor="tinkex") > 0,
            f"restart of the {supervisor} supervisor",
        )


@contextmanager
def watching(handler_id: str) -> Iterator[Supervisors]:
    """A :class:`Supervisors` attached under ``handler_id`` for the ``with`` block."""
    watcher = Supervisors()
    telemetry.attach_many(handler_id, SIGNALS, watcher)
    try:
        yield watcher
    finally:
        telemetry.detach(handler_id)

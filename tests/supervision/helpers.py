"""Test actors and synchronisation helpers: tests wait on these, never on the clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pykka

from tinkex import telemetry
from tinkex.supervision import Crash, ExitReason, SupervisedActor

WAIT = 5.0
"""Upper bound on any wait in these tests; reaching it means the test failed."""

SUPERVISOR_EVENTS = (
    telemetry.SUPERVISOR_CHILD_STARTED,
    telemetry.SUPERVISOR_CHILD_EXITED,
    telemetry.SUPERVISOR_CHILD_RESTARTED,
    telemetry.SUPERVISOR_CHILD_ABANDONED,
    telemetry.SUPERVISOR_MAX_RESTARTS_EXCEEDED,
    telemetry.SUPERVISOR_SHUTDOWN,
    telemetry.SUPERVISOR_TASK_FAILED,
)


@dataclass
class Signals:
    """Collects supervisor signals and lets a test wait for one."""

    events: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        with self._changed:
            self.events.append((event, measurements, metadata))
            self._changed.notify_all()

    def matching(self, event: str, **metadata: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [
                meta
                for name, _, meta in self.events
                if name == event and all(meta.get(k) == v for k, v in metadata.items())
            ]

    def wait_for(self, event: str, count: int = 1, **metadata: Any) -> list[dict[str, Any]]:
        """Wait until ``count`` events named ``event`` with this metadata were emitted."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while len(found := self.matching(event, **metadata)) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {count}x {event} {metadata} in {self.events}"
                self._changed.wait(remaining)
            return found


@dataclass
class Journal:
    """What the test actors did, in order, across threads."""

    entries: list[tuple[str, str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, actor: SupervisedActor) -> None:
        with self._lock:
            self.entries.append((what, actor.child_id, actor.generation))

    def ids(self, what: str) -> list[str]:
        with self._lock:
            return [child_id for kind, child_id, _ in self.entries if kind == what]


class Worker(SupervisedActor):
    """A test worker driven by messages.

    "ping" -> (child_id, generation); "stop" stops it normally; "crash" and "fail" raise
    RuntimeError and ValueError (a crash when told, returned to the caller when asked);
    "let-it-crash" raises Crash; "exit" raises SystemExit.
    """

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        fail_init: Callable[[], bool] = lambda: False,
        init_gate: threading.Event | None = None,
        terminate_gate: threading.Event | None = None,
        on_terminate: Callable[[ExitReason], None] | None = None,
    ) -> None:
        super().__init__()
        self.journal = journal or Journal()
        self.fail_init = fail_init
        self.init_gate = init_gate
        self.terminate_gate = terminate_gate
        self.on_terminate = on_terminate

    def init(self) -> None:
        self.journal.add("init", self)
        if self.init_gate is not None:
            assert self.init_gate.wait(WAIT)
        if self.fail_init():
            raise ValueError(f"init of {self.child_id} failed")

    def terminate(self, reason: ExitReason) -> None:
        self.journal.add("terminate", self)
        if self.on_terminate is not None:
            self.on_terminate(reason)
        if self.terminate_gate is not None:
            assert self.terminate_gate.wait(WAIT)

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return (self.child_id, self.generation)
        if message == "stop":
            return self.stop()
        if message == "exit":
            raise SystemExit(3)
        if message == "fail":
            raise ValueError("bad request")
        if message == "crash":
            raise RuntimeError("told to crash")
        if message == "let-it-crash":
            raise Crash("asked to crash")
        return super().on_receive(message)


def ping(ref: pykka.ActorRef[Any]) -> tuple[str, int]:
    """Ask a :class:`Worker` who it is: ``(child_id, generation)``."""
    reply: tuple[str, int] = ref.ask("ping", block=True, timeout=WAIT)
    return reply


def in_thread(fn: Callable[[], Any]) -> Future[Any]:
    """Run ``fn`` in a new thread; its outcome lands in the returned future."""
    outcome: Future[Any] = Future()

    def run() -> None:
        try:
            outcome.set_result(fn())
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=run).start()
    return outcome


def join_new_threads(before: Iterable[threading.Thread]) -> list[str]:
    """Join every thread started since ``before`` (bounded); the names of those still alive."""
    known = set(before)
    deadline = time.monotonic() + WAIT
    for thread in threading.enumerate():
        if thread not in known and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t not in known and t.is_alive()]


@dataclass(frozen=True)
class Baseline:
    """What was running before a test: only what the test adds counts as a leak."""

    threads: frozenset[threading.Thread]
    actors: frozenset[pykka.ActorRef[Any]]
    handlers: frozenset[str]

    @classmethod
    def now(cls) -> Baseline:
        return cls(
            frozenset(threading.enumerate()),
            frozenset(pykka.ActorRegistry.get_all()),
            frozenset(info.id for info in telemetry.list_handlers()),
        )


def assert_no_leaks(baseline: Baseline) -> None:
    leaked_threads = join_new_threads(baseline.threads)
    leaked_actors = [ref for ref in pykka.ActorRegistry.get_all() if ref not in baseline.actors]
    for ref in leaked_actors:
        ref.stop(block=False)
    leaked_handlers = [
        info.id for info in telemetry.list_handlers() if info.id not in baseline.handlers
    ]
    assert not leaked_actors, f"actors left running: {leaked_actors}"
    assert not leaked_threads, f"threads left running: {leaked_threads}"
    assert not leaked_handlers, f"telemetry handlers left attached: {leaked_handlers}"

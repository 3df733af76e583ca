"""SupervisedActor: a pykka actor that reports its exit exactly once, whatever the cause.

pykka's failure rules do not give a supervisor what it needs (see ``docs/supervision.md``):

* an exception in ``on_start`` stops the actor without calling ``on_failure`` or ``on_stop``;
* an exception in a ``tell`` stops it and calls ``on_failure`` but not ``on_stop``;
* an exception in an ``ask`` is returned to the caller and the actor keeps running;
* any other :class:`BaseException` (``SystemExit``...) stops the actor through its *normal*
  stop path, leaves the ``ask`` caller waiting forever and then stops every actor in the
  process (``ActorRegistry.stop_all()``).

So this class takes over pykka's hooks and the message loop, and gives its subclasses two
hooks of their own, named after OTP's callbacks::

    class Counter(SupervisedActor):
        def init(self) -> None:                 # in the actor thread, before any message
            self.count = self.store.get("count", 0)

        def increment(self) -> int:
            self.count += 1
            self.store["count"] = self.count     # survives a crash and restart
            return self.count

        def terminate(self, reason: ExitReason) -> None:
            ...                                  # in the actor thread, on every exit

The rules, for every exit of an actor whose ``init()`` ran:

* ``terminate(reason)`` runs once, in the actor's thread, then the exit is reported once to
  the supervisor with this incarnation's generation;
* a crash is an exception escaping ``init()``, a ``tell``, ``terminate()``, or an ``ask``
  handler that raises :class:`Crash` or a non-:class:`Exception` ``BaseException``; any other
  exception in an ``ask`` goes back to the caller and the actor keeps running (pykka's rule);
* a ``BaseException`` is a crash of this actor only, and an ``ask`` caller gets a ``Crash``
  instead of hanging;
* the report is sent before the actor answers anyone again (a waiting ``stop()``, a queued
  ``ask``), so whoever sees the actor dead knows its supervisor has been told.

This relies on two private methods of ``pykka.ThreadingActor`` 4.x (``_actor_loop_running``
and ``_stop``), checked against pykka 4.5; the tests fail loudly if a release changes them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

import pykka

from tinkex.supervision.errors import Crash, as_exception
from tinkex.supervision.exits import ExitReason
from tinkex.supervision.store import Store

if TYPE_CHECKING:
    from pykka._envelope import Envelope

__all__ = ["Incarnation", "Shutdown", "SupervisedActor", "launching", "next_generation"]

logger = logging.getLogger("tinkex.supervision")


_generations = itertools.count(1)


def next_generation() -> int:
    """A new generation: unique in the process and increasing, like a pid never reused.

    Telemetry and exit reports name an incarnation by ``(child_id, generation)``; unique
    numbers keep that unambiguous even across restarts of the supervisor itself.
    """
    return next(_generations)


@dataclass(eq=False)
class Incarnation:
    """One start of a child: who it is to its supervisor and how it reports back.

    The supervisor creates it and publishes it with :data:`launching` while the child's
    constructor runs (constructors run in the caller's thread), so subclasses of
    :class:`SupervisedActor` need no extra constructor arguments.
    """

    child_id: str
    generation: int
    """From :func:`next_generation`."""
    store: Store
    on_exit: Callable[[ExitReason], None]
    """Called once, in the actor's thread, after ``terminate()``; must not raise."""
    started: Future[None] = field(default_factory=Future)
    """Resolved when ``init()`` returns (or raises): the start handshake."""
    urn: str | None = None
    """The URN of the actor that claimed this incarnation (the first one constructed)."""


launching: ContextVar[Incarnation | None] = ContextVar("tinkex_supervision_launching", default=None)
"""The incarnation a supervisor is starting in this thread right now, if any."""


@dataclass(frozen=True)
class Shutdown:
    """The message a supervisor sends to stop a child with reason ``shutdown``."""


def _unsupervised(child_id: str) -> Incarnation:
    return Incarnation(child_id, next_generation(), Store(), on_exit=lambda _reason: None)


class SupervisedActor(pykka.ThreadingActor):
    """Base class for actors that run under a supervisor (and for the supervisors).

    Override :meth:`init` and :meth:`terminate` instead of pykka's ``on_start``, ``on_stop``
    and ``on_failure``, which this class owns. Keep ``__init__`` cheap and free of side
    effects: it runs in the supervisor's thread. The class also works unsupervised
    (``Counter.start()``): its exit is then reported to nobody and its store is its own.

    Attributes ``child_id``, ``generation`` and ``store`` describe this incarnation.
    """

    def __init__(self) -> None:
        super().__init__()
        incarnation = launching.get()
        if incarnation is None or incarnation.urn is not None:
            incarnation = _unsupervised(type(self).__name__)
        incarnation.urn = self.actor_urn
        self._incarnation = incarnation
        self._shutdown_requested = False
        self._initialized = False

    @property
    def child_id(self) -> str:
        """The id of this child in its supervisor (the class name when unsupervised)."""
        return self._incarnation.child_id

    @property
    def generation(self) -> int:
        """Identifies this incarnation: unique in the process, increasing with every start."""
        return self._incarnation.generation

    @property
    def store(self) -> Store:
        """State that survives a crash: the same object for every incarnation of the child."""
        return self._incarnation.store

    def init(self) -> None:
        """Set up the actor; runs in its thread before any message is handled.

        The supervisor waits for it (the spec's ``start_timeout``), so keep it short and never
        call into the supervisor from here. Raising makes the start fail.
        """

    def terminate(self, reason: ExitReason) -> None:
        """Clean up; runs in the actor's thread on every exit after a successful ``init()``.

        Runs before the supervisor learns of the exit, and within the spec's ``shutdown``
        timeout when the supervisor is stopping the actor. Raising turns a normal exit into a
        crash.
        """

    @final
    def on_start(self) -> None:
        try:
            self.init()
        except BaseException as exc:
            self._incarnation.started.set_exception(as_exception(exc, self))
            self._die(exc, "failed in init()")
        else:
            self._initialized = True
            self._incarnation.started.set_result(None)

    @final
    def on_stop(self) -> None:
        self._finish(ExitReason.shutdown() if self._shutdown_requested else ExitReason.normal())

    def _actor_loop_running(self) -> None:
        # pykka's loop, except that every failure goes through _handle_error (module docs).
        while not self.actor_stopped.is_set():
            envelope = self.actor_inbox.get()
            try:
                response = self._dispatch(envelope.message)
            except BaseException as exc:
                self._handle_error(envelope, exc)
            else:
                if envelope.reply_to is not None:
                    envelope.reply_to.set(response)

    def _dispatch(self, message: Any) -> Any:
        if isinstance(message, Shutdown):
            self._shutdown_requested = True
            return self._stop()
        return self._handle_receive(message)

    def _handle_error(self, envelope: Envelope[Any], exc: BaseException) -> None:
        caller = envelope.reply_to
        if caller is not None and isinstance(exc, Exception) and not isinstance(exc, Crash):
            logger.info("%s returned an exception to its caller", self, exc_info=exc)
            caller.set_exception((type(exc), exc, exc.__traceback__))
            return
        self._die(exc, "crashed")
        if caller is not None:
            error = as_exception(exc, self)
            caller.set_exception((type(error), error, error.__traceback__))

    def _die(self, exc: BaseException, what: str) -> None:
        logger.error("%s %s", self, what, exc_info=exc)
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        self._finish(ExitReason.crashed(exc))

    def _finish(self, reason: ExitReason) -> None:
        if self._initialized:
            try:
                self.terminate(reason)
            except BaseException as exc:
                logger.error("%s failed in terminate()", self, exc_info=exc)
                if not reason.abnormal:
                    reason = ExitReason.crashed(exc)
        self._incarnation.on_exit(reason)

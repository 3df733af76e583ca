"""The process-wide supervision tree of the client, started on first use.

```
Application (one_for_one, 3 restarts in 5 s)
├── io_loop          IOLoop: the asyncio loop thread and connection pools
├── rate_limiter     RateLimiter: per-tenant 429 windows
├── tokenizer_cache  TokenizerCache: loaded tokenizers, each loaded once
├── session_manager  SessionManager: sessions, heartbeats, finish
├── telemetry        DynamicSupervisor: one reporter actor per session (transient)
└── clients          DynamicSupervisor: one TrainingActor per model, one SamplingActor
                     per sampling client (transient)
```

The reporters have a supervisor of their own so that the clients supervisor giving up on a
crashing training actor (what recovery's "actor lost" reacts to) does not end telemetry.

Clients find actors by name through the :class:`~tinkex.supervision.Registry` on every
use, never through a cached reference, so a restarted actor is picked up transparently.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

import pykka

from tinkex.futures import APIFuture
from tinkex.futures.queue_state import install_default_logger
from tinkex.reporting.reporter import SUPERVISOR as TELEMETRY
from tinkex.supervision import (
    ChildSpec,
    DynamicSupervisor,
    Registry,
    Restart,
    Strategy,
    Supervisor,
)

from .io_loop import IOLoop, LoopHandle, LoopStoppedError
from .rate_limiter import RateLimiter, RateWindows
from .session_manager import SessionManager
from .tokenizer_cache import TokenizerCache

log = logging.getLogger("tinkex.runtime")

T = TypeVar("T")

LOOKUP_TIMEOUT = 30.0
"""How long a lookup waits for an actor that is restarting."""
CALL_TIMEOUT = 180.0
"""Bound on a call into an actor. Most only enqueue work; the longest, opening a session,
waits for the network with its own, shorter bound (two minutes)."""
CALL_ATTEMPTS = 3
MAX_CACHED_PROXIES = 1024
CLIENTS = "clients"
"""The dynamic supervisor of the training and sampling actors."""


def at_exit(shutdown: Callable[[], None]) -> None:
    """Run ``shutdown`` when the interpreter exits.

    The actors' threads are not daemon threads, and Python joins those *before* it runs
    ``atexit`` callbacks, so an ``atexit`` shutdown would never come: the process would hang
    at exit. ``threading``'s own exit hook (what ``concurrent.futures`` uses) runs first.
    """
    register = getattr(threading, "_register_atexit", atexit.register)
    with contextlib.suppress(RuntimeError):  # the interpreter is already shutting down
        register(shutdown)


class Runtime:
    """The supervision tree and the registry that names its actors."""

    _instance: Runtime | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        install_default_logger()  # paused queues are logged for every client of the process
        self.registry = Registry()
        self._loop_handle: LoopHandle | None = None
        self._windows: RateWindows | None = None
        self._proxies: dict[str, Any] = {}
        self._proxies_lock = threading.Lock()
        self._tree = Supervisor.start(
            [
                ChildSpec("io_loop", IOLoop),
                ChildSpec("rate_limiter", RateLimiter),
                ChildSpec("tokenizer_cache", TokenizerCache),
                ChildSpec("session_manager", SessionManager, kwargs={"runtime": self}),
                DynamicSupervisor.child_spec(TELEMETRY, registry=self.registry),
                DynamicSupervisor.child_spec(CLIENTS, registry=self.registry),
            ],
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=3,
            max_seconds=5.0,
            registry=self.registry,
            name="tinkex",
        )

    @classmethod
    def get(cls) -> Runtime:
        """The process's runtime, started on first use."""
        with cls._instance_lock:
            if cls._instance is None or not cls._instance._tree.is_alive():
                cls._instance = cls()
                at_exit(cls._instance.shutdown)
            return cls._instance

    def shutdown(self) -> None:
        """Stop every actor (children in reverse start order); unfinished work fails."""
        if self._tree.is_alive():
            self._tree.stop()
        with Runtime._instance_lock:
            if Runtime._instance is self:
                Runtime._instance = None

    # lookups ----------------------------------------------------------------------------

    def ref(self, name: str) -> pykka.ActorRef[Any]:
        return self.registry.lookup(name, timeout=LOOKUP_TIMEOUT)

    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the current incarnation of actor ``name`` and wait.

        A call that reached an incarnation which then died unprocessed is sent again to
        the next one (it never ran, so nothing happens twice).
        """
        for attempt in range(CALL_ATTEMPTS):
            try:
                proxy = self._proxy(self.ref(name))
                return getattr(proxy, method)(*args, **kwargs).get(timeout=CALL_TIMEOUT)
            except pykka.ActorDeadError:
                if attempt == CALL_ATTEMPTS - 1:
                    raise
            except pykka.Timeout:
                raise TimeoutError(
                    f"the {name} actor did not answer {method} within {CALL_TIMEOUT:.0f} s"
                ) from None
        raise AssertionError("unreachable")

    def _proxy(self, ref: pykka.ActorRef[Any]) -> Any:
        """A proxy of ``ref``, built once per incarnation (building one introspects the actor)."""
        with self._proxies_lock:
            proxy = self._proxies.get(ref.actor_urn)
            if proxy is None:
                if len(self._proxies) > MAX_CACHED_PROXIES:
                    self._proxies.clear()  # dead incarnations' proxies; cheap to rebuild
                proxy = self._proxies[ref.actor_urn] = ref.proxy()
            return proxy

    def loop(self) -> LoopHandle:
        """The running I/O loop's handle (cached until that loop stops)."""
        handle = self._loop_handle
        if handle is not None and handle.alive:
            return handle
        for _ in range(CALL_ATTEMPTS):
            handle = cast(LoopHandle, self.call("io_loop", "handle"))
            if handle.alive:
                self._loop_handle = handle
                return handle
            self.registry.lookup("io_loop", timeout=LOOKUP_TIMEOUT)
        raise LoopStoppedError("the I/O loop keeps stopping; see the log for its crashes")

    def future(self, future: Future[T]) -> APIFuture[T]:
        """Wrap a future completed on the I/O loop, guarding that loop against blocking on it."""
        return APIFuture(future, io_loop=self.loop().loop)

    def windows(self) -> RateWindows:
        """The tenants' 429 windows: one object for the runtime's life (it lives in the
        rate limiter's store, so a restarted rate limiter hands out the same one)."""
        if self._windows is None:
            self._windows = cast(RateWindows, self.call("rate_limiter", "windows"))
        return self._windows

    def ensure_client_actor(
        self, name: str, actor_class: type[Any], *, under: str = CLIENTS, **kwargs: Any
    ) -> None:
        """Start ``name`` under the dynamic supervisor ``under`` unless it is running."""
        if self.registry.whereis(name) is not None:
            return
        spec = ChildSpec(name, actor_class, kwargs=kwargs, restart=Restart.TRANSIENT)
        supervisor = DynamicSupervisor(self.ref(under))
        try:
            supervisor.start_child(spec)
        except Exception:
            if self.registry.whereis(name) is None:
                raise  # not a lost race with another thread starting the same actor

    def stop_client_actor(self, name: str, *, under: str = CLIENTS) -> None:
        if self.registry.whereis(name) is None:
            return
        DynamicSupervisor(self.ref(under)).terminate_child(name)

"""What ends a process, reported by every open telemetry reporter.

A script that never closes its ``ServiceClient`` (no ``with`` block, an exception on the way
out) would otherwise lose the end of its report: the unhandled exception that killed it and
its ``SESSION_END``. So every open :class:`~.reporter.TelemetryReporter` is registered here:

* ``sys.excepthook``: the exception that ends the main thread is reported by each open
  reporter (``log_exception``), then each is closed (``SESSION_END``, drained), within
  :data:`EXIT_TIMEOUT` seconds in all (at an interactive prompt, where the process goes on,
  it is only reported);
* ``threading.excepthook``: the exception that ends another thread is reported (which
  starts a flush); the process lives on, so the sessions do not end;
* interpreter exit (:func:`tinkex.actors.runtime.at_exit`, which runs before the runtime's
  own shutdown): the reporters still open are closed, within :data:`EXIT_TIMEOUT` in all.

The hooks are installed once, on the first registration, and call the hooks they replaced;
while no reporter is open they only pass the exception on.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tinkex.actors.runtime import Runtime

    from .reporter import TelemetryReporter

__all__ = ["EXIT_TIMEOUT", "register", "unregister"]

log = logging.getLogger("tinkex.reporting")

EXIT_TIMEOUT: Final = 2.0
"""Seconds the reporters together may take to drain when the process ends."""

SysHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]
ThreadHook = Callable[[threading.ExceptHookArgs], object]

_lock = threading.Lock()
_open: dict[TelemetryReporter, None] = {}
"""Open reporters in the order they started (a dict as an ordered set, holding them: an
unclosed reporter must live until it is drained at exit)."""
_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()
"""Runtimes whose exit closes the open reporters (one registration each)."""
_installed = False
_previous_sys: SysHook = sys.excepthook
_previous_thread: ThreadHook = threading.excepthook


def register(reporter: TelemetryReporter, runtime: Runtime) -> None:
    """Report the end of the process through ``reporter`` until it is unregistered."""
    global _installed, _previous_sys, _previous_thread
    with _lock:
        _open[reporter] = None
        if not _installed:
            _previous_sys, sys.excepthook = sys.excepthook, _sys_hook
            _previous_thread, threading.excepthook = threading.excepthook, _thread_hook
            _installed = True
        if runtime not in _runtimes:
            from tinkex.actors.runtime import at_exit  # here: the runtime imports reporting

            # At exit the latest registration runs first: before the shutdown of every
            # runtime started so far, while the I/O loop can still send.
            _runtimes.add(runtime)
            at_exit(_close_all)


def unregister(reporter: TelemetryReporter) -> None:
    with _lock:
        _open.pop(reporter, None)


def _registered() -> list[TelemetryReporter]:
    """The reporters registered now, oldest first."""
    with _lock:
        return list(_open)


def _close_all() -> None:
    """Close every open reporter, within :data:`EXIT_TIMEOUT` seconds in all."""
    deadline = time.monotonic() + EXIT_TIMEOUT
    for reporter in _registered():
        _guarded(reporter.close, timeout=max(0.0, deadline - time.monotonic()))


def _report(error: BaseException) -> None:
    """Queue ``error`` in every open reporter (a user error as a ``user_error`` event)."""
    if isinstance(error, Exception):  # not KeyboardInterrupt: an interruption, not a crash
        for reporter in _registered():
            _guarded(reporter.log_exception, error)


def _sys_hook(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    try:
        _previous_sys(kind, error, traceback)  # the traceback first: reporting may take 2 s
    finally:
        _report(error)
        if not _interactive():  # at the prompt the process goes on after the traceback
            _close_all()


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    try:
        _previous_thread(args)
    finally:
        if args.exc_value is not None:
            _report(args.exc_value)  # it starts a flush; the sessions end at exit


def _interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive)


def _guarded(call: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Run ``call``; a failure of telemetry must not hide the exception being reported."""
    try:
        call(*args, **kwargs)
    except Exception:
        log.warning("telemetry could not report the end of the process", exc_info=True)

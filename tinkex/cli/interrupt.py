"""Ctrl-C as a request to stop at the next safe point, not as an exception anywhere.

A ``KeyboardInterrupt`` can land between any two bytecodes: between submitting a
``forward_backward`` and its ``optim_step``, say, after which no step number describes the
model's state. So while a training loop runs, the first SIGINT only sets an event that the
loop checks between steps (finish the step, save, exit); a second SIGINT raises
``KeyboardInterrupt`` as usual, for a user who does not want to wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stop_requests"]


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """An event set by the first SIGINT while the block runs; the old handler returns after.

    Signal handlers can only be installed from the main thread: elsewhere the event is
    never set and Ctrl-C behaves as it did.
    """
    requested = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)

"""The base class of tinkex's own actors."""

from __future__ import annotations

from typing import Any

from tinkex.supervision import Crash, SupervisedActor


class TinkexActor(SupervisedActor):
    """A supervised actor that crashes on a message it does not understand.

    pykka only logs unexpected messages; an OTP server would crash on an unmatched call,
    and so do ours: a stray message means a bug, and a restart is the honest answer.
    """

    def on_receive(self, message: Any) -> Any:
        raise Crash(f"{type(self).__name__} received an unexpected message: {message!r}")

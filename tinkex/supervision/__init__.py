"""OTP-style supervision for pykka actors: generic, and independent of the Tinker API.

pykka gives threads, mailboxes and futures; this package adds what OTP adds on top of
processes: actors that report their exit (:class:`SupervisedActor`), supervisors that
restart them by strategy and restart type and give up by restart intensity
(:class:`Supervisor`, :class:`DynamicSupervisor`), names that follow restarts
(:class:`Registry`), state that survives them (:class:`Store`) and supervised background
work (:class:`TaskSupervisor`). See ``docs/supervision.md`` for the semantics, side by side
with OTP's, and for what differs because Python threads cannot be killed.
"""

from tinkex.supervision.child_spec import ChildCounts, ChildInfo, ChildSpec, ChildType, Restart
from tinkex.supervision.dynamic import DynamicSupervisor
from tinkex.supervision.errors import (
    ChildNotFoundError,
    ChildRunningError,
    ChildStartError,
    Crash,
    DuplicateChildError,
    MaxChildrenError,
    MaxRestartsExceeded,
    NameNotFoundError,
    NameTakenError,
    SupervisionError,
)
from tinkex.supervision.exits import ExitKind, ExitReason
from tinkex.supervision.registry import Registry
from tinkex.supervision.store import Store
from tinkex.supervision.supervised_actor import SupervisedActor
from tinkex.supervision.supervisor import Strategy, Supervisor
from tinkex.supervision.tasks import TaskSupervisor

__all__ = [
    "ChildCounts",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildRunningError",
    "ChildSpec",
    "ChildStartError",
    "ChildType",
    "Crash",
    "DuplicateChildError",
    "DynamicSupervisor",
    "ExitKind",
    "ExitReason",
    "MaxChildrenError",
    "MaxRestartsExceeded",
    "NameNotFoundError",
    "NameTakenError",
    "Registry",
    "Restart",
    "Store",
    "Strategy",
    "SupervisedActor",
    "SupervisionError",
    "Supervisor",
    "TaskSupervisor",
]

# Show the public names as tinkex.supervision.X in reprs, tracebacks and docs, like httpx.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

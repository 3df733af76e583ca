"""Opt-in recovery of corrupted training runs from their checkpoints.

When the server marks a training run ``corrupted`` (its compute crashed mid-step), or when
the runtime's supervisor gives up restarting the run's training actor, a
:class:`RecoveryMonitor` started with an enabled :class:`RecoveryPolicy` creates a **new**
training client from the run's newest checkpoint (or a chosen one), with its optimizer
state, and hands it to ``policy.on_recovery(old_client, new_client, checkpoint_path)``::

    from tinkex.recovery import RecoveryMonitor, RecoveryPolicy

    def swap(old, new, path):
        print(f"{old.model_id} is corrupted; continuing on {new.model_id} from {path}")

    policy = RecoveryPolicy(enabled=True, poll_interval=30.0, on_recovery=swap)
    with RecoveryMonitor.start(policy) as recovery:
        recovery.monitor_run(training_client, service)
        ...

It replays nothing and leaves the old client alone. See ``docs/recovery.md``.
"""

from . import events
from .errors import (
    DuplicateRunError,
    NoCheckpointError,
    RecoveryDisabledError,
    RecoveryError,
    RecoveryPolicyError,
)
from .executor import RunFetcher
from .policy import LATEST, FailureCallback, RecoveryCallback, RecoveryPolicy
from .tree import RecoveryMonitor

__all__ = [
    "LATEST",
    "DuplicateRunError",
    "FailureCallback",
    "NoCheckpointError",
    "RecoveryCallback",
    "RecoveryDisabledError",
    "RecoveryError",
    "RecoveryMonitor",
    "RecoveryPolicy",
    "RecoveryPolicyError",
    "RunFetcher",
    "events",
]

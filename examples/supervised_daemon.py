"""A trainer daemon as your own supervised actor: crash it mid-run and watch it carry on.

Long-running training jobs are daemons, and daemons crash: a bug in a reward function, a
bad batch, a dependency that raises once in a thousand calls. This example composes a
user-written pykka actor with ``tinkex.supervision``:

* ``TrainerDaemon`` is a :class:`~tinkex.supervision.SupervisedActor`. It drives itself one
  training step per message, so its mailbox stays open between steps.
* Everything it must not lose lives in ``self.store`` (the ETS-table pattern): the
  ``TrainingClient`` of its remote model (a stateless facade; the model and its request
  numbering live on the server and in tinkex's own supervised actors), the number of
  finished steps, and the losses. Its attributes die with each incarnation.
* A :class:`~tinkex.supervision.Supervisor` runs it as a ``transient`` child: restarted after
  a crash, left alone when it finishes normally.

Half-way through, the script sends the daemon a message that makes it raise. The supervisor
reports the crash, starts a new incarnation, and that one picks up the step counter and the
same remote model from the store and finishes the planned steps: no step lost, none repeated.
The traceback on stderr is the supervisor's crash report (a log record), not a failure of
the script.
(A step is committed to the store only once its ``optim_step`` is done; a daemon that can
crash *inside* a step should also checkpoint with ``save_state``.)

Locally::

    python examples/supervised_daemon.py --steps 8 --crash-after 4

against the hosted service::

    export TINKER_API_KEY=... TINKER_BASE_MODEL=meta-llama/Llama-3.2-1B
    python examples/supervised_daemon.py
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
from dataclasses import dataclass
from typing import Any

from tinkex import AdamParams, Datum, ModelInput, ServiceClient, TrainingClient, telemetry
from tinkex.backend import open_service
from tinkex.supervision import ChildSpec, Registry, Restart, SupervisedActor, Supervisor

TEXT = "Let it crash, and keep the daemon running."
TREE = "trainer-tree"
EVENT_TIMEOUT = 300.0  # seconds without any news from the daemon before the script gives up


@dataclass(frozen=True)
class StepDone:
    step: int
    loss: float
    generation: int


@dataclass(frozen=True)
class Finished:
    losses: tuple[float, ...]
    generations: tuple[int, ...]
    model_id: str


@dataclass(frozen=True)
class Restarted:
    child_id: str
    generation: int


@dataclass(frozen=True)
class Crashed:
    child_id: str
    error: str


@dataclass(frozen=True)
class GaveUp:
    restarts: int


Event = StepDone | Finished | Restarted | Crashed | GaveUp
"""What the daemon and the supervisor's signals tell the main thread, in arrival order."""


class _NextStep:
    """The daemon's message to itself: run one more step."""


class _InjectFault:
    """A message that makes the daemon raise, standing in for a real bug."""


class TrainerDaemon(SupervisedActor):
    """Trains one LoRA model for ``steps`` steps, reporting to ``events`` as it goes."""

    def __init__(
        self,
        service: ServiceClient,
        base_model: str,
        steps: int,
        learning_rate: float,
        events: queue.Queue[Event],
    ) -> None:
        super().__init__()  # runs in the supervisor's thread: keep it cheap
        self.service = service
        self.base_model = base_model
        self.steps = steps
        self.adam = AdamParams(learning_rate=learning_rate)
        self.events = events

    def init(self) -> None:
        # The first incarnation finds an empty store; a restarted one finds its predecessor's.
        self.store.setdefault("step", 0)
        self.store["generations"] = (*self.store.get("generations", ()), self.generation)
        self.actor_ref.tell(_NextStep())  # slow work (model creation) waits for a message

    def on_receive(self, message: Any) -> None:
        if isinstance(message, _InjectFault):
            # An exception in a message that nobody waits for (a tell) crashes the actor.
            raise RuntimeError(f"injected fault in incarnation #{self.generation}")
        if isinstance(message, _NextStep):
            self._run_step()

    def _trainer(self) -> TrainingClient:
        if "trainer" not in self.store:
            future = self.service.create_lora_training_client(self.base_model, rank=16, seed=0)
            self.store["trainer"] = future.result()
        trainer: TrainingClient = self.store["trainer"]
        return trainer

    def _run_step(self) -> None:
        trainer = self._trainer()
        tokens = trainer.get_tokenizer().encode(TEXT)
        datum = Datum(
            model_input=ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:]},
        )
        fwdbwd = trainer.forward_backward([datum], "cross_entropy")
        optim = trainer.optim_step(self.adam)
        loss = fwdbwd.result().metrics["loss:sum"] / len(tokens[1:])
        optim.result()

        step = self.store["step"] + 1
        self.store["step"] = step  # committed: a crash from here on does not repeat it
        self.store["losses"] = (*self.store.get("losses", ()), loss)
        self.events.put(StepDone(step, loss, self.generation))
        if step < self.steps:
            self.actor_ref.tell(_NextStep())
        else:
            store = self.store
            self.events.put(Finished(store["losses"], store["generations"], trainer.model_id))
            self.stop()  # a normal exit: a transient child is not restarted


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8, help="planned training steps")
    parser.add_argument(
        "--crash-after", type=int, default=4, help="inject the fault after this step"
    )
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    if not 1 <= args.crash_after < args.steps:
        parser.error(
            f"--crash-after must be from 1 to --steps - 1 ({args.steps - 1}), "
            f"got {args.crash_after}"
        )
    return args


def main() -> None:
    args = parse_args()
    # The supervisor logs each crash with its traceback (OTP's crash report) on stderr.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    events: queue.Queue[Event] = queue.Queue()

    def on_restart(_event: str, _measurements: dict[str, Any], meta: dict[str, Any]) -> None:
        # Runs in the supervisor's thread: hand the news to the main thread, print nothing.
        if meta["supervisor"] == TREE:
            events.put(Restarted(meta["child_id"], meta["generation"]))

    def on_exit(_event: str, _measurements: dict[str, Any], meta: dict[str, Any]) -> None:
        if meta["supervisor"] == TREE and meta["reason"] == "crash":
            events.put(Crashed(meta["child_id"], repr(meta["error"])))

    def on_give_up(_event: str, measurements: dict[str, Any], meta: dict[str, Any]) -> None:
        if meta["supervisor"] == TREE:
            events.put(GaveUp(measurements["restarts"]))

    handlers = {
        "example.daemon.restarts": (telemetry.SUPERVISOR_CHILD_RESTARTED, on_restart),
        "example.daemon.exits": (telemetry.SUPERVISOR_CHILD_EXITED, on_exit),
        "example.daemon.give_up": (telemetry.SUPERVISOR_MAX_RESTARTS_EXCEEDED, on_give_up),
    }
    for handler_id, (event, handler) in handlers.items():
        telemetry.attach(handler_id, event, handler)
    registry = Registry()
    try:
        with open_service(announce=print) as service:
            daemon = ChildSpec(
                "trainer",
                TrainerDaemon,
                kwargs={
                    "service": service,
                    "base_model": args.base_model,
                    "steps": args.steps,
                    "learning_rate": args.learning_rate,
                    "events": events,
                },
                restart=Restart.TRANSIENT,
            )
            with Supervisor.start([daemon], name=TREE, registry=registry):
                watch(events, registry, args)
    finally:
        for handler_id in handlers:
            telemetry.detach(handler_id)


def watch(events: queue.Queue[Event], registry: Registry, args: argparse.Namespace) -> None:
    """Print what the daemon reports, inject the fault once, return when it has finished."""
    injected = False
    while True:
        event = events.get(timeout=EVENT_TIMEOUT)
        if isinstance(event, StepDone):
            print(
                f"step {event.step}/{args.steps}  loss/token {event.loss:.3f}  "
                f"(incarnation #{event.generation})"
            )
            if event.step == args.crash_after and not injected:
                injected = True
                print("injecting a fault into the trainer daemon")
                registry.lookup("trainer").tell(_InjectFault())  # look up by name, every time
        elif isinstance(event, Crashed):
            print(f"supervisor saw {event.child_id!r} crash: {event.error}")
        elif isinstance(event, Restarted):
            print(f"supervisor restarted {event.child_id!r} as incarnation #{event.generation}")
        elif isinstance(event, GaveUp):
            raise SystemExit(
                f"the daemon crashed {event.restarts} times in quick succession and its "
                "supervisor gave up; the crash reports above say why"
            )
        elif isinstance(event, Finished):
            runs = ", ".join(f"#{generation}" for generation in event.generations)
            print(
                f"finished {len(event.losses)}/{args.steps} planned steps with incarnations "
                f"{runs} of the daemon, on one remote model ({event.model_id})"
            )
            print(f"loss/token over the whole run: {event.losses[0]:.3f} -> {event.losses[-1]:.3f}")
            return


if __name__ == "__main__":
    main()

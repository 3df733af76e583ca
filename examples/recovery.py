"""Opt-in recovery: a corrupted training run continues on a new client from its checkpoint.

A :class:`~tinkex.recovery.RecoveryMonitor` polls the runs it watches. When the server marks
one ``corrupted`` (its compute crashed mid-step), the monitor creates a new training client
from the run's latest checkpoint, optimizer state included, and hands it to the policy's
``on_recovery`` callback; the training loop then carries on with that client.

Against the embedded local backend (the default: no account, no network) the script
corrupts its own run through the backend's test hook and shows the whole recovery::

    python examples/recovery.py

Against the hosted service it trains and watches the run, but cannot corrupt it, so it
only shows the monitor at work (and recovers if the service reports a corrupted run)::

    TINKER_API_KEY=... python examples/recovery.py --base-model meta-llama/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import Any

import httpx

from tinkex import (
    AdamParams,
    Datum,
    ModelInput,
    RequestFailedError,
    ServiceClient,
    TrainingClient,
    telemetry,
)
from tinkex.backend import open_service, wants_local_backend
from tinkex.recovery import RecoveryMonitor, RecoveryPolicy, events

LINES = ["Let it crash.", "Supervisors restart actors.", "Checkpoints restart runs."]
RECOVERY_WAIT = 300.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="steps before and after (default 3)")
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


def batch_for(client: TrainingClient) -> list[Datum]:
    tokenizer = client.get_tokenizer()
    batch = []
    for line in LINES:
        tokens = tokenizer.encode(line)
        batch.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
            )
        )
    return batch


def train(client: TrainingClient, batch: list[Datum], steps: int, label: str) -> None:
    adam = AdamParams(learning_rate=1e-2)
    for step in range(1, steps + 1):
        fwdbwd = client.forward_backward(batch, "cross_entropy")
        client.optim_step(adam).result()
        print(f"{label} step {step}: loss {fwdbwd.result().metrics['loss:sum']:.4f}")


def loss_of(client: TrainingClient, batch: list[Datum]) -> float:
    loss: float = client.forward(batch, "cross_entropy").result().metrics["loss:sum"]
    return loss


def print_signal(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    details = {k: metadata[k] for k in ("reason", "attempt", "checkpoint") if k in metadata}
    print(f"signal {event} {details}")


def corrupt(service: ServiceClient, run_id: str) -> None:
    """The local backend's test hook: mark the run corrupted, as a crash mid-step would."""
    response = httpx.post(
        f"{service.config.base_url}/api/v1/local/corrupt_run",
        json={"model_id": run_id},
        headers={"X-API-Key": service.config.api_key},
        timeout=30.0,
    )
    response.raise_for_status()


def main() -> None:
    args = parse_args()
    local = wants_local_backend()
    recovered: dict[str, Any] = {}
    done = threading.Event()

    def on_recovery(old: TrainingClient | None, new: TrainingClient, path: str) -> None:
        recovered.update(old=old, new=new, path=path)
        done.set()

    policy = RecoveryPolicy(
        enabled=True,
        poll_interval=0.5 if local else 30.0,
        backoff=0.5 if local else 5.0,
        on_recovery=on_recovery,
        on_failure=lambda run_id, reason: print(f"could not recover {run_id}: {reason}"),
    )
    telemetry.attach_many("example.recovery", events.ALL_EVENTS, print_signal)
    try:
        with open_service(announce=print) as service, RecoveryMonitor.start(policy) as monitor:
            trainer = service.create_lora_training_client(args.base_model, rank=8, seed=0).result()
            batch = batch_for(trainer)
            train(trainer, batch, args.steps, "original")
            path = trainer.save_state("before-crash").result().path
            at_checkpoint = loss_of(trainer, batch)
            print(f"checkpoint: {path} (loss {at_checkpoint:.4f})")
            monitor.monitor_run(trainer, service, metadata={"example": "recovery"})
            print(f"watching run {trainer.model_id} every {policy.poll_interval:g} s")

            if not local:
                train(trainer, batch, args.steps, "original")
                print("the hosted service reported no corruption; nothing to recover")
                return
            corrupt(service, trainer.model_id)
            print(f"corrupted run {trainer.model_id} through the local backend's test hook")
            try:
                trainer.forward(batch, "cross_entropy").result()
            except RequestFailedError as exc:
                print(f"the old client now fails: {exc}")
            if not done.wait(RECOVERY_WAIT):
                raise SystemExit(f"the run was not recovered within {RECOVERY_WAIT:g} s")

            new: TrainingClient = recovered["new"]
            print(f"recovered: {trainer.model_id} -> {new.model_id} from {recovered['path']}")
            restored = loss_of(new, batch)
            same = "same weights" if restored == at_checkpoint else "DIFFERENT weights"
            print(f"loss of the recovered client {restored:.4f} ({same} as the checkpoint)")
            train(new, batch, args.steps, "recovered")
    finally:
        telemetry.detach("example.recovery")


if __name__ == "__main__":
    main()

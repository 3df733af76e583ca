"""Watch what the client sees: queue-state transitions, telemetry to the server, metrics.

By default this starts the embedded local backend with a fault profile that pauses the
queue for the first polls of every request, so the transitions (``paused_capacity`` then
``active``) and the "Sampling is paused" warning show up at once. With ``TINKER_API_KEY``
(or ``TINKER_BASE_URL``) set it talks to that service instead, with no faults injected;
pauses then appear only when the service is busy. Training pauses are only warned about once
they have lasted 15 minutes, so here they show as transitions only. Locally::

    python examples/queue_state_telemetry.py

against the hosted service::

    TINKER_API_KEY=... python examples/queue_state_telemetry.py --base-model meta-llama/Llama-3.2-1B

Every HTTP request is counted by ``tinkex.metrics``; the script ends with a snapshot.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from tinkex import AdamParams, Datum, ModelInput, SamplingParams, metrics, telemetry
from tinkex.backend import open_service, wants_local_backend
from tinkex.futures import QUEUE_STATE_CHANGE

PAUSE_FAULTS = "paused_polls=3"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    return parser.parse_args()


def main() -> None:
    base_model = parse_args().base_model
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s"
    )
    # The library's own logger for the transitions, at INFO on this module's logger ...
    log = logging.getLogger("queue_state_telemetry")
    log.setLevel(logging.INFO)
    telemetry.attach_logger(
        logging.INFO, events=[QUEUE_STATE_CHANGE], log=log, handler_id="example.queue-log"
    )
    # ... and a handler of our own that keeps them for the summary.
    transitions: list[str] = []

    def remember(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        transitions.append(f"{metadata['request_type']}: {metadata['queue_state']}")

    telemetry.attach("example.queue-remember", QUEUE_STATE_CHANGE, remember)

    faults = PAUSE_FAULTS if wants_local_backend() else None
    with open_service(announce=print, faults=faults) as service:
        sampler = service.create_sampling_client(base_model=base_model).result()
        tokenizer = sampler.get_tokenizer()
        prompt = ModelInput.from_ints(tokenizer.encode("Queues pause; ", add_special_tokens=False))
        sampled = sampler.sample(prompt, 1, SamplingParams(max_tokens=8, seed=0)).result()
        print(f"sample: {tokenizer.decode(sampled.sequences[0].tokens)!r}")

        training = service.create_lora_training_client(base_model, rank=8).result()
        tokens = tokenizer.encode("Telemetry is data about the run.", add_special_tokens=False)
        datum = Datum(
            model_input=ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
        )
        output = training.forward_backward([datum], "cross_entropy").result()
        training.optim_step(AdamParams(learning_rate=1e-3)).result()
        print(f"trained one step: loss:sum={output.metrics['loss:sum']:.3f}")

        reporter = service.telemetry_reporter
        if reporter is not None:
            reporter.log("example.finished", {"transitions": len(transitions)})
    if reporter is not None:  # closing the service sent SESSION_END and drained the queue
        print(f"telemetry: {reporter.sent} events sent, {reporter.dropped} dropped")
    else:
        print("telemetry: disabled (TINKER_TELEMETRY=0)")

    print(f"queue-state transitions: {len(transitions)}")
    for line in transitions:
        print(f"  {line}")
    print("metrics snapshot (HTTP requests and latency by endpoint):")
    snapshot = metrics.snapshot()
    for series, count in snapshot["counters"].items():
        if series.startswith("http.requests"):
            print(f"  {series} = {count:g}")
    for series, summary in snapshot["histograms"].items():
        if series.startswith("http.request.duration_ms"):
            print(
                f"  {series}: p50={summary['p50']:.1f} ms p90={summary['p90']:.1f} ms "
                f"p99={summary['p99']:.1f} ms (n={summary['count']:g})"
            )
    total = metrics.counter("http.requests")
    print(f"done: {total:g} requests, {len(transitions)} queue-state transitions")


if __name__ == "__main__":
    main()

"""Client-side cost of a big forward_backward: the official ``tinker`` SDK next to tinkex.

The batch is 128 datums x 2,048 tokens with cross-entropy inputs (``target_tokens`` int64 and
``weights`` float32), built from numpy arrays the way a user would. For each client it times
(median of ``--runs``, ``time.perf_counter``, the two clients alternating):

* **build**: the 128 ``Datum`` objects from the arrays (``ModelInput.from_ints(tokens.tolist())``
  and the arrays themselves as ``loss_fn_inputs``);
* **encode**: those datums to the protobuf ``ForwardBackwardRequest`` body. tinkex:
  ``tinkex.protocol.encode_forward_backward_request``. Official: what
  ``TrainingClient.forward_backward`` does per chunk, a ``ForwardBackwardRequest`` turned into
  bytes by ``tinker.proto.request_conv.forward_backward_request_to_proto`` (the SDK may split
  a batch this size into a few chunks; one body is encoded here for both);
* **decode**: a ``ForwardBackwardOutput`` body with 128 x 2,048 float32 ``logprobs`` and
  ``elementwise_loss`` to the client's ``ForwardBackwardOutput``. tinkex:
  ``tinkex.protocol.decode_forward_backward_output``. Official:
  ``tinker.proto.response_conv.deserialize_forward_backward_output``, which its futures use;
* **to numpy**: every output of the decoded result as a numpy array
  (``loss_fn_outputs[i][name].to_numpy()``), which is how results are usually read.

Numbers are printed, never asserted.

    python benchmarks/encode.py [--runs 7] [--datums 128] [--tokens 2048]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tinker
from tinker import types as ttypes
from tinker.proto.request_conv import forward_backward_request_to_proto
from tinker.proto.response_conv import deserialize_forward_backward_output

import tinkex
from tinkex.protocol import (
    decode_forward_backward_output,
    encode_forward_backward_output,
    encode_forward_backward_request,
)

MODEL_ID = "session-bench:train:0"
LOSS_FN: Final = "cross_entropy"
OUTPUT_NAMES = ("logprobs", "elementwise_loss")

Arrays = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]]
"""Per datum: input tokens, target tokens, weights."""


def make_batch(datums: int, tokens: int) -> Arrays:
    rng = np.random.default_rng(7)
    batch: Arrays = []
    for _ in range(datums):
        seq = rng.integers(0, 50_000, tokens + 1, dtype=np.int64)
        batch.append((seq[:-1], seq[1:], rng.random(tokens, dtype=np.float32)))
    return batch


def make_output_body(datums: int, tokens: int) -> bytes:
    """A server's ``ForwardBackwardOutput`` body for the batch (random float32 values)."""
    rng = np.random.default_rng(8)
    outputs = [
        {name: -rng.random(tokens, dtype=np.float32) for name in OUTPUT_NAMES}
        for _ in range(datums)
    ]
    return encode_forward_backward_output(outputs, {"loss:sum": 1.0})


def _inputs(targets: npt.NDArray[np.int64], weights: npt.NDArray[np.float32]) -> Any:
    """The arrays as they are: both SDKs take numpy arrays in ``loss_fn_inputs`` (their
    annotations say ``TensorData``, hence ``Any``)."""
    return {"target_tokens": targets, "weights": weights}


# the two clients ---------------------------------------------------------------------------------


class Client:
    """The four steps for one client."""

    name = ""

    def build(self, batch: Arrays) -> list[Any]:
        raise NotImplementedError

    def encode(self, data: list[Any]) -> bytes:
        raise NotImplementedError

    def decode(self, body: bytes) -> Any:
        raise NotImplementedError

    @staticmethod
    def to_numpy(output: Any) -> list[npt.NDArray[Any]]:
        return [o[name].to_numpy() for o in output.loss_fn_outputs for name in OUTPUT_NAMES]


class Tinkex(Client):
    name = "tinkex"

    def build(self, batch: Arrays) -> list[Any]:
        return [
            tinkex.Datum(
                model_input=tinkex.ModelInput.from_ints(tokens.tolist()),
                loss_fn_inputs=_inputs(targets, weights),
            )
            for tokens, targets, weights in batch
        ]

    def encode(self, data: list[Any]) -> bytes:
        return encode_forward_backward_request(
            model_id=MODEL_ID, seq_id=1, data=data, loss_fn=LOSS_FN
        )

    def decode(self, body: bytes) -> Any:
        return decode_forward_backward_output(body)


class Official(Client):
    name = "official"

    def build(self, batch: Arrays) -> list[Any]:
        return [
            ttypes.Datum(
                model_input=ttypes.ModelInput.from_ints(tokens.tolist()),
                loss_fn_inputs=_inputs(targets, weights),
            )
            for tokens, targets, weights in batch
        ]

    def encode(self, data: list[Any]) -> bytes:
        request = ttypes.ForwardBackwardRequest(
            forward_backward_input=ttypes.ForwardBackwardInput(
                data=data, loss_fn=LOSS_FN, loss_fn_config=None
            ),
            model_id=MODEL_ID,
            seq_id=1,
        )
        message: Any = forward_backward_request_to_proto(request)
        message.forward_only = False
        body: bytes = message.SerializeToString()
        return body

    def decode(self, body: bytes) -> Any:
        return deserialize_forward_backward_output(body)


# timing ------------------------------------------------------------------------------------------

STEPS = ("build", "encode", "decode", "to numpy")


def time_once(client: Client, batch: Arrays, body: bytes) -> tuple[list[float], bytes, Any]:
    """Seconds of each step, the request body and the decoded arrays."""
    seconds: list[float] = []

    def timed(step: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = step()
        seconds.append(time.perf_counter() - t0)
        return result

    data = timed(lambda: client.build(batch))
    request = timed(lambda: client.encode(data))
    output = timed(lambda: client.decode(body))
    arrays = timed(lambda: client.to_numpy(output))
    return seconds, request, arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per client (7)")
    parser.add_argument("--datums", type=int, default=128, help="datums in the batch (128)")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per datum (2048)")
    args = parser.parse_args()
    if min(args.runs, args.datums, args.tokens) < 1:
        parser.error("--runs, --datums and --tokens must be at least 1")

    started = time.perf_counter()
    batch = make_batch(args.datums, args.tokens)
    body = make_output_body(args.datums, args.tokens)
    clients: list[Client] = [Official(), Tinkex()]
    print(
        f"forward_backward encode/decode: {args.datums} datums x {args.tokens} tokens "
        f"({LOSS_FN}: target_tokens + weights); output body {len(body) / 1e6:.1f} MB; "
        f"tinker {tinker.__version__}; median of {args.runs} runs; {os.cpu_count()} CPU cores"
    )
    times: dict[str, list[list[float]]] = {c.name: [] for c in clients}
    requests: dict[str, bytes] = {}
    arrays: dict[str, Any] = {}
    for client in clients:  # warm-up (imports, caches), not timed
        time_once(client, batch[:2], body)
    for run in range(args.runs):
        for client in clients if run % 2 == 0 else clients[::-1]:
            seconds, requests[client.name], arrays[client.name] = time_once(client, batch, body)
            times[client.name].append(seconds)

    medians = {
        name: [statistics.median(run[i] for run in runs) for i in range(len(STEPS))]
        for name, runs in times.items()
    }
    print()
    header = f"{'ms (median)':<28} {'official':>10} {'tinkex':>10} {'tinkex/official':>16}"
    print(header)
    print("-" * len(header))
    rows = [*zip(STEPS, range(len(STEPS)), strict=True)]
    for label, i in rows:
        official, mine = 1000 * medians["official"][i], 1000 * medians["tinkex"][i]
        print(f"{label:<28} {official:>10.1f} {mine:>10.1f} {mine / official:>16.2f}")
    official, mine = 1000 * sum(medians["official"]), 1000 * sum(medians["tinkex"])
    print(f"{'total':<28} {official:>10.1f} {mine:>10.1f} {mine / official:>16.2f}")
    print()
    same_request = requests["official"] == requests["tinkex"]
    same_output = all(
        np.array_equal(a, b) for a, b in zip(arrays["official"], arrays["tinkex"], strict=True)
    )
    print(
        f"request body {len(requests['tinkex']) / 1e6:.1f} MB; identical bytes from both "
        f"clients: {'yes' if same_request else 'no'}; decoded outputs equal: "
        f"{'yes' if same_output else 'NO'}"
    )
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

"""asyncio: the ``*_async`` methods, and many samples in flight at once.

Every tinkex call returns an ``APIFuture``; in asyncio code you ``await`` it, which never
blocks the event loop. The ``*_async`` twins (``create_lora_training_client_async``,
``forward_backward_async``, ``sample_async``...) also make the *call* off the loop, so a
coroutine is never stuck while a request is being submitted: ``await (await c.x_async())``
gives the result. This script

1. creates a training client and runs a few training steps with the async methods,
2. opens a sampler on the trained weights and gathers ``--requests`` samples concurrently
   with ``asyncio.gather`` (all of them are in flight together, polled by one I/O thread),
3. keeps a ticker coroutine running the whole time to show that the loop stays free.

Locally::

    python examples/async_usage.py --requests 16

against the hosted service::

    TINKER_API_KEY=... python examples/async_usage.py --base-model meta-llama/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from tinkex import (
    AdamParams,
    Datum,
    ModelInput,
    SamplingClient,
    SamplingParams,
    ServiceClient,
    Tokenizer,
)
from tinkex.backend import open_service

TEXT = "asyncio and actors get along."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5, help="training steps")
    parser.add_argument("--requests", type=int, default=16, help="concurrent sample requests")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per sample")
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    for flag in ("steps", "requests"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    return args


async def sample_one(
    sampler: SamplingClient, tokenizer: Tokenizer, index: int, max_tokens: int
) -> str:
    """One request: the call is made off the loop, then its APIFuture is awaited."""
    prompt = ModelInput.from_ints(tokenizer.encode(f"#{index}: "))
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=index)
    future = await sampler.sample_async(prompt, 1, params)
    response = await future
    return tokenizer.decode(response.sequences[0].tokens, skip_special_tokens=True)


TICK_SECONDS = 0.01


async def ticker(ticks: list[int]) -> None:
    """Counts (in ``ticks[0]``) how often the loop got to run it: every 10 ms if it is free."""
    while True:
        ticks[0] += 1
        await asyncio.sleep(TICK_SECONDS)


async def run(service: ServiceClient, args: argparse.Namespace) -> None:
    ticks = [0]
    ticking = asyncio.create_task(ticker(ticks))

    created = await service.create_lora_training_client_async(args.base_model, rank=16, seed=0)
    training = await created
    tokenizer = await asyncio.to_thread(training.get_tokenizer)  # may download: off the loop
    tokens = tokenizer.encode(TEXT)
    datum = Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:]},
    )
    for step in range(1, args.steps + 1):
        fwdbwd = await training.forward_backward_async([datum], "cross_entropy")
        optim = await training.optim_step_async(AdamParams(learning_rate=3e-3))
        output, _ = await asyncio.gather(fwdbwd.result_async(), optim.result_async())
        print(f"step {step}: loss/token {output.metrics['loss:sum'] / len(tokens[1:]):.3f}")

    sampler = await (await training.save_weights_and_get_sampling_client_async())
    started, ticks_before = time.monotonic(), ticks[0]
    texts = await asyncio.gather(
        *(sample_one(sampler, tokenizer, i, args.max_tokens) for i in range(args.requests))
    )
    elapsed, ticked = time.monotonic() - started, ticks[0] - ticks_before
    ticking.cancel()
    print(f"gathered {len(texts)} samples concurrently in {elapsed:.2f}s")
    for index, text in enumerate(texts[:3]):
        print(f"  #{index}: {text!r}")
    print(
        f"the event loop ran the ticker {ticked} times while waiting "
        f"(about {elapsed / TICK_SECONDS:.0f} if it never blocked)"
    )


def main() -> None:
    args = parse_args()
    with open_service(announce=print) as service:
        asyncio.run(run(service, args))


if __name__ == "__main__":
    main()

"""A plain-Python LoRA training loop: forward_backward, optim_step, save, sample.

It shows the canonical loop and the one habit that makes it fast: both calls of a step are
*submitted* before either result is awaited, so the server never waits for the client
between them (calls on one TrainingClient run in the order they were made). After the
last step the adapter is saved for sampling and a few prompts are completed with it.

Run it against the embedded local backend (no account; the built-in model
``tinkex/tiny-llama`` learns the lines below by heart in 100 steps, a few seconds)::

    python examples/training_loop.py

or against the hosted service, with a learning rate that suits a larger model::

    export TINKER_API_KEY=... TINKER_BASE_MODEL=meta-llama/Llama-3.2-1B
    python examples/training_loop.py --learning-rate 3e-4
"""

from __future__ import annotations

import argparse
import os
import time

from tinkex import AdamParams, Datum, ModelInput, SamplingParams, Tokenizer
from tinkex.backend import open_service

LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Actors crash; supervisors restart them.",
    "Tinker trains LoRA adapters as a service.",
    "Let it crash, and keep the daemon running.",
]
PREFIXES = ["The quick", "Actors", "Let it"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps")
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--rank", type=int, default=32, help="LoRA rank")
    parser.add_argument("--max-tokens", type=int, default=40, help="tokens per sample")
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


def to_datum(text: str, tokenizer: Tokenizer) -> Datum:
    """Next-token prediction on ``text``: the input is every token but the last, the target
    every token but the first, each weighted 1."""
    tokens = tokenizer.encode(text)
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def main() -> None:
    args = parse_args()
    with open_service(announce=print) as service:
        created = service.create_lora_training_client(args.base_model, rank=args.rank, seed=0)
        trainer = created.result()
        print(f"training a rank-{args.rank} LoRA adapter on {trainer.base_model}")
        tokenizer = trainer.get_tokenizer()
        batch = [to_datum(line, tokenizer) for line in LINES]
        target_tokens = sum(d.model_input.length for d in batch)  # one target per input
        adam = AdamParams(learning_rate=args.learning_rate)

        losses: list[float] = []
        for step in range(1, args.steps + 1):
            started = time.monotonic()
            fwdbwd = trainer.forward_backward(batch, "cross_entropy")
            optim = trainer.optim_step(adam)  # queued behind fwdbwd before we wait on it
            losses.append(fwdbwd.result().metrics["loss:sum"] / target_tokens)
            optim.result()
            if step == 1 or step % 10 == 0 or step == args.steps:
                took = time.monotonic() - started
                print(f"step {step:3d}/{args.steps}  loss/token {losses[-1]:.3f}  {took:.2f}s")
        print(f"loss/token: first {losses[0]:.3f} -> last {losses[-1]:.3f}")

        saved = trainer.save_weights_for_sampler("final").result()
        print(f"sampler weights: {saved.path}")
        sampler = service.create_sampling_client(model_path=saved.path).result()
        params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, stop=["."])
        futures = [
            sampler.sample(ModelInput.from_ints(tokenizer.encode(prefix)), 1, params)
            for prefix in PREFIXES
        ]
        for prefix, future in zip(PREFIXES, futures, strict=True):
            tokens = future.result().sequences[0].tokens
            completion = tokenizer.decode(tokens, skip_special_tokens=True)
            print(f"sample: {prefix!r} -> {prefix + completion!r}")


if __name__ == "__main__":
    main()

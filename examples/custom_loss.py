"""A loss of your own, written in torch: focal loss through ``forward_backward_custom``.

The service trains with its built-in losses only, yet any differentiable function of the
target tokens' logprobs can be trained: ``forward_backward_custom(data, loss_fn)`` asks the
server for the logprobs, runs ``loss_fn`` on this machine with autograd, and sends the
gradient back as the weights of a ``cross_entropy`` backward pass. The loss here is the focal
loss, ``-(1 - p) ** gamma * log p`` per target token (``p`` its probability), which spends
the gradient on the tokens the model still gets wrong; ``gamma = 0`` is plain cross-entropy.

Each step prints the focal loss (the output's ``loss:sum``), the server's surrogate loss
(``surrogate_loss:sum``, the cross-entropy pass that carried the gradient) and the metric the
loss function returns. Needs torch (``pip install 'tinkex[torch]'``). Locally::

    python examples/custom_loss.py --steps 10

against the hosted service::

    export TINKER_API_KEY=... TINKER_BASE_MODEL=meta-llama/Llama-3.2-1B
    python examples/custom_loss.py
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

from tinkex import AdamParams, Datum, ModelInput
from tinkex.backend import open_service

LINES = [
    "Supervisors restart the actors that crash.",
    "A custom loss runs on the client; its gradient trains the server's model.",
    "Focal loss looks hardest at the tokens the model gets wrong.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps")
    parser.add_argument("--gamma", type=float, default=2.0, help="focusing exponent (>= 0)")
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if args.gamma < 0:
        parser.error(f"--gamma must not be negative, got {args.gamma}")
    return args


def next_token_datum(tokens: list[int]) -> Datum:
    """Predict every token from the ones before it; no weights: the loss decides."""
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:]},
    )


def focal_loss(gamma: float) -> Any:
    """``loss_fn(data, logprobs_list) -> (loss, metrics)`` for ``forward_backward_custom``."""

    def loss_fn(data: list[Datum], logprobs_list: list[torch.Tensor]) -> tuple[Any, Any]:
        logprobs = torch.cat(logprobs_list)  # every target token of the batch
        probs = logprobs.exp()
        loss = (-((1 - probs) ** gamma) * logprobs).sum()
        # A "name:reduction" key, like the server's own metrics.
        return loss, {"target_prob:mean": probs.mean().detach()}

    return loss_fn


def main() -> None:
    args = parse_args()
    with open_service(announce=print) as service:
        trainer = service.create_lora_training_client(
            args.base_model, rank=args.rank, seed=0
        ).result()
        tokenizer = trainer.get_tokenizer()
        batch = [next_token_datum(tokenizer.encode(line)) for line in LINES]
        loss_fn = focal_loss(args.gamma)
        adam = AdamParams(learning_rate=args.learning_rate)
        print(f"focal loss (gamma {args.gamma}) on {len(batch)} lines of {args.base_model}")

        losses: list[float] = []
        for step in range(1, args.steps + 1):
            fwdbwd = trainer.forward_backward_custom(batch, loss_fn)
            optim = trainer.optim_step(adam)  # runs after both passes of the call before it
            metrics = fwdbwd.result().metrics
            optim.result()
            losses.append(metrics["loss:sum"])
            print(
                f"step {step:3d}  focal loss {metrics['loss:sum']:8.3f}  "
                f"surrogate {metrics['surrogate_loss:sum']:8.3f}  "
                f"mean p(target) {metrics['target_prob:mean']:.3f}"
            )
        verdict = "decreased" if losses[-1] < losses[0] else "did not decrease"
        print(f"focal loss: first {losses[0]:.3f} -> last {losses[-1]:.3f} ({verdict})")


if __name__ == "__main__":
    main()

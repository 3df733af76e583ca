"""Checkpoints: save the training state, resume it elsewhere, sample, list what was saved.

1. Train a few steps, then ``save_state``: the LoRA weights *and* the AdamW moments, as
   ``tinker://<run>/weights/<name>`` (with a TTL, after which the server may delete it).
2. Keep training the original model for ``--more-steps`` steps.
3. Restore the checkpoint into a new model with
   ``create_training_client_from_state_with_optimizer`` and run the same steps: its losses
   continue exactly where the original's went, because the optimizer resumes too.
4. For contrast, restore the weights only (``create_training_client_from_state``): the
   first loss is the same, the next ones drift, since Adam's moments restart from zero.
5. Save the resumed model for sampling (``save_weights_for_sampler``), sample from it, and
   list every checkpoint of both runs with the ``RestClient``.

Locally::

    python examples/checkpoints_and_resume.py --steps 5 --more-steps 4

against the hosted service::

    export TINKER_API_KEY=... TINKER_BASE_MODEL=meta-llama/Llama-3.2-1B
    python examples/checkpoints_and_resume.py
"""

from __future__ import annotations

import argparse
import os

from tinkex import AdamParams, Datum, ModelInput, SamplingParams, Tokenizer, TrainingClient
from tinkex.backend import open_service

LINES = [
    "A checkpoint is a promise to the future.",
    "Resume the run; the optimizer remembers.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5, help="steps before the checkpoint")
    parser.add_argument("--more-steps", type=int, default=4, help="steps after it, per model")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--ttl", type=int, default=3600, help="checkpoint lifetime, seconds")
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    for flag in ("steps", "more_steps", "ttl"):
        if getattr(args, flag) < 1:
            name = flag.replace("_", "-")
            parser.error(f"--{name} must be at least 1, got {getattr(args, flag)}")
    return args


def batch_of(tokenizer: Tokenizer) -> list[Datum]:
    batch = []
    for line in LINES:
        tokens = tokenizer.encode(line)
        batch.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:]},
            )
        )
    return batch


def train(trainer: TrainingClient, batch: list[Datum], steps: int, lr: float) -> list[float]:
    """``steps`` optimizer steps; the loss per target token seen by each."""
    targets = sum(datum.model_input.length for datum in batch)
    adam = AdamParams(learning_rate=lr)
    losses = []
    for _ in range(steps):
        fwdbwd = trainer.forward_backward(batch, "cross_entropy")
        optim = trainer.optim_step(adam)
        losses.append(fwdbwd.result().metrics["loss:sum"] / targets)
        optim.result()
    return losses


def max_gap(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def main() -> None:
    args = parse_args()
    with open_service(announce=print) as service:
        original = service.create_lora_training_client(
            args.base_model, rank=args.rank, seed=0
        ).result()
        tokenizer = original.get_tokenizer()
        batch = batch_of(tokenizer)

        before = train(original, batch, args.steps, args.learning_rate)
        print(f"trained {args.steps} steps: loss/token {before[0]:.4f} -> {before[-1]:.4f}")
        state = original.save_state("resume-point", ttl_seconds=args.ttl).result().path
        print(f"saved the training state: {state}")

        runs = {"original": original}
        losses = {"original": train(original, batch, args.more_steps, args.learning_rate)}
        for label, restore in (
            ("resumed", service.create_training_client_from_state_with_optimizer),
            ("weights only", service.create_training_client_from_state),
        ):
            runs[label] = restore(state).result()
            losses[label] = train(runs[label], batch, args.more_steps, args.learning_rate)

        print("step  " + "".join(f"{label:>14}" for label in losses))
        for step in range(args.more_steps):
            row = "".join(f"{series[step]:14.4f}" for series in losses.values())
            print(f"{args.steps + step + 1:4d}  {row}")
        print(
            "restored with optimizer: max |loss - original| = "
            f"{max_gap(losses['resumed'], losses['original']):.6f}"
        )
        print(
            "restored weights only:   max |loss - original| = "
            f"{max_gap(losses['weights only'], losses['original']):.6f} "
            "(Adam's moments restarted from zero)"
        )

        resumed = runs["resumed"]
        saved = resumed.save_weights_for_sampler("resumed-final").result()
        print(f"sampler weights: {saved.path}")
        sampler = service.create_sampling_client(model_path=saved.path).result()
        prompt = ModelInput.from_ints(tokenizer.encode("Resume"))
        params = SamplingParams(max_tokens=32, temperature=0.0, stop=["."])
        tokens = sampler.sample(prompt, 1, params).result().sequences[0].tokens
        print(f"sample: {'Resume' + tokenizer.decode(tokens, skip_special_tokens=True)!r}")

        rest = service.create_rest_client()
        for label in ("original", "resumed"):
            run_id = runs[label].model_id
            listing = rest.list_checkpoints(run_id).result()
            print(f"checkpoints of the {label} run {run_id}:")
            for checkpoint in listing.checkpoints:
                expires = checkpoint.expires_at.isoformat() if checkpoint.expires_at else "never"
                print(
                    f"  {checkpoint.checkpoint_id:<30} {checkpoint.checkpoint_type:<8} "
                    f"{checkpoint.size_bytes or 0:>9,} bytes  expires {expires}"
                )


if __name__ == "__main__":
    main()

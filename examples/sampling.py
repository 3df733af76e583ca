"""Sampling from a base model: capabilities, several completions at once, prompt logprobs.

Asks the server which models it serves, opens a SamplingClient on a base model (no training
needed), draws ``--num-samples`` completions of one prompt in a single request, prints each
with its stop reason and mean token logprob, and then scores the prompt itself with
``compute_logprobs`` (how likely the model finds each token given the ones before it).

The built-in local model ``tinkex/tiny-llama`` is untrained, so its text is noise; the calls
and the shapes of the answers are those of any model. Locally::

    python examples/sampling.py --prompt "Hello" --num-samples 4

against the hosted service::

    TINKER_API_KEY=... python examples/sampling.py --base-model meta-llama/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import os
import statistics

from tinkex import ModelInput, SamplingParams
from tinkex.backend import open_service


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompt", default="The meaning of life is")
    parser.add_argument("--num-samples", type=int, default=4, help="completions to draw")
    parser.add_argument("--max-tokens", type=int, default=24, help="tokens per completion")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1, help="sampling seed (reproducible)")
    parser.add_argument(
        "--base-model",
        default=os.environ.get("TINKER_BASE_MODEL", "tinkex/tiny-llama"),
        help="base model (env TINKER_BASE_MODEL; default tinkex/tiny-llama, the local one)",
    )
    args = parser.parse_args()
    if args.num_samples < 1:
        parser.error(f"--num-samples must be at least 1, got {args.num_samples}")
    return args


def main() -> None:
    args = parse_args()
    with open_service(announce=print) as service:
        capabilities = service.get_server_capabilities().result()
        names = [model.model_name or "?" for model in capabilities.supported_models]
        print(f"the server serves: {', '.join(names)}")

        sampler = service.create_sampling_client(base_model=args.base_model).result()
        tokenizer = sampler.get_tokenizer()
        prompt = ModelInput.from_ints(tokenizer.encode(args.prompt))
        params = SamplingParams(
            max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
        )
        response = sampler.sample(prompt, num_samples=args.num_samples, sampling_params=params)
        for index, sequence in enumerate(response.result().sequences, start=1):
            text = tokenizer.decode(sequence.tokens, skip_special_tokens=True)
            mean = statistics.fmean(sequence.logprobs) if sequence.logprobs else float("nan")
            print(
                f"sample {index}: {args.prompt + text!r}  "
                f"({len(sequence.tokens)} tokens, stop: {sequence.stop_reason}, "
                f"mean logprob {mean:.2f})"
            )

        logprobs = sampler.compute_logprobs(prompt).result()
        print(f"prompt logprobs ({len(logprobs)} tokens; the first has no context):")
        for token, logprob in zip(prompt.to_ints(), logprobs, strict=True):
            shown = "None" if logprob is None else f"{logprob:.2f}"
            print(f"  {tokenizer.decode([token])!r:>8} {shown}")


if __name__ == "__main__":
    main()

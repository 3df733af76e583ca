"""Sampling for ``tinkex run``: one prompt, one request, the answer as text or raw JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tinkex.clients import SamplingClient, ServiceClient
from tinkex.tokenizers import Tokenizer
from tinkex.types import ModelInput, SampleResponse, SamplingParams

from .deadline import Deadline
from .output import json_text

__all__ = ["SampleJob", "Sampled", "render_json", "render_text"]


@dataclass(frozen=True)
class SampleJob:
    """What to sample from, and how."""

    base_model: str | None
    model_path: str | None
    prompt: str | list[int]
    params: SamplingParams
    num_samples: int
    prompt_logprobs: bool
    topk_prompt_logprobs: int
    tokenizer_id: str | None

    def run(self, service: ServiceClient, deadline: Deadline) -> Sampled:
        """Create the sampler and sample (tokenizing a text prompt on the way)."""
        sampler = deadline.wait(
            service.create_sampling_client(model_path=self.model_path, base_model=self.base_model),
            f"a sampler of {self.model_path or self.base_model}",
        )
        ids = (
            self.tokenizer(sampler).encode(self.prompt)
            if isinstance(self.prompt, str)
            else self.prompt
        )
        response = deadline.wait(
            sampler.sample(
                ModelInput.from_ints(ids),
                self.num_samples,
                self.params,
                include_prompt_logprobs=self.prompt_logprobs or self.topk_prompt_logprobs > 0,
                topk_prompt_logprobs=self.topk_prompt_logprobs,
            ),
            "the samples",
        )
        return Sampled(response, ids, sampler)

    def tokenizer(self, sampler: SamplingClient) -> Tokenizer:
        """``--tokenizer``, or the sampled model's own (cached per process)."""
        if self.tokenizer_id:
            return sampler.get_tokenizer(tokenizer_id=self.tokenizer_id)
        return sampler.get_tokenizer()


@dataclass(frozen=True)
class Sampled:
    """The server's answer, the prompt's token ids, and the sampler that answered."""

    response: SampleResponse
    prompt: list[int]
    sampler: SamplingClient


def render_json(response: SampleResponse) -> str:
    """The server's answer as JSON, every field included."""
    return json_text(response) + "\n"


def render_text(response: SampleResponse, prompt: Sequence[int], tokenizer: Tokenizer) -> str:
    """Each sample's text with its stop reason and mean logprob; then the prompt's logprobs."""
    lines: list[str] = []
    for number, sequence in enumerate(response.sequences, start=1):
        facts = [f"stop_reason={sequence.stop_reason}", f"tokens={len(sequence.tokens)}"]
        if sequence.logprobs:
            facts.append(f"avg_logprob={sum(sequence.logprobs) / len(sequence.logprobs):.4f}")
        lines.append(f"Sample {number} ({', '.join(facts)}):")
        lines.append(tokenizer.decode(sequence.tokens, skip_special_tokens=True))
        lines.append("")
    if response.prompt_logprobs is not None:
        lines.append("Prompt logprobs (position, token, logprob[, top-k]):")
        topk = response.topk_prompt_logprobs or []
        for position, (token, logprob) in enumerate(
            zip(prompt, response.prompt_logprobs, strict=False)
        ):
            shown = "-" if logprob is None else f"{logprob:.4f}"
            row = f"{position:>5}  {_token(tokenizer, token):<12}  {shown}"
            alternatives = topk[position] if position < len(topk) else None
            if alternatives:
                row += "  top: " + ", ".join(
                    f"{_token(tokenizer, t)} {lp:.4f}" for t, lp in alternatives
                )
            lines.append(row)
    return "\n".join(lines).rstrip("\n") + "\n"


def _token(tokenizer: Tokenizer, token: int) -> str:
    return repr(tokenizer.decode([token]))

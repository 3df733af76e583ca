"""Sampling-side wire types."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import WireModel

StopReason = Literal["stop", "length"]


class SamplingParams(WireModel):
    """How to sample. ``stop=None`` stops at EOS; ``[]`` disables every stop, EOS included."""

    max_tokens: int | None = Field(default=None, ge=0)
    seed: int | None = None
    stop: str | list[str] | list[int] | None = None
    temperature: float = Field(default=1.0, ge=0.0)
    top_k: int = -1
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)


class SampledSequence(WireModel):
    stop_reason: StopReason
    tokens: list[int]
    logprobs: list[float] | None = None
    topk_logprobs: list[list[tuple[int, float]]] | None = None
    sequence_id: str | None = None


class SampleResponse(WireModel):
    """Sampled sequences and, when asked for, the prompt's logprobs (position 0 is None)."""

    type: Literal["sample"] = "sample"
    sequences: list[SampledSequence]
    prompt_logprobs: list[float | None] | None = None
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
    prompt_cache_hit_tokens: int = 0

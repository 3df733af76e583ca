"""A loaded base model: frozen decoder weights plus the tokenizer facts the server needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Tokenizer

from .config import ModelConfig
from .llama import DecoderWeights, decoder_hidden, unembed

__all__ = ["BaseModel"]


class BaseModel:
    """Frozen weights (``requires_grad=False``) shared by every trainer and sampler built on
    them, with the tokenizer and the token ids that matter for sampling."""

    def __init__(
        self,
        *,
        name: str,
        weights: DecoderWeights,
        tokenizer: Tokenizer,
        tokenizer_id: str,
        eos_token_ids: Sequence[int],
        bos_token_id: int | None,
        max_context_length: int,
    ) -> None:
        self.name = name
        self.weights = weights
        self.tokenizer = tokenizer
        self.tokenizer_id = tokenizer_id
        self.eos_token_ids: tuple[int, ...] = tuple(eos_token_ids)
        self.bos_token_id = bos_token_id
        self.max_context_length = max_context_length

    @property
    def config(self) -> ModelConfig:
        return self.weights.config

    @property
    def arch(self) -> str:
        return self.weights.config.arch

    @property
    def vocab_size(self) -> int:
        return self.weights.config.vocab_size

    @property
    def num_parameters(self) -> int:
        return self.weights.num_parameters

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Base-model logits ``[B, T, vocab]`` for int64 ``tokens`` ``[B, T]`` (no grad)."""
        with torch.no_grad():
            return unembed(self.weights, None, decoder_hidden(self.weights, None, tokens))

    def __repr__(self) -> str:
        return (
            f"BaseModel(name={self.name!r}, arch={self.arch!r}, vocab_size={self.vocab_size}, "
            f"max_context_length={self.max_context_length})"
        )

"""``tinkex/zero``: a built-in base model that does no model compute, for benchmarking clients.

It exists so that a benchmark (``benchmarks/sampling_concurrency.py``) can drive
``tinkex serve`` with many requests and measure the *client* (its CPU, threads and memory)
rather than the server's torch work. It is served only when asked for
(``--model tinkex/zero``), never by default.

It goes through the same code paths as a real model: the catalog loads it with
:func:`~tinkex.local.model.load_base_model`, and :class:`~tinkex.local.model.Sampler` and
:class:`~tinkex.local.model.TrainableModel` validate their inputs exactly as for a real model.
Only the decoder is skipped: where a real model would run, :class:`ZeroModel` answers in time
proportional to the size of the output, with no matrix products:

* **sampling** draws byte tokens (ids 0-255) uniformly from a generator seeded with the
  request's ``seed`` (temperature 0 uses seed 0), so the same request gives the same tokens;
  ``max_tokens``, ``stop`` and ``num_samples`` are honoured as usual (EOS is never drawn, so
  with ``stop=None`` every sequence runs to ``max_tokens``). Every sampled and prompt token
  gets the logprob :data:`ZERO_LOGPROB` (``-log 256``); ``temperature``, ``top_k`` and
  ``top_p`` are otherwise ignored;
* **forward / forward_backward** give every token the logprob :data:`ZERO_LOGPROB` and apply
  the real loss function to it, so ``elementwise_loss`` and ``loss:sum`` follow the loss and
  its inputs (``weights``, ``advantages``, ...). There is no gradient: ``optim_step`` sees a
  zero gradient (only weight decay moves the adapters).

Its LoRA adapters are real (tiny) tensors, so checkpoints, ``get_info`` and samplers on saved
weights work unchanged. The context length is :data:`ZERO_CONTEXT` tokens.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from tinkex.tokenizers.builtin import (
    BYTE_TOKENIZER_ID,
    BYTE_VOCAB_SIZE,
    build_byte_tokenizer,
    byte_tokenizer_special_ids,
)

from .base import BaseModel
from .config import ModelConfig
from .llama import DecoderWeights, expected_weight_shapes

__all__ = [
    "ZERO_CONTEXT",
    "ZERO_LOGPROB",
    "ZERO_MODEL",
    "ZeroModel",
    "load_zero_model",
    "zero_prompt_logprobs",
    "zero_tokens",
    "zero_topk_prompt_logprobs",
]

ZERO_MODEL = "tinkex/zero"
ZERO_CONTEXT = 32768
_DRAWN_VOCAB = 256  # byte tokens only: the specials (EOS among them) are never drawn
ZERO_LOGPROB = float(np.float32(-math.log(_DRAWN_VOCAB)))
"""The logprob of every token, sampled or scored: uniform over the 256 byte tokens."""


def zero_config() -> ModelConfig:
    """A one-layer decoder of width 8 over the byte tokenizer: only its shape is used (the
    LoRA adapters are sized from it), never its weights."""
    return ModelConfig(
        arch="LlamaForCausalLM",
        vocab_size=BYTE_VOCAB_SIZE,
        hidden_size=8,
        intermediate_size=8,
        num_layers=1,
        num_heads=1,
        num_kv_heads=1,
        head_dim=8,
        max_position_embeddings=ZERO_CONTEXT,
        tie_word_embeddings=True,
    )


class ZeroModel(BaseModel):
    """A :class:`BaseModel` whose samplers and trainers skip the decoder (see the module
    docstring). Its weights exist only so that LoRA adapters have shapes."""

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Uniform logits over the byte tokens (``-inf`` for the specials)."""
        logits = torch.zeros(*tokens.shape, self.vocab_size)
        logits[..., _DRAWN_VOCAB:] = -math.inf
        return logits


def load_zero_model(name: str = ZERO_MODEL, max_context_length: int | None = None) -> ZeroModel:
    config = zero_config()
    special = byte_tokenizer_special_ids()
    tensors = {key: torch.zeros(shape) for key, shape in expected_weight_shapes(config).items()}
    context = config.max_position_embeddings
    if max_context_length is not None:
        context = min(context, max_context_length)
    return ZeroModel(
        name=name,
        weights=DecoderWeights(config, tensors),
        tokenizer=build_byte_tokenizer(),
        tokenizer_id=BYTE_TOKENIZER_ID,
        eos_token_ids=(special["<|eos|>"],),
        bos_token_id=special["<|bos|>"],
        max_context_length=context,
    )


def zero_tokens(seed: int | None, num_samples: int, length: int) -> npt.NDArray[np.int32]:
    """``[num_samples, length]`` byte tokens from a generator seeded with ``seed`` (``None``:
    fresh randomness)."""
    rng = np.random.default_rng(None if seed is None else seed % (1 << 63))
    return rng.integers(0, _DRAWN_VOCAB, size=(num_samples, length), dtype=np.int32)


def zero_prompt_logprobs(length: int) -> npt.NDArray[np.float32]:
    """Prompt logprobs: NaN at position 0, :data:`ZERO_LOGPROB` after it."""
    out = np.full(length, ZERO_LOGPROB, dtype=np.float32)
    out[0] = np.nan
    return out


def zero_topk_prompt_logprobs(
    length: int, k: int, sentinel: float
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Top-``k`` prompt logprobs: row 0 empty (id 0, ``sentinel``), later rows the ids
    ``0..k-1`` at :data:`ZERO_LOGPROB` (cells beyond the 256 byte tokens empty)."""
    ids = np.zeros((length, k), dtype=np.int32)
    lps = np.full((length, k), sentinel, dtype=np.float32)
    filled = min(k, _DRAWN_VOCAB)
    ids[1:, :filled] = np.arange(filled, dtype=np.int32)
    lps[1:, :filled] = ZERO_LOGPROB
    return ids, lps

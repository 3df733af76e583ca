"""Autoregressive sampling with a KV cache, for a base model with optional LoRA weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .base import BaseModel
from .errors import ModelInputError
from .llama import Adapters, KVCache, decoder_hidden, unembed
from .lora import LoraWeights
from .zero import (
    ZERO_LOGPROB,
    ZeroModel,
    zero_prompt_logprobs,
    zero_tokens,
    zero_topk_prompt_logprobs,
)

__all__ = ["TOPK_SENTINEL_LOGPROB", "SampleOutput", "SampledSeq", "Sampler"]

TOPK_SENTINEL_LOGPROB = -99999.0
"""Logprob of an empty top-k cell (its token id is 0); row 0 of the prompt top-k is empty."""

StopReason = Literal["stop", "length"]
_INITIAL_CACHE_TOKENS = 128


@dataclass(frozen=True)
class SampledSeq:
    tokens: np.ndarray  # int32 [n]
    logprobs: np.ndarray  # float32 [n]
    stop_reason: StopReason


@dataclass(frozen=True)
class SampleOutput:
    sequences: list[SampledSeq]
    prompt_logprobs: np.ndarray | None  # float32 [P], NaN at position 0
    topk_prompt_logprobs: tuple[np.ndarray, np.ndarray] | None  # int32 [P, K], float32 [P, K]


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _parse_stop(
    stop: str | Sequence[str] | Sequence[int] | None, eos: tuple[int, ...], vocab_size: int
) -> tuple[frozenset[int], tuple[str, ...]]:
    if stop is None:
        return frozenset(eos), ()
    items: list[object] = [stop] if isinstance(stop, str) else list(stop)
    if all(isinstance(s, str) for s in items):
        strings = tuple(str(s) for s in items)
        if any(not s for s in strings):
            raise ModelInputError("stop: stop strings must be non-empty")
        return frozenset(), strings
    if all(_is_int(s) for s in items):
        ids = [int(s) for s in items]  # type: ignore[call-overload]
        for token in ids:
            if not 0 <= token < vocab_size:
                raise ModelInputError(
                    f"stop: token id {token} is outside the vocabulary [0, {vocab_size})"
                )
        return frozenset(ids), ()
    raise ModelInputError(
        f"stop must be None, a string, a list of strings or a list of token ids, got {stop!r}"
    )


def _filtered_probs(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """Sampling weights ``[n, V]`` after temperature, then top-k, then nucleus filtering."""
    scaled = logits / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    probs = torch.softmax(scaled, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return probs


class Sampler:
    """Samples from ``base`` with ``lora`` applied (or from the base model alone).

    Cheap to build (weights are shared, never copied or merged) and stateless between calls,
    so one instance may serve concurrent :meth:`sample` calls from several threads.
    """

    def __init__(self, base: BaseModel, lora: LoraWeights | None = None) -> None:
        if lora is not None and not lora.compatible_with(base):
            raise ValueError(
                f"LoRA weights of base model {lora.base_name!r} do not fit base model {base.name!r}"
            )
        self.base = base
        self.lora = lora
        self._adapters: Adapters | None = lora.adapters if lora is not None else None

    def sample(
        self,
        prompt: np.ndarray,
        *,
        num_samples: int,
        max_tokens: int | None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        seed: int | None = None,
        stop: str | Sequence[str] | Sequence[int] | None = None,
        prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> SampleOutput:
        """Sample ``num_samples`` continuations of ``prompt`` (int token ids).

        * ``max_tokens=None`` samples up to the context limit; a ``max_tokens`` beyond it is
          cut to the room left. Running out of tokens gives ``stop_reason="length"``.
        * ``stop=None`` stops at the model's EOS token(s); an explicit ``stop`` replaces
          that default: ``[]`` never stops, a list of token ids stops at any of them, strings
          stop once the decoded completion contains one of them. The token that triggered the
          stop is kept in ``tokens`` (``stop_reason="stop"``).
        * ``temperature=0`` is greedy; otherwise temperature, then ``top_k`` (-1 or 0: no
          limit), then ``top_p`` filter the distribution. ``seed`` makes the draw
          reproducible (``None``: fresh randomness).
        * ``logprobs`` of sampled tokens, and all prompt logprobs, are under the raw model
          distribution (temperature 1, no filtering): the same numbers a ``forward`` of the
          same weights reports, so importance ratios start at 1.
        * ``prompt_logprobs=True`` gives ``log p(prompt[t] | prompt[:t])`` (NaN at 0);
          ``topk_prompt_logprobs=K`` gives the K most likely tokens at each prompt position
          (row 0 is the sentinel ``(0, -99999.0)``).
        """
        base = self.base
        vocab = base.vocab_size
        tokens = np.asarray(prompt)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ModelInputError(
                f"prompt must be a non-empty 1-D array of token ids, got shape {tokens.shape}"
            )
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ModelInputError(f"prompt must hold integer token ids, not {tokens.dtype}")
        bad = tokens[(tokens < 0) | (tokens >= vocab)]
        if bad.size:
            raise ModelInputError(
                f"prompt token id {int(bad[0])} is outside the vocabulary [0, {vocab})"
            )
        length = int(tokens.size)
        context = base.max_context_length
        if length > context:
            raise ModelInputError(
                f"prompt has {length} tokens, more than the context length {context} of "
                f"{base.name!r}"
            )
        if not _is_int(num_samples) or num_samples < 1:
            raise ModelInputError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 0):
            raise ModelInputError(f"max_tokens must be None or an integer >= 0, got {max_tokens!r}")
        if not _is_number(temperature) or not math.isfinite(temperature) or temperature < 0:
            raise ModelInputError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise ModelInputError(f"top_p must be in (0, 1], got {top_p!r}")
        if not _is_int(top_k) or top_k < -1:
            raise ModelInputError(
                f"top_k must be -1 or 0 (no limit) or an integer >= 1, got {top_k!r}"
            )
        if seed is not None and not _is_int(seed):
            raise ModelInputError(f"seed must be an integer or None, got {seed!r}")
        if not _is_int(topk_prompt_logprobs) or topk_prompt_logprobs < 0:
            raise ModelInputError(
                f"topk_prompt_logprobs must be an integer >= 0, got {topk_prompt_logprobs!r}"
            )
        stop_ids, stop_strings = _parse_stop(stop, base.eos_token_ids, vocab)
        room = context - length
        budget = room if max_tokens is None else min(int(max_tokens), room)
        if budget == 0 and (max_tokens is None or max_tokens > 0):
            raise ModelInputError(
                f"prompt has {length} tokens, which fills the context length {context} of "
                f"{base.name!r}; no room to sample"
            )
        if isinstance(base, ZeroModel):
            return self._run_zero(
                length,
                num_samples=int(num_samples),
                budget=budget,
                seed=0 if temperature == 0 else seed,
                stop_ids=stop_ids,
                stop_strings=stop_strings,
                want_prompt_logprobs=bool(prompt_logprobs),
                topk=int(topk_prompt_logprobs),
            )
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed) % (1 << 63))
        with torch.no_grad():
            return self._run(
                torch.from_numpy(tokens.astype(np.int64)),
                num_samples=int(num_samples),
                budget=budget,
                temperature=float(temperature),
                top_p=float(top_p),
                top_k=int(top_k),
                generator=generator,
                stop_ids=stop_ids,
                stop_strings=stop_strings,
                want_prompt_logprobs=bool(prompt_logprobs),
                topk=int(topk_prompt_logprobs),
            )

    def _run_zero(
        self,
        length: int,
        *,
        num_samples: int,
        budget: int,
        seed: int | None,
        stop_ids: frozenset[int],
        stop_strings: tuple[str, ...],
        want_prompt_logprobs: bool,
        topk: int,
    ) -> SampleOutput:
        """:class:`ZeroModel`: seeded byte tokens and constant logprobs, no decoder."""
        prompt_lp = zero_prompt_logprobs(length) if want_prompt_logprobs else None
        topk_out = zero_topk_prompt_logprobs(length, topk, TOPK_SENTINEL_LOGPROB) if topk else None
        drawn = zero_tokens(None if seed is None else int(seed), num_samples, budget)
        stop_array = np.fromiter(stop_ids, dtype=np.int32, count=len(stop_ids))
        window = 4 * max((len(s) for s in stop_strings), default=0) + 8
        sequences = []
        for row in drawn:
            end: int | None = None  # one past the stopping token
            if stop_array.size:
                hits = np.flatnonzero(np.isin(row, stop_array))
                end = int(hits[0]) + 1 if hits.size else None
            if stop_strings:
                tokens = row[: budget if end is None else end].tolist()
                for step in range(len(tokens)):
                    tail = self.base.tokenizer.decode(tokens[max(0, step + 1 - window) : step + 1])
                    if any(s in tail for s in stop_strings):
                        end = step + 1
                        break
            reason: StopReason = "length" if end is None else "stop"
            kept = row[: budget if end is None else end].copy()
            sequences.append(SampledSeq(kept, np.full(kept.size, ZERO_LOGPROB, np.float32), reason))
        return SampleOutput(sequences, prompt_lp, topk_out)

    def _run(
        self,
        prompt: torch.Tensor,
        *,
        num_samples: int,
        budget: int,
        temperature: float,
        top_p: float,
        top_k: int,
        generator: torch.Generator,
        stop_ids: frozenset[int],
        stop_strings: tuple[str, ...],
        want_prompt_logprobs: bool,
        topk: int,
    ) -> SampleOutput:
        weights, adapters = self.base.weights, self._adapters
        length = prompt.numel()
        wants_prompt = want_prompt_logprobs or topk > 0
        if budget == 0 and not wants_prompt:
            empty = SampledSeq(np.zeros(0, np.int32), np.zeros(0, np.float32), "length")
            return SampleOutput([empty] * num_samples, None, None)
        # Start small and let the cache grow: max_tokens=None on a long-context checkpoint
        # must not allocate the whole context for every sample up front.
        capacity = length + min(budget, _INITIAL_CACHE_TOKENS)
        cache = KVCache(weights.config, num_samples, capacity) if budget else None
        hidden = decoder_hidden(weights, adapters, prompt.unsqueeze(0), cache=cache)
        prompt_lp: np.ndarray | None = None
        topk_out: tuple[np.ndarray, np.ndarray] | None = None
        if wants_prompt:
            all_lp = torch.log_softmax(unembed(weights, adapters, hidden[0, :-1]), dim=-1)
            if want_prompt_logprobs:
                prompt_lp = np.full(length, np.nan, dtype=np.float32)
                picked = all_lp.gather(-1, prompt[1:].unsqueeze(-1)).squeeze(-1)
                prompt_lp[1:] = picked.numpy()
            if topk > 0:
                ids = np.zeros((length, topk), dtype=np.int32)
                lps = np.full((length, topk), TOPK_SENTINEL_LOGPROB, dtype=np.float32)
                k = min(topk, all_lp.shape[-1])
                if length > 1:
                    best = torch.topk(all_lp, k, dim=-1)
                    ids[1:, :k] = best.indices.numpy()
                    lps[1:, :k] = best.values.numpy()
                topk_out = (ids, lps)
        if cache is None:
            empty = SampledSeq(np.zeros(0, np.int32), np.zeros(0, np.float32), "length")
            return SampleOutput([empty] * num_samples, prompt_lp, topk_out)

        logits = unembed(weights, adapters, hidden[:, -1]).expand(num_samples, -1)
        out_tokens: list[list[int]] = [[] for _ in range(num_samples)]
        out_logprobs: list[list[float]] = [[] for _ in range(num_samples)]
        reasons: list[StopReason] = ["length"] * num_samples
        active = list(range(num_samples))
        window = 4 * max((len(s) for s in stop_strings), default=0) + 8
        tokenizer = self.base.tokenizer
        for step in range(budget):
            raw_lp = torch.log_softmax(logits, dim=-1)
            if temperature == 0.0:
                chosen = torch.argmax(logits, dim=-1)
            else:
                probs = _filtered_probs(logits, temperature, top_k, top_p)
                chosen = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            chosen_lp = raw_lp.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
            keep: list[int] = []
            for row, (seq, token, lp) in enumerate(
                zip(active, chosen.tolist(), chosen_lp.tolist(), strict=True)
            ):
                out_tokens[seq].append(token)
                out_logprobs[seq].append(lp)
                stopped = token in stop_ids
                if not stopped and stop_strings:
                    tail = tokenizer.decode(out_tokens[seq][-window:])
                    stopped = any(s in tail for s in stop_strings)
                if stopped:
                    reasons[seq] = "stop"
                else:
                    keep.append(row)
            if not keep or step == budget - 1:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, dtype=torch.int64)
                cache.keep_rows(rows)
                chosen = chosen.index_select(0, rows)
                active = [active[r] for r in keep]
            hidden = decoder_hidden(weights, adapters, chosen.unsqueeze(-1), cache=cache)
            logits = unembed(weights, adapters, hidden[:, -1])
        sequences = [
            SampledSeq(
                tokens=np.asarray(out_tokens[i], dtype=np.int32),
                logprobs=np.asarray(out_logprobs[i], dtype=np.float32),
                stop_reason=reasons[i],
            )
            for i in range(num_samples)
        ]
        return SampleOutput(sequences, prompt_lp, topk_out)

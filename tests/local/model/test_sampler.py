"""Sampling: reproducible draws, every kind of stop, length limits, greedy decoding, and a
KV-cached decode that agrees with full forward passes (and with training's forward)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from tinkex.local.model import (
    TOPK_SENTINEL_LOGPROB,
    BaseModel,
    DatumArrays,
    LoraSpec,
    LoraWeights,
    Sampler,
    TrainableModel,
)
from tinkex.local.model.llama import decoder_hidden, unembed

from .helpers import random_lora

SPEC = LoraSpec(rank=4, seed=0)
PROMPT = np.array([256, *b"Once upon a time"], dtype=np.int64)


@pytest.fixture(scope="module")
def lora(base: BaseModel) -> LoraWeights:
    return random_lora(base, SPEC, std=0.1)


@pytest.fixture(scope="module")
def sampler(base: BaseModel, lora: LoraWeights) -> Sampler:
    return Sampler(base, lora)


def _full_logprobs(base: BaseModel, lora: LoraWeights | None, tokens: np.ndarray) -> torch.Tensor:
    """Log-softmax ``[T, V]`` from one uncached forward pass over ``tokens``."""
    adapters = lora.adapters if lora is not None else None
    with torch.no_grad():
        ids = torch.from_numpy(tokens.astype(np.int64))[None]
        hidden = decoder_hidden(base.weights, adapters, ids)
        return torch.log_softmax(unembed(base.weights, adapters, hidden)[0], dim=-1)


def test_same_seed_same_tokens(sampler: Sampler) -> None:
    kwargs = {"num_samples": 3, "max_tokens": 20, "stop": [], "temperature": 1.0}
    a = sampler.sample(PROMPT, seed=42, **kwargs)  # type: ignore[arg-type]
    b = sampler.sample(PROMPT, seed=42, **kwargs)  # type: ignore[arg-type]
    c = sampler.sample(PROMPT, seed=43, **kwargs)  # type: ignore[arg-type]
    for x, y in zip(a.sequences, b.sequences, strict=True):
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_array_equal(x.logprobs, y.logprobs)
    assert [s.tokens.tolist() for s in a.sequences] != [s.tokens.tolist() for s in c.sequences]
    assert len({tuple(s.tokens) for s in a.sequences}) == 3  # the samples differ from each other


def test_sampling_leaves_global_rng_alone(sampler: Sampler) -> None:
    state = torch.random.get_rng_state()
    sampler.sample(PROMPT, num_samples=2, max_tokens=5, seed=None)
    sampler.sample(PROMPT, num_samples=2, max_tokens=5, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_output_types_and_max_tokens(sampler: Sampler) -> None:
    out = sampler.sample(PROMPT, num_samples=2, max_tokens=7, stop=[], seed=0)
    assert out.prompt_logprobs is None and out.topk_prompt_logprobs is None
    for seq in out.sequences:
        assert seq.stop_reason == "length"
        assert seq.tokens.dtype == np.int32 and seq.tokens.shape == (7,)
        assert seq.logprobs.dtype == np.float32 and seq.logprobs.shape == (7,)
        assert (seq.logprobs <= 0).all()


def test_max_tokens_none_runs_to_the_context_limit(base: BaseModel, sampler: Sampler) -> None:
    prompt = np.full(500, 65, dtype=np.int64)
    out = sampler.sample(prompt, num_samples=1, max_tokens=None, stop=[], seed=0)
    assert out.sequences[0].stop_reason == "length"
    assert out.sequences[0].tokens.size == base.max_context_length - 500
    clipped = sampler.sample(prompt, num_samples=1, max_tokens=100, stop=[], seed=0)
    assert clipped.sequences[0].tokens.size == 12


def test_max_tokens_zero_still_scores_the_prompt(sampler: Sampler) -> None:
    out = sampler.sample(PROMPT, num_samples=2, max_tokens=0, prompt_logprobs=True)
    assert [s.tokens.size for s in out.sequences] == [0, 0]
    assert all(s.stop_reason == "length" for s in out.sequences)
    assert out.prompt_logprobs is not None and out.prompt_logprobs.shape == PROMPT.shape


def _reference_run(sampler: Sampler, seed: int) -> np.ndarray:
    return (
        sampler.sample(PROMPT, num_samples=1, max_tokens=40, stop=[], seed=seed).sequences[0].tokens
    )


def test_stop_token_ids_are_included(sampler: Sampler) -> None:
    tokens = _reference_run(sampler, seed=5)
    stop_token = int(tokens[10])
    cut = int(np.flatnonzero(tokens == stop_token)[0])
    out = sampler.sample(PROMPT, num_samples=1, max_tokens=40, stop=[stop_token, 258], seed=5)
    seq = out.sequences[0]
    assert seq.stop_reason == "stop"
    np.testing.assert_array_equal(seq.tokens, tokens[: cut + 1])


def test_stop_none_means_eos(base: BaseModel, lora: LoraWeights) -> None:
    tokens = _reference_run(Sampler(base, lora), seed=6)
    eos = int(tokens[8])
    cut = int(np.flatnonzero(tokens == eos)[0])
    with_eos = copy.copy(base)
    with_eos.eos_token_ids = (eos,)
    sampler = Sampler(with_eos, lora)
    seq = sampler.sample(PROMPT, num_samples=1, max_tokens=40, seed=6).sequences[0]
    assert seq.stop_reason == "stop"
    np.testing.assert_array_equal(seq.tokens, tokens[: cut + 1])
    # An explicit stop list replaces the EOS default; [] disables stopping altogether.
    seq = sampler.sample(PROMPT, num_samples=1, max_tokens=40, stop=[], seed=6).sequences[0]
    assert seq.stop_reason == "length" and seq.tokens.size == 40


def test_stop_strings(base: BaseModel, sampler: Sampler) -> None:
    tokens = _reference_run(sampler, seed=7)
    printable = [32 < t < 127 for t in tokens.tolist()]
    decode = base.tokenizer.decode

    # A one-character stop string (given as a bare str): cut right after its first occurrence.
    i = next(i for i in range(5, tokens.size) if printable[i])
    stop = chr(tokens[i])
    seq = sampler.sample(PROMPT, num_samples=1, max_tokens=40, stop=stop, seed=7).sequences[0]
    text = decode(seq.tokens.tolist())
    assert seq.stop_reason == "stop"
    assert text.endswith(stop) and stop not in text[:-1]
    assert seq.tokens.size <= i + 1
    np.testing.assert_array_equal(seq.tokens, tokens[: seq.tokens.size])

    # A two-character stop string spanning two tokens, listed with one that never occurs.
    j = next(j for j in range(tokens.size - 1) if printable[j] and printable[j + 1])
    pair = chr(tokens[j]) + chr(tokens[j + 1])
    seq = sampler.sample(
        PROMPT, num_samples=1, max_tokens=40, stop=["\x00never", pair], seed=7
    ).sequences[0]
    text = decode(seq.tokens.tolist())
    assert seq.stop_reason == "stop"
    assert text.endswith(pair) and pair not in text[:-1]
    assert seq.tokens.size <= j + 2
    np.testing.assert_array_equal(seq.tokens, tokens[: seq.tokens.size])


def test_greedy_is_argmax_of_a_full_recompute(base: BaseModel, lora: LoraWeights) -> None:
    sampler = Sampler(base, lora)
    out = sampler.sample(PROMPT, num_samples=2, max_tokens=16, temperature=0.0, stop=[], seed=1)
    again = sampler.sample(PROMPT, num_samples=1, max_tokens=16, temperature=0.0, stop=[], seed=9)
    seq = out.sequences[0]
    np.testing.assert_array_equal(seq.tokens, out.sequences[1].tokens)
    np.testing.assert_array_equal(seq.tokens, again.sequences[0].tokens)
    full = _full_logprobs(base, lora, np.concatenate([PROMPT, seq.tokens]))
    predicted = full[PROMPT.size - 1 : -1]
    np.testing.assert_array_equal(seq.tokens, predicted.argmax(-1).numpy())
    top_k_1 = sampler.sample(PROMPT, num_samples=1, max_tokens=16, top_k=1, stop=[], seed=3)
    np.testing.assert_array_equal(top_k_1.sequences[0].tokens, seq.tokens)
    tiny_p = sampler.sample(PROMPT, num_samples=1, max_tokens=16, top_p=1e-6, stop=[], seed=4)
    np.testing.assert_array_equal(tiny_p.sequences[0].tokens, seq.tokens)


def test_top_k_restricts_the_choice(base: BaseModel, lora: LoraWeights) -> None:
    sampler = Sampler(base, lora)
    out = sampler.sample(PROMPT, num_samples=8, max_tokens=1, top_k=3, temperature=5.0, seed=0)
    allowed = set(torch.topk(_full_logprobs(base, lora, PROMPT)[-1], 3).indices.tolist())
    assert {int(s.tokens[0]) for s in out.sequences} <= allowed


def test_kv_cache_decode_matches_full_recompute(base: BaseModel, lora: LoraWeights) -> None:
    """Sequences finish at different steps (the cache drops their rows); every sampled
    token's logprob must still match a fresh uncached forward pass."""
    sampler = Sampler(base, lora)
    stop_tokens = [int(t) for t in range(97, 110)]
    out = sampler.sample(PROMPT, num_samples=6, max_tokens=30, stop=stop_tokens, seed=11)
    lengths = {s.tokens.size for s in out.sequences}
    assert len(lengths) > 1, "want sequences of different lengths"
    for seq in out.sequences:
        full = _full_logprobs(base, lora, np.concatenate([PROMPT, seq.tokens]))
        picked = full[PROMPT.size - 1 : -1].gather(
            -1, torch.from_numpy(seq.tokens.astype(np.int64))[:, None]
        )
        np.testing.assert_allclose(seq.logprobs, picked[:, 0].numpy(), atol=2e-4)
        if seq.stop_reason == "stop":
            assert int(seq.tokens[-1]) in stop_tokens
            assert not set(seq.tokens[:-1].tolist()) & set(stop_tokens)


def test_long_decode_grows_the_cache(base: BaseModel, lora: LoraWeights) -> None:
    seq = Sampler(base, lora).sample(PROMPT, num_samples=1, max_tokens=300, stop=[], seed=2)
    tokens = seq.sequences[0].tokens
    assert tokens.size == 300
    full = _full_logprobs(base, lora, np.concatenate([PROMPT, tokens]))
    picked = full[PROMPT.size - 1 : -1].gather(
        -1, torch.from_numpy(tokens.astype(np.int64))[:, None]
    )
    np.testing.assert_allclose(seq.sequences[0].logprobs, picked[:, 0].numpy(), atol=2e-4)


def test_prompt_logprobs_equal_training_forward(base: BaseModel, lora: LoraWeights) -> None:
    sampler = Sampler(base, lora)
    out = sampler.sample(
        PROMPT, num_samples=1, max_tokens=1, prompt_logprobs=True, topk_prompt_logprobs=5
    )
    assert out.prompt_logprobs is not None and out.prompt_logprobs.dtype == np.float32
    assert np.isnan(out.prompt_logprobs[0])
    trainer = TrainableModel(base, SPEC)
    trainer.load_adapter_state(lora.state_dict())
    forward = trainer.forward_backward(
        [DatumArrays(PROMPT[:-1], {"target_tokens": PROMPT[1:]})],
        "cross_entropy",
        forward_only=True,
    )
    np.testing.assert_allclose(out.prompt_logprobs[1:], forward.outputs[0]["logprobs"], atol=1e-5)

    assert out.topk_prompt_logprobs is not None
    ids, lps = out.topk_prompt_logprobs
    assert ids.dtype == np.int32 and lps.dtype == np.float32
    assert ids.shape == lps.shape == (PROMPT.size, 5)
    assert (ids[0] == 0).all() and (lps[0] == TOPK_SENTINEL_LOGPROB).all()
    assert (np.diff(lps[1:], axis=1) <= 0).all()
    assert (lps[1:, 0] >= out.prompt_logprobs[1:] - 1e-6).all()
    full = _full_logprobs(base, lora, PROMPT)
    np.testing.assert_array_equal(ids[1:, 0], full[:-1].argmax(-1).numpy())


def test_topk_wider_than_the_vocabulary_is_padded(base: BaseModel) -> None:
    out = Sampler(base).sample(PROMPT[:3], num_samples=1, max_tokens=0, topk_prompt_logprobs=300)
    assert out.topk_prompt_logprobs is not None
    ids, lps = out.topk_prompt_logprobs
    assert ids.shape == (3, 300)
    assert (lps[1:, : base.vocab_size] > TOPK_SENTINEL_LOGPROB).all()
    assert (lps[:, base.vocab_size :] == TOPK_SENTINEL_LOGPROB).all()
    assert (ids[:, base.vocab_size :] == 0).all()
    np.testing.assert_allclose(np.exp(lps[1]).sum(where=lps[1] > -1e4), 1.0, rtol=1e-4)


def test_lora_changes_samples_and_must_fit_the_base(base: BaseModel, lora: LoraWeights) -> None:
    plain = Sampler(base).sample(PROMPT, num_samples=1, max_tokens=1, prompt_logprobs=True)
    adapted = Sampler(base, lora).sample(PROMPT, num_samples=1, max_tokens=1, prompt_logprobs=True)
    assert plain.prompt_logprobs is not None and adapted.prompt_logprobs is not None
    assert not np.allclose(plain.prompt_logprobs[1:], adapted.prompt_logprobs[1:])
    other = copy.copy(base)
    other.weights = copy.copy(base.weights)
    other.weights.config = dataclasses.replace(base.config, num_layers=2)
    with pytest.raises(ValueError, match="do not fit base model"):
        Sampler(other, lora)

"""HF-layout loading checked against ``transformers`` (a reference implementation used only
in tests): tiny random Llama, Qwen2 and Qwen3 checkpoints must give the same logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tinkex.local.model import DatumArrays, LoraSpec, Sampler, TrainableModel, load_base_model
from tinkex.local.model.llama import decoder_hidden, unembed
from tinkex.tokenizers import build_byte_tokenizer

from .helpers import random_lora

transformers = pytest.importorskip("transformers", reason="transformers is the reference")

TINY: dict[str, Any] = {
    "vocab_size": 259,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 256,
    "eos_token_id": 257,
}

CASES: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    # name: (config class, model class, extra config, max_shard_size)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": False}, None),
    "llama-bias-rope3": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "attention_bias": True,
            "mlp_bias": True,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 50000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
        None,
    ),
    "qwen2-sharded": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": False}, "60KB"),
    "qwen3-tied": ("Qwen3Config", "Qwen3ForCausalLM", {"tie_word_embeddings": True}, None),
}


def _save_hf_model(tmp_path: Path, case: str) -> tuple[Path, Any]:
    config_cls, model_cls, extra, shard = CASES[case]
    try:
        config = getattr(transformers, config_cls)(**TINY, **extra)
        model = getattr(transformers, model_cls)(config).eval()
    except Exception as exc:  # pragma: no cover - depends on the installed transformers
        pytest.skip(f"transformers cannot build {model_cls}: {exc}")
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * noise)  # norms and biases must matter too
            else:
                param.copy_(0.08 * noise)
    directory = tmp_path / case
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(directory, **kwargs)
    (directory / "tokenizer.json").write_text(build_byte_tokenizer().to_str())
    return directory, model


@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_logits_match_transformers(tmp_path: Path, case: str) -> None:
    directory, reference = _save_hf_model(tmp_path, case)
    if case == "qwen2-sharded":
        assert (directory / "model.safetensors.index.json").is_file()
    cfg = load_base_model(str(directory)).config
    assert cfg.qkv_bias == (case in ("qwen2-sharded", "llama-bias-rope3"))
    assert cfg.o_bias == cfg.mlp_bias == (case == "llama-bias-rope3")
    assert cfg.qk_norm == (case == "qwen3-tied") == cfg.tie_word_embeddings
    if case == "llama-bias-rope3":
        assert cfg.rope_scaling is not None and cfg.rope_scaling.kind == "llama3"
    loaded = load_base_model(str(directory))
    assert loaded.arch == CASES[case][1]
    assert loaded.name == loaded.tokenizer_id == str(directory)
    assert loaded.eos_token_ids == (257,) and loaded.bos_token_id == 256
    assert loaded.max_context_length == 128
    tokens = torch.randint(0, 259, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(tokens).logits
    got = loaded.logits(tokens)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["qwen2-sharded", "qwen3-tied"])
def test_hf_model_trains_and_samples_with_cache(tmp_path: Path, case: str) -> None:
    directory, _ = _save_hf_model(tmp_path, case)
    loaded = load_base_model(str(directory), name="tiny")
    assert loaded.tokenizer_id == "tiny"
    spec = LoraSpec(rank=4, seed=0)
    lora = random_lora(loaded, spec)
    out = Sampler(loaded, lora).sample(
        np.arange(5, 15), num_samples=2, max_tokens=12, stop=[], seed=3
    )
    for seq in out.sequences:
        full = torch.from_numpy(np.concatenate([np.arange(5, 15), seq.tokens]).astype(np.int64))
        with torch.no_grad():
            hidden = decoder_hidden(loaded.weights, lora.adapters, full[None])
            logp = torch.log_softmax(unembed(loaded.weights, lora.adapters, hidden)[0], -1)
        expected = logp[9:-1].gather(-1, full[10:, None]).squeeze(-1).numpy()
        np.testing.assert_allclose(seq.logprobs, expected, atol=1e-4)
    trainer = TrainableModel(loaded, spec)
    ids = np.arange(3, 20)
    result = trainer.forward_backward(
        [DatumArrays(ids[:-1], {"target_tokens": ids[1:]})], "cross_entropy", forward_only=False
    )
    assert result.metrics["loss:sum"] > 0

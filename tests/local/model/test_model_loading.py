"""Base models: the deterministic built-in one, and HF-layout directories checked against
``transformers`` (used here only as a reference implementation)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from model_helpers import random_lora
from safetensors.torch import save_file

from tinkex.local.model import (
    BUILTIN_MODEL,
    BaseModel,
    DatumArrays,
    LoraSpec,
    ModelInputError,
    Sampler,
    TrainableModel,
    load_base_model,
)
from tinkex.local.model.llama import decoder_hidden, unembed
from tinkex.tokenizers import BYTE_TOKENIZER_ID, build_byte_tokenizer

# sha256 over the built-in weights (name, then float32 bytes, in name order). Pins the
# "identical base weights in every process, on every machine" promise.
BUILTIN_WEIGHTS_SHA256 = "4e1d9e5e440202cda084368ffd197ed662a85abe9503b83015c398cf693c56ed"


def _weights_digest(model: BaseModel) -> str:
    digest = hashlib.sha256()
    for name in sorted(model.weights.tensors):
        digest.update(name.encode())
        digest.update(model.weights.tensors[name].numpy().tobytes())
    return digest.hexdigest()


def test_builtin_model_facts(base: BaseModel) -> None:
    assert base.name == BUILTIN_MODEL == "tinkex/tiny-llama"
    assert base.arch == "LlamaForCausalLM"
    assert base.tokenizer_id == BYTE_TOKENIZER_ID
    assert base.tokenizer is build_byte_tokenizer()
    assert base.vocab_size == 259
    assert base.eos_token_ids == (257,)
    assert base.bos_token_id == 256
    assert base.max_context_length == 512
    cfg = base.config
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == (128, 4, 4, 2)
    assert all(not t.requires_grad for t in base.weights.tensors.values())
    assert all(t.dtype == torch.float32 for t in base.weights.tensors.values())


def test_builtin_weights_are_deterministic(base: BaseModel) -> None:
    again = load_base_model(BUILTIN_MODEL, name="other-name")
    assert again.name == "other-name"
    for name, tensor in base.weights.tensors.items():
        assert torch.equal(tensor, again.weights.tensors[name]), name
    assert _weights_digest(base) == BUILTIN_WEIGHTS_SHA256


def test_builtin_context_cap() -> None:
    assert load_base_model(BUILTIN_MODEL, max_context_length=64).max_context_length == 64


def test_unknown_source_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ModelInputError, match="neither the built-in 'tinkex/tiny-llama'"):
        load_base_model("no/such-model")
    with pytest.raises(ModelInputError):
        load_base_model(str(tmp_path / "missing"))


# --- Hugging Face layout ---------------------------------------------------------------

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


def _write_dir(tmp_path: Path, config: dict[str, Any]) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_text(build_byte_tokenizer().to_str())
    return directory


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    directory, _ = _save_hf_model(tmp_path, "llama")
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"missing tokenizer\.json"):
        load_base_model(str(directory))
    (directory / "tokenizer.json").write_text(build_byte_tokenizer().to_str())
    (directory / "model.safetensors").rename(directory / "weights.bin")
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_base_model(str(directory))
    (directory / "config.json").unlink()
    with pytest.raises(ValueError, match=r"missing config\.json"):
        load_base_model(str(directory))


def test_loader_rejects_unknown_architecture(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, {**TINY, "architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(ValueError, match=r"config\.json: architecture 'GPT2LMHeadModel'"):
        load_base_model(str(directory))


def test_loader_rejects_unsupported_rope_and_activation(tmp_path: Path) -> None:
    base_cfg = {**TINY, "architectures": ["LlamaForCausalLM"]}
    directory = _write_dir(tmp_path, {**base_cfg, "rope_scaling": {"rope_type": "yarn"}})
    with pytest.raises(ValueError, match="rope scaling type 'yarn' is not supported"):
        load_base_model(str(directory))
    (directory / "config.json").write_text(json.dumps({**base_cfg, "hidden_act": "gelu"}))
    with pytest.raises(ValueError, match="hidden_act 'gelu'"):
        load_base_model(str(directory))


def test_loader_reports_missing_and_misshapen_tensors(tmp_path: Path) -> None:
    directory, model = _save_hf_model(tmp_path, "llama")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    missing = dict(state)
    del missing["model.layers.1.mlp.up_proj.weight"]
    save_file(missing, str(directory / "model.safetensors"))
    with pytest.raises(
        ValueError, match=re.escape("missing weight 'model.layers.1.mlp.up_proj.weight'")
    ):
        load_base_model(str(directory))
    bad = dict(state)
    bad["model.norm.weight"] = torch.ones(63)
    save_file(bad, str(directory / "model.safetensors"))
    with pytest.raises(
        ValueError, match=r"'model.norm.weight' has shape \(63,\), expected \(64,\)"
    ):
        load_base_model(str(directory))
    extra = dict(state)
    extra["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
    save_file(extra, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected"):
        load_base_model(str(directory))

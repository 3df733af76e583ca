"""Base models: the deterministic built-in one, and loading Hugging Face-layout directories
(written here from the built-in weights; ``test_hf_parity`` checks real HF checkpoints)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from tinkex.local.model import BUILTIN_MODEL, BaseModel, ModelInputError, load_base_model
from tinkex.tokenizers import BYTE_TOKENIZER_ID, build_byte_tokenizer

from .helpers import builtin_hf_config, save_builtin_as_hf

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


# --- Hugging Face layout, written from the built-in weights ------------------------------

TOKENS = torch.arange(0, 259, 7).reshape(1, -1)


@pytest.mark.parametrize(("shards", "tied"), [(1, True), (3, True), (2, False)])
def test_hf_directory_round_trip(base: BaseModel, tmp_path: Path, shards: int, tied: bool) -> None:
    config = builtin_hf_config(base) | {"tie_word_embeddings": tied}
    tensors = {
        k: v for k, v in base.weights.tensors.items() if tied is False or k != "lm_head.weight"
    }
    directory = save_builtin_as_hf(
        base, tmp_path / "m", shards=shards, config=config, tensors=dict(tensors)
    )
    if shards > 1:
        assert (directory / "model.safetensors.index.json").is_file()
    loaded = load_base_model(str(directory), name="my-model")
    assert loaded.name == loaded.tokenizer_id == "my-model"
    assert loaded.arch == "LlamaForCausalLM"
    assert loaded.eos_token_ids == (257,) and loaded.bos_token_id == 256
    assert loaded.max_context_length == 512
    assert loaded.config.tie_word_embeddings is tied
    assert torch.equal(loaded.logits(TOKENS), base.logits(TOKENS))
    assert load_base_model(str(directory)).name == str(directory)


def test_hf_directory_infers_tying_and_reads_generation_eos(
    base: BaseModel, tmp_path: Path
) -> None:
    config = builtin_hf_config(base)
    del config["tie_word_embeddings"]
    directory = save_builtin_as_hf(base, tmp_path / "m", config=config)
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [257, 258]}))
    loaded = load_base_model(str(directory), max_context_length=100)
    assert loaded.config.tie_word_embeddings
    assert loaded.eos_token_ids == (257, 258)
    assert loaded.max_context_length == 100


def test_loader_errors_name_the_file(base: BaseModel, tmp_path: Path) -> None:
    directory = save_builtin_as_hf(base, tmp_path / "m")
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"missing tokenizer\.json"):
        load_base_model(str(directory))
    (directory / "tokenizer.json").write_text(build_byte_tokenizer().to_str())
    (directory / "model.safetensors").rename(directory / "weights.bin")
    with pytest.raises(ValueError, match=r"expected model\.safetensors or model\.safetensors"):
        load_base_model(str(directory))
    (directory / "config.json").unlink()
    with pytest.raises(ValueError, match=r"missing config\.json"):
        load_base_model(str(directory))


def test_loader_reports_a_missing_shard(base: BaseModel, tmp_path: Path) -> None:
    directory = save_builtin_as_hf(base, tmp_path / "m", shards=2)
    (directory / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ValueError, match=r"model-00002-of-00002\.safetensors: shard listed"):
        load_base_model(str(directory))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "architecture 'GPT2LMHeadModel' is not supported"),
        ({"rope_scaling": {"rope_type": "yarn"}}, "rope scaling type 'yarn' is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
        ({"num_key_value_heads": 3}, "num_attention_heads 4 is not a multiple of"),
        ({"layer_types": ["sliding_attention"] * 4}, "only full_attention layers are supported"),
    ],
)
def test_loader_rejects_unsupported_configs(
    base: BaseModel, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    directory = save_builtin_as_hf(base, tmp_path / "m", config=builtin_hf_config(base) | change)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_base_model(str(directory))
    assert "config.json" in str(info.value)


def test_loader_reports_missing_misshapen_and_unexpected_tensors(
    base: BaseModel, tmp_path: Path
) -> None:
    state = {k: v.clone() for k, v in base.weights.tensors.items() if k != "lm_head.weight"}
    missing = dict(state)
    del missing["model.layers.1.mlp.up_proj.weight"]
    directory = save_builtin_as_hf(base, tmp_path / "a", tensors=missing)
    with pytest.raises(ValueError, match=re.escape("missing weight 'model.layers.1.mlp.up_proj")):
        load_base_model(str(directory))
    bad = state | {"model.norm.weight": torch.ones(127)}
    directory = save_builtin_as_hf(base, tmp_path / "b", tensors=bad)
    with pytest.raises(
        ValueError, match=re.escape("'model.norm.weight' has shape (127,), expected (128,)")
    ):
        load_base_model(str(directory))
    extra = state | {"model.layers.0.self_attn.q_proj.bias": torch.zeros(128)}
    directory = save_builtin_as_hf(base, tmp_path / "c", tensors=extra)
    with pytest.raises(ValueError, match=re.escape("'model.layers.0.self_attn.q_proj.bias' that")):
        load_base_model(str(directory))

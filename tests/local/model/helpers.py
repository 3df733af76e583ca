"""Helpers shared by the compute-core tests (imported relatively: the tests are a package)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from tinkex.local.model import (
    BaseModel,
    DatumArrays,
    LoraSpec,
    LoraWeights,
)
from tinkex.local.model.lora import adapter_shapes

SENTENCES = (
    "The cat sat on the mat.",
    "A dog ran in the park.",
    "Birds sing at dawn, every day.",
    "Fish swim in the sea.",
)


def sft_datum(base: BaseModel, text: str) -> DatumArrays:
    """``<|bos|> text <|eos|>`` as input/target pairs with unit weights."""
    assert base.bos_token_id is not None
    ids = np.array([base.bos_token_id, *base.tokenizer.encode(text).ids, base.eos_token_ids[0]])
    return DatumArrays(
        tokens=ids[:-1],
        inputs={"target_tokens": ids[1:], "weights": np.ones(ids.size - 1, dtype=np.float32)},
    )


def random_lora(base: BaseModel, spec: LoraSpec, seed: int = 0, std: float = 0.05) -> LoraWeights:
    """Adapters with non-zero ``B`` so they visibly change the model's output."""
    generator = torch.Generator().manual_seed(seed)
    state = {
        key: torch.randn(shape, generator=generator) * std
        for key, shape in adapter_shapes(base, spec).items()
    }
    return LoraWeights.from_state_dict(base, spec, state)


def builtin_hf_config(base: BaseModel) -> dict[str, Any]:
    """A Hugging Face ``config.json`` describing the built-in model."""
    cfg = base.config
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "bos_token_id": base.bos_token_id,
        "eos_token_id": base.eos_token_ids[0],
    }


def save_builtin_as_hf(
    base: BaseModel,
    directory: Path,
    *,
    shards: int = 1,
    config: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the built-in model in Hugging Face layout (optionally sharded), with
    ``config``/``tensors`` overriding what is written."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else builtin_hf_config(base)
    (directory / "config.json").write_text(json.dumps(cfg))
    (directory / "tokenizer.json").write_text(base.tokenizer.to_str())
    if tensors is None:
        tensors = {k: v.clone() for k, v in base.weights.tensors.items() if k != "lm_head.weight"}
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"))
        return directory
    weight_map: dict[str, str] = {}
    for shard in range(shards):
        file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[shard::shards]}
        save_file(part, str(directory / file))
        weight_map |= dict.fromkeys(part, file)
    index = {"metadata": {}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory

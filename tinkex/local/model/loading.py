"""Base models from the built-in recipe or from a Hugging Face model directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from tinkex.tokenizers.builtin import (
    BYTE_TOKENIZER_ID,
    BYTE_VOCAB_SIZE,
    build_byte_tokenizer,
    byte_tokenizer_special_ids,
)

from .base import BaseModel
from .config import ModelConfig, parse_hf_config
from .errors import ModelInputError
from .llama import DecoderWeights, expected_weight_shapes
from .zero import ZERO_MODEL, load_zero_model

__all__ = ["BUILTIN_MODEL", "builtin_config", "load_base_model"]

BUILTIN_MODEL = "tinkex/tiny-llama"
_BUILTIN_SEED = 20240611
_INIT_STD = 0.02
_MASK64 = (1 << 64) - 1


def builtin_config() -> ModelConfig:
    """The built-in model: a 4-layer Llama with grouped K/V heads over the byte tokenizer."""
    return ModelConfig(
        arch="LlamaForCausalLM",
        vocab_size=BYTE_VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=352,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )


def _deterministic_uniform(key: str, count: int, half_width: float) -> np.ndarray:
    """``count`` float32 values uniform on ``[-half_width, half_width)`` from a SplitMix64
    stream keyed by ``key``: identical on every machine and numpy/torch version."""
    digest = hashlib.sha256(f"{_BUILTIN_SEED}:{key}".encode()).digest()
    offset = np.uint64(int.from_bytes(digest[:8], "little"))
    with np.errstate(over="ignore"):
        z = np.arange(count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + offset
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return ((unit * 2.0 - 1.0) * half_width).astype(np.float32)


def _builtin_weights(config: ModelConfig) -> dict[str, torch.Tensor]:
    half_width = _INIT_STD * 3.0**0.5  # uniform with standard deviation _INIT_STD
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in expected_weight_shapes(config).items():
        if name.endswith("norm.weight"):
            tensors[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            tensors[name] = torch.zeros(shape)
        else:
            values = _deterministic_uniform(name, int(np.prod(shape)), half_width)
            tensors[name] = torch.from_numpy(values.reshape(shape))
    return tensors


def _load_builtin(name: str) -> BaseModel:
    config = builtin_config()
    special = byte_tokenizer_special_ids()
    return BaseModel(
        name=name,
        weights=DecoderWeights(config, _builtin_weights(config)),
        tokenizer=build_byte_tokenizer(),
        tokenizer_id=BYTE_TOKENIZER_ID,
        eos_token_ids=(special["<|eos|>"],),
        bos_token_id=special["<|bos|>"],
        max_context_length=config.max_position_embeddings,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _load_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    index_path = directory / "model.safetensors.index.json"
    single = directory / "model.safetensors"
    if index_path.is_file():
        weight_map = _read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index_path}: missing 'weight_map'")
        shard_names = sorted({str(v) for v in weight_map.values()})
    elif single.is_file():
        shard_names = [single.name]
    else:
        found = sorted(p.name for p in directory.glob("*.safetensors"))
        if len(found) != 1:
            raise ValueError(
                f"{directory}: expected model.safetensors or model.safetensors.index.json"
                + (f" (found {found})" if found else " (no *.safetensors file)")
            )
        shard_names = found
    tensors: dict[str, torch.Tensor] = {}
    for shard in shard_names:
        path = directory / shard
        if not path.is_file():
            raise ValueError(f"{path}: shard listed in model.safetensors.index.json is missing")
        try:
            tensors.update(load_file(str(path)))
        except Exception as exc:
            raise ValueError(f"{path}: cannot read safetensors ({exc})") from None
    return tensors


def _token_ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _eos_ids(directory: Path, cfg: dict[str, Any], tokenizer: Tokenizer) -> tuple[int, ...]:
    ids = _token_ids(cfg.get("eos_token_id"))
    generation = directory / "generation_config.json"
    if generation.is_file():
        ids += _token_ids(_read_json(generation).get("eos_token_id"))
    tok_config = directory / "tokenizer_config.json"
    if not ids and tok_config.is_file():
        eos = _read_json(tok_config).get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        eos_id = tokenizer.token_to_id(eos) if isinstance(eos, str) else None
        if eos_id is not None:
            ids.append(eos_id)
    return tuple(dict.fromkeys(ids))


def _load_directory(directory: Path, name: str, max_context_length: int | None) -> BaseModel:
    config_path = directory / "config.json"
    tokenizer_path = directory / "tokenizer.json"
    for required in (config_path, tokenizer_path):
        if not required.is_file():
            raise ValueError(f"{directory}: missing {required.name}")
    cfg = _read_json(config_path)
    config = parse_hf_config(cfg, where=str(config_path))
    tensors = _load_safetensors(directory)
    if "tie_word_embeddings" not in cfg:
        config = dataclasses.replace(config, tie_word_embeddings="lm_head.weight" not in tensors)
    expected = expected_weight_shapes(config)
    unexpected = [k for k in tensors if k not in expected and not k.endswith("rotary_emb.inv_freq")]
    if config.tie_word_embeddings:
        unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if unexpected:
        raise ValueError(
            f"{directory}: checkpoint has tensor {unexpected[0]!r} that {config.arch} with this "
            f"config.json does not use ({len(unexpected)} unexpected in all)"
        )
    try:
        weights = DecoderWeights(config, tensors)
    except ValueError as exc:
        raise ValueError(f"{directory}: {exc}") from None
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:
        raise ValueError(f"{tokenizer_path}: cannot load tokenizer ({exc})") from None
    bos = cfg.get("bos_token_id")
    context = config.max_position_embeddings
    if max_context_length is not None:
        context = min(context, max_context_length)
    return BaseModel(
        name=name,
        weights=weights,
        tokenizer=tokenizer,
        tokenizer_id=name,
        eos_token_ids=_eos_ids(directory, cfg, tokenizer),
        bos_token_id=bos if isinstance(bos, int) and not isinstance(bos, bool) else None,
        max_context_length=context,
    )


def load_base_model(
    source: str, name: str | None = None, *, max_context_length: int | None = None
) -> BaseModel:
    """Load ``source``: :data:`BUILTIN_MODEL`, :data:`~.zero.ZERO_MODEL` (no compute, for
    benchmarking clients; see :mod:`.zero`) or a Hugging Face directory with
    ``config.json``, ``model.safetensors`` (or a sharded ``model.safetensors.index.json``)
    and ``tokenizer.json``, for ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` or
    ``Qwen3ForCausalLM``. Weights are converted to float32 and frozen.

    ``name`` (default: ``source``) is what clients call the model; for a directory it is
    also the ``tokenizer_id``. ``max_context_length`` caps the context below the
    checkpoint's ``max_position_embeddings``.

    Raises :class:`ModelInputError` when ``source`` is neither the built-in name nor a
    directory, and :class:`ValueError` naming the file for an unusable directory.
    """
    if source == BUILTIN_MODEL:
        model = _load_builtin(name or BUILTIN_MODEL)
        if max_context_length is not None:
            model.max_context_length = min(model.max_context_length, max_context_length)
        return model
    if source == ZERO_MODEL:
        return load_zero_model(name or ZERO_MODEL, max_context_length)
    directory = Path(source)
    if not directory.is_dir():
        raise ModelInputError(
            f"base model {source!r} is neither the built-in {BUILTIN_MODEL!r} (or "
            f"{ZERO_MODEL!r}) nor a directory"
        )
    return _load_directory(directory, name or source, max_context_length)

"""Decoder hyper-parameters, and how they are read from a Hugging Face ``config.json``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SUPPORTED_ARCHITECTURES", "ModelConfig", "RopeScaling", "parse_hf_config"]

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
_ARCH_BY_MODEL_TYPE = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}


@dataclass(frozen=True)
class RopeScaling:
    """A rotary-frequency rescaling: ``linear`` (divide every frequency by ``factor``) or
    ``llama3`` (divide only the low frequencies, blend the band in between)."""

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Llama-family decoder (Llama, Qwen2, Qwen3 are this with a few switches).

    ``qkv_bias``/``o_bias``/``mlp_bias`` say which projections carry a bias and
    ``qk_norm`` adds a per-head RMSNorm on queries and keys before the rotation (Qwen3).
    """

    arch: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False

    def __post_init__(self) -> None:
        for field_name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model config: {field_name} must be an int >= 1, not {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"model config: num_attention_heads {self.num_heads} is not a multiple of "
                f"num_key_value_heads {self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"model config: head_dim must be even for rotary, got {self.head_dim}")
        if not (self.rms_norm_eps > 0 and self.rope_theta > 0):
            raise ValueError("model config: rms_norm_eps and rope_theta must be positive")


def _get_int(cfg: Mapping[str, Any], key: str, where: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{where}: {key!r} must be an integer, got {value!r}")
    return value


def _rope_settings(cfg: Mapping[str, Any], where: str) -> tuple[float, RopeScaling | None]:
    """Read the rotary base and scaling from either the v5 ``rope_parameters`` dict or the
    older ``rope_theta`` + ``rope_scaling`` pair."""
    params = cfg.get("rope_parameters")
    if isinstance(params, Mapping) and "rope_theta" in params:
        theta = float(params["rope_theta"])
        scaling: Mapping[str, Any] | None = params
    else:
        theta = float(cfg.get("rope_theta", 10000.0))
        raw = cfg.get("rope_scaling")
        scaling = raw if isinstance(raw, Mapping) else None
    if scaling is None:
        return theta, None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, RopeScaling(kind="linear", factor=float(scaling["factor"]))
    if kind == "llama3":
        return theta, RopeScaling(
            kind="llama3",
            factor=float(scaling["factor"]),
            low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
            high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(
                scaling.get("original_max_position_embeddings", 8192)
            ),
        )
    raise ValueError(
        f"{where}: rope scaling type {kind!r} is not supported (supported: default, linear, llama3)"
    )


def parse_hf_config(cfg: Mapping[str, Any], where: str = "config.json") -> ModelConfig:
    """A :class:`ModelConfig` from a Hugging Face ``config.json`` of a supported architecture.

    ``where`` names the file in error messages. ``tie_word_embeddings`` is left as given
    (``None`` handling is the loader's job: it knows whether ``lm_head.weight`` exists).
    """
    archs = cfg.get("architectures")
    arch: str | None = None
    if isinstance(archs, list) and archs:
        arch = str(archs[0])
    elif isinstance(cfg.get("model_type"), str):
        arch = _ARCH_BY_MODEL_TYPE.get(cfg["model_type"])
    if arch not in SUPPORTED_ARCHITECTURES:
        shown = arch if arch is not None else cfg.get("model_type")
        raise ValueError(
            f"{where}: architecture {shown!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{where}: hidden_act {act!r} is not supported (only 'silu')")
    if cfg.get("use_sliding_window"):
        raise ValueError(f"{where}: use_sliding_window=true is not supported")
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and any(t != "full_attention" for t in layer_types):
        raise ValueError(f"{where}: only full_attention layers are supported, got {layer_types}")

    hidden = _get_int(cfg, "hidden_size", where)
    heads = _get_int(cfg, "num_attention_heads", where)
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    theta, scaling = _rope_settings(cfg, where)
    attention_bias = bool(cfg.get("attention_bias", False))
    if arch == "Qwen2ForCausalLM":
        qkv_bias, o_bias = True, False
    else:
        qkv_bias = o_bias = attention_bias
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    if not math.isfinite(eps):
        raise ValueError(f"{where}: rms_norm_eps must be finite")
    try:
        return ModelConfig(
            arch=arch,
            vocab_size=_get_int(cfg, "vocab_size", where),
            hidden_size=hidden,
            intermediate_size=_get_int(cfg, "intermediate_size", where),
            num_layers=_get_int(cfg, "num_hidden_layers", where),
            num_heads=heads,
            num_kv_heads=int(kv_heads),
            head_dim=int(head_dim),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            rms_norm_eps=eps,
            rope_theta=theta,
            rope_scaling=scaling,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            mlp_bias=bool(cfg.get("mlp_bias", False)) if arch == "LlamaForCausalLM" else False,
            qk_norm=arch == "Qwen3ForCausalLM",
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None

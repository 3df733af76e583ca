"""The Llama-family decoder (Llama, Qwen2, Qwen3), written as plain functions over tensors.

Weights live in a flat ``{hf_name: tensor}`` mapping (Hugging Face ``LlamaForCausalLM``
names), frozen and shared by every trainer and sampler of one base model. LoRA adapters
are passed alongside as :class:`Adapters`, keyed by the module path they modify
(``"model.layers.0.self_attn.q_proj"``, ``"lm_head"``), so a forward pass never copies or
merges base weights.

Layer: ``x += o(attn(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))``,
then ``x += down(silu(gate(norm(x))) * up(norm(x)))``; RMSNorm everywhere, causal
scaled-dot-product attention with grouped K/V heads, rotary embeddings in the
"rotate half" layout used by Hugging Face checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import ModelConfig

__all__ = [
    "Adapters",
    "DecoderWeights",
    "KVCache",
    "decoder_hidden",
    "expected_weight_shapes",
    "linear_modules",
    "unembed",
]

ATTN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def linear_modules(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """Every linear module LoRA can target, as ``path -> (out_features, in_features)``,
    in a fixed order (layer by layer, attention then MLP, then ``lm_head``)."""
    d, f = config.hidden_size, config.intermediate_size
    q_out = config.num_heads * config.head_dim
    kv_out = config.num_kv_heads * config.head_dim
    shapes = {
        "q_proj": (q_out, d),
        "k_proj": (kv_out, d),
        "v_proj": (kv_out, d),
        "o_proj": (d, q_out),
        "gate_proj": (f, d),
        "up_proj": (f, d),
        "down_proj": (d, f),
    }
    modules: dict[str, tuple[int, int]] = {}
    for i in range(config.num_layers):
        for proj in ATTN_PROJECTIONS:
            modules[f"model.layers.{i}.self_attn.{proj}"] = shapes[proj]
        for proj in MLP_PROJECTIONS:
            modules[f"model.layers.{i}.mlp.{proj}"] = shapes[proj]
    modules["lm_head"] = (config.vocab_size, d)
    return modules


def expected_weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensors a checkpoint must hold, ``hf_name -> shape`` (``lm_head.weight`` only
    when the embeddings are not tied)."""
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (config.vocab_size, config.hidden_size)
    }
    for path, (out_f, in_f) in linear_modules(config).items():
        if path == "lm_head":
            continue
        shapes[f"{path}.weight"] = (out_f, in_f)
        proj = path.rsplit(".", 1)[1]
        has_bias = (
            (proj in ("q_proj", "k_proj", "v_proj") and config.qkv_bias)
            or (proj == "o_proj" and config.o_bias)
            or (proj in MLP_PROJECTIONS and config.mlp_bias)
        )
        if has_bias:
            shapes[f"{path}.bias"] = (out_f,)
        if path.endswith("q_proj") and config.qk_norm:
            prefix = path.rsplit(".", 1)[0]
            shapes[f"{prefix}.q_norm.weight"] = (config.head_dim,)
            shapes[f"{prefix}.k_norm.weight"] = (config.head_dim,)
        if path.endswith("down_proj"):
            layer = path.rsplit(".", 2)[0]
            shapes[f"{layer}.input_layernorm.weight"] = (config.hidden_size,)
            shapes[f"{layer}.post_attention_layernorm.weight"] = (config.hidden_size,)
    shapes["model.norm.weight"] = (config.hidden_size,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, config.hidden_size)
    return shapes


def _inverse_frequencies(config: ModelConfig) -> torch.Tensor:
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim
    inv_freq = 1.0 / (config.rope_theta**exponents)
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    # llama3: keep high frequencies, divide low ones by `factor`, interpolate in between.
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    in_band = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(in_band, blended, scaled)


@dataclass(frozen=True)
class _Layer:
    attn_norm: torch.Tensor
    mlp_norm: torch.Tensor
    proj: Mapping[str, tuple[str, torch.Tensor, torch.Tensor | None]]
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None


class DecoderWeights:
    """Frozen base weights of one decoder, checked against ``config``.

    ``tensors`` maps Hugging Face names to float32 tensors; with tied embeddings
    ``lm_head.weight`` is the embedding tensor itself.
    """

    def __init__(self, config: ModelConfig, tensors: Mapping[str, torch.Tensor]) -> None:
        expected = expected_weight_shapes(config)
        missing = [name for name in expected if name not in tensors]
        if missing:
            raise ValueError(f"missing weight {missing[0]!r} ({len(missing)} missing in all)")
        own: dict[str, torch.Tensor] = {}
        for name, shape in expected.items():
            tensor = tensors[name]
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"weight {name!r} has shape {tuple(tensor.shape)}, expected {shape}"
                )
            own[name] = tensor.detach().to(torch.float32).contiguous().requires_grad_(False)
        if config.tie_word_embeddings:
            own["lm_head.weight"] = own["model.embed_tokens.weight"]
        self.config = config
        self.tensors: Mapping[str, torch.Tensor] = own
        self.inv_freq = _inverse_frequencies(config)
        layers = []
        for i in range(config.num_layers):
            prefix = f"model.layers.{i}"
            proj: dict[str, tuple[str, torch.Tensor, torch.Tensor | None]] = {}
            for name in ATTN_PROJECTIONS:
                path = f"{prefix}.self_attn.{name}"
                proj[name] = (path, own[f"{path}.weight"], own.get(f"{path}.bias"))
            for name in MLP_PROJECTIONS:
                path = f"{prefix}.mlp.{name}"
                proj[name] = (path, own[f"{path}.weight"], own.get(f"{path}.bias"))
            layers.append(
                _Layer(
                    attn_norm=own[f"{prefix}.input_layernorm.weight"],
                    mlp_norm=own[f"{prefix}.post_attention_layernorm.weight"],
                    proj=proj,
                    q_norm=own.get(f"{prefix}.self_attn.q_norm.weight"),
                    k_norm=own.get(f"{prefix}.self_attn.k_norm.weight"),
                )
            )
        self._layers = tuple(layers)

    @property
    def num_parameters(self) -> int:
        seen: set[int] = set()
        total = 0
        for tensor in self.tensors.values():
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel()
        return total


@dataclass(frozen=True)
class Adapters:
    """LoRA pairs ``module path -> (A [r, in], B [out, r])``; output += ``scale * B(A(x))``."""

    pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float


class KVCache:
    """Keys/values for ``batch`` rows, grown on demand (doubling) as positions are added.

    All rows share one length (the sampler decodes its sequences in lockstep); rows can be
    dropped with :meth:`keep_rows` when they finish.
    """

    def __init__(self, config: ModelConfig, batch: int, capacity: int) -> None:
        self._shape = (batch, config.num_kv_heads, capacity, config.head_dim)
        self.keys = [torch.zeros(self._shape) for _ in range(config.num_layers)]
        self.values = [torch.zeros(self._shape) for _ in range(config.num_layers)]
        self.length = 0
        self.capacity = capacity

    def reserve(self, positions: int) -> None:
        """Make room for ``positions`` positions in total."""
        if positions <= self.capacity:
            return
        capacity = max(positions, 2 * self.capacity)
        for buffers in (self.keys, self.values):
            for i, old in enumerate(buffers):
                new = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                new[:, :, : self.length] = old[:, :, : self.length]
                buffers[i] = new
        self.capacity = capacity

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _linear(
    x: torch.Tensor,
    spec: tuple[str, torch.Tensor, torch.Tensor | None],
    adapters: Adapters | None,
) -> torch.Tensor:
    path, weight, bias = spec
    y = F.linear(x, weight, bias)
    if adapters is not None:
        pair = adapters.pairs.get(path)
        if pair is not None:
            y = y + F.linear(F.linear(x, pair[0]) * adapters.scale, pair[1])
    return y


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def decoder_hidden(
    weights: DecoderWeights,
    adapters: Adapters | None,
    tokens: torch.Tensor,
    *,
    cache: KVCache | None = None,
) -> torch.Tensor:
    """Final-norm hidden states ``[B, T, d]`` for ``tokens`` ``[B, T]``.

    Without a cache the tokens sit at positions ``0..T-1`` and attend causally (right
    padding is harmless: real tokens never see later pads). With a cache they continue at
    position ``cache.length``, attend to everything cached so far, and are appended (the
    cache grows as needed). A batch-1 call on a multi-row cache fills every row (prefill).
    """
    cfg = weights.config
    batch, steps = tokens.shape
    start = cache.length if cache is not None else 0
    if start + steps > cfg.max_position_embeddings:
        raise ValueError(
            f"decoder: {start + steps} positions exceed max_position_embeddings "
            f"{cfg.max_position_embeddings}"
        )
    if cache is not None:
        cache.reserve(start + steps)
    positions = torch.arange(start, start + steps, dtype=torch.float32)
    freqs = torch.outer(positions, weights.inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    cos, sin = angles.cos(), angles.sin()
    group = cfg.num_heads // cfg.num_kv_heads
    end = start + steps
    if steps > 1 and start > 0:
        q_pos = torch.arange(start, end).unsqueeze(1)
        mask: torch.Tensor | None = torch.arange(end).unsqueeze(0) <= q_pos
    else:
        mask = None

    x = F.embedding(tokens, weights.tensors["model.embed_tokens.weight"])
    for index, layer in enumerate(weights._layers):
        h = _rms_norm(x, layer.attn_norm, cfg.rms_norm_eps)
        q = _linear(h, layer.proj["q_proj"], adapters).view(batch, steps, -1, cfg.head_dim)
        k = _linear(h, layer.proj["k_proj"], adapters).view(batch, steps, -1, cfg.head_dim)
        v = _linear(h, layer.proj["v_proj"], adapters).view(batch, steps, -1, cfg.head_dim)
        if layer.q_norm is not None and layer.k_norm is not None:
            q = _rms_norm(q, layer.q_norm, cfg.rms_norm_eps)
            k = _rms_norm(k, layer.k_norm, cfg.rms_norm_eps)
        q = _rotate(q.transpose(1, 2), cos, sin)
        k = _rotate(k.transpose(1, 2), cos, sin)
        v = v.transpose(1, 2)
        if cache is not None:
            cache.keys[index][:, :, start:end] = k
            cache.values[index][:, :, start:end] = v
            k = cache.keys[index][:batch, :, :end]
            v = cache.values[index][:batch, :, :end]
        attn = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and start == 0 and steps > 1,
            enable_gqa=group > 1,
        )
        attn = attn.transpose(1, 2).reshape(batch, steps, cfg.num_heads * cfg.head_dim)
        x = x + _linear(attn, layer.proj["o_proj"], adapters)
        h = _rms_norm(x, layer.mlp_norm, cfg.rms_norm_eps)
        gated = F.silu(_linear(h, layer.proj["gate_proj"], adapters)) * _linear(
            h, layer.proj["up_proj"], adapters
        )
        x = x + _linear(gated, layer.proj["down_proj"], adapters)
    if cache is not None:
        cache.length = end
    return _rms_norm(x, weights.tensors["model.norm.weight"], cfg.rms_norm_eps)


def unembed(
    weights: DecoderWeights, adapters: Adapters | None, hidden: torch.Tensor
) -> torch.Tensor:
    """Logits ``[..., vocab]`` from final hidden states."""
    return _linear(hidden, ("lm_head", weights.tensors["lm_head.weight"], None), adapters)

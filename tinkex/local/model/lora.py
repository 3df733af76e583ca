"""LoRA adapter settings, naming, initialisation and immutable snapshots for sampling.

Adapter tensors are named like PEFT saves them for a ``*ForCausalLM`` model
(``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``, ...,
``base_model.model.lm_head.lora_B.weight``), with ``A`` of shape ``[rank, in]`` and ``B`` of
shape ``[out, rank]``; a module's output gains ``(alpha / rank) * B @ A @ x``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .base import BaseModel
from .errors import ModelInputError
from .llama import ATTN_PROJECTIONS, MLP_PROJECTIONS, Adapters, linear_modules

__all__ = ["LoraSpec", "LoraWeights", "adapter_shapes", "init_adapter_tensors"]

_PREFIX = "base_model.model."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LoraSpec:
    """Which modules get adapters, their rank, scaling and initialisation seed.

    ``seed=None`` draws a random seed at initialisation; the same seed always gives the same
    initial adapter. ``alpha / rank`` scales the adapter output (PEFT's ``lora_alpha``).
    """

    rank: int
    seed: int | None = None
    train_attn: bool = True
    train_mlp: bool = True
    train_unembed: bool = True
    alpha: float = 32.0

    def __post_init__(self) -> None:
        if not _is_int(self.rank) or self.rank < 1:
            raise ModelInputError(f"lora rank must be an integer >= 1, got {self.rank!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ModelInputError(f"lora seed must be an integer or None, got {self.seed!r}")
        if not (self.train_attn or self.train_mlp or self.train_unembed):
            raise ModelInputError(
                "lora config: at least one of train_attn, train_mlp, train_unembed must be true"
            )
        alpha_ok = isinstance(self.alpha, int | float) and not isinstance(self.alpha, bool)
        if not (alpha_ok and math.isfinite(self.alpha) and self.alpha > 0):
            raise ModelInputError(f"lora alpha must be a finite number > 0, got {self.alpha!r}")

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank

    def targets(self, module: str) -> bool:
        """Whether ``module`` (a decoder module path) gets an adapter under this spec."""
        if module == "lm_head":
            return self.train_unembed
        proj = module.rsplit(".", 1)[1]
        if proj in ATTN_PROJECTIONS:
            return self.train_attn
        return proj in MLP_PROJECTIONS and self.train_mlp


def adapter_key(module: str, which: str) -> str:
    """State-dict key of matrix ``which`` (``"A"`` or ``"B"``) of ``module``'s adapter."""
    return f"{_PREFIX}{module}.lora_{which}.weight"


def adapter_shapes(base: BaseModel, spec: LoraSpec) -> dict[str, tuple[int, int]]:
    """Every adapter tensor ``key -> shape`` for ``spec`` on ``base``, in a fixed order."""
    shapes: dict[str, tuple[int, int]] = {}
    for module, (out_f, in_f) in linear_modules(base.config).items():
        if spec.targets(module):
            shapes[adapter_key(module, "A")] = (spec.rank, in_f)
            shapes[adapter_key(module, "B")] = (out_f, spec.rank)
    return shapes


def init_adapter_tensors(base: BaseModel, spec: LoraSpec) -> dict[str, torch.Tensor]:
    """Fresh adapters: ``A`` uniform on ``±1/sqrt(in)`` from ``spec.seed``, ``B`` zero, so
    the adapted model starts out equal to the base model."""
    generator = torch.Generator()
    if spec.seed is None:
        generator.seed()
    else:
        generator.manual_seed(spec.seed % (1 << 63))
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in adapter_shapes(base, spec).items():
        if key.endswith("lora_A.weight"):
            bound = 1.0 / math.sqrt(shape[1])
            tensors[key] = (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound
        else:
            tensors[key] = torch.zeros(shape)
    return tensors


def check_adapter_state(
    base: BaseModel, spec: LoraSpec, state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Validate an adapter state dict against ``spec`` on ``base``; returns float32 copies.

    Raises :class:`ModelInputError` naming the first missing/unexpected key or bad shape.
    """
    expected = adapter_shapes(base, spec)
    missing = [k for k in expected if k not in state]
    if missing:
        raise ModelInputError(
            f"adapter state is missing {missing[0]!r} ({len(missing)} missing); it does not "
            f"match rank={spec.rank}, train_attn={spec.train_attn}, train_mlp={spec.train_mlp}, "
            f"train_unembed={spec.train_unembed} on {base.name!r}"
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ModelInputError(
            f"adapter state has unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected) "
            f"for train_attn={spec.train_attn}, train_mlp={spec.train_mlp}, "
            f"train_unembed={spec.train_unembed} on {base.name!r}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            raise ModelInputError(f"adapter state {key!r} is not a tensor")
        if tuple(tensor.shape) != shape:
            raise ModelInputError(
                f"adapter state {key!r} has shape {tuple(tensor.shape)}, expected {shape} "
                f"(LoRA rank {spec.rank} on {base.name!r})"
            )
        if not tensor.is_floating_point():
            raise ModelInputError(f"adapter state {key!r} has dtype {tensor.dtype}, not float")
        value = tensor.detach().to(device="cpu", dtype=torch.float32).clone().contiguous()
        if not bool(torch.isfinite(value).all()):
            raise ModelInputError(f"adapter state {key!r} contains NaN or infinity")
        out[key] = value
    return out


def make_adapters(spec: LoraSpec, tensors: Mapping[str, torch.Tensor]) -> Adapters:
    """Group ``A``/``B`` tensors by module for the decoder."""
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    suffix = ".lora_A.weight"
    for key, tensor in tensors.items():
        if key.endswith(suffix):
            module = key[len(_PREFIX) : -len(suffix)]
            pairs[module] = (tensor, tensors[adapter_key(module, "B")])
    return Adapters(pairs=pairs, scale=spec.scale)


class LoraWeights:
    """An immutable snapshot of adapter weights for one base model, ready for sampling."""

    def __init__(self, base: BaseModel, spec: LoraSpec, tensors: Mapping[str, torch.Tensor]):
        # Callers hand over private copies (see from_state_dict / TrainableModel.lora_weights).
        self.base_name = base.name
        self.spec = spec
        self._config = base.config
        self._tensors = {k: t.requires_grad_(False) for k, t in tensors.items()}
        self.adapters = make_adapters(spec, self._tensors)

    @classmethod
    def from_state_dict(
        cls, base: BaseModel, spec: LoraSpec, sd: Mapping[str, torch.Tensor]
    ) -> LoraWeights:
        """Build from :meth:`state_dict` output (or a trainer's ``adapter_state()``);
        raises :class:`ModelInputError` on missing/unexpected keys or wrong shapes."""
        return cls(base, spec, check_adapter_state(base, spec, sd))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat CPU float32 copies, keyed as described in the module docstring."""
        return {k: t.clone() for k, t in self._tensors.items()}

    def compatible_with(self, base: BaseModel) -> bool:
        return base.config == self._config

    def __repr__(self) -> str:
        return f"LoraWeights(base={self.base_name!r}, spec={self.spec!r})"

"""Training-side wire types: LoRA and optimizer settings, forward/backward I/O."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import WireModel
from .datum import Datum
from .tensor_data import TensorData

LossFnType = Literal[
    "cross_entropy",
    "importance_sampling",
    "ppo",
    "cispo",
    "dro",
    "gspo",
    "stable_reinforce",
    "custom",
]


class LoraConfig(WireModel):
    """LoRA adapter settings; at least one of the ``train_*`` flags must be true."""

    rank: int = Field(ge=1)
    seed: int | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> LoraConfig:
        if not (self.train_unembed or self.train_mlp or self.train_attn):
            raise ValueError("LoraConfig: at least one of train_unembed, train_mlp, train_attn")
        return self


class AdamParams(WireModel):
    """AdamW hyper-parameters (decoupled weight decay; ``grad_clip_norm`` 0 = off)."""

    learning_rate: float = Field(default=1e-4, ge=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.95, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-12, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    grad_clip_norm: float = Field(default=0.0, ge=0.0)


class OptimizerConfig(WireModel):
    """The optimizer family of a model, fixed at creation."""

    type: Literal["adamw", "dimuon"] = "adamw"
    version: int | None = None


class ForwardBackwardInput(WireModel):
    """The user's side of a forward or forward_backward call."""

    data: list[Datum]
    loss_fn: str
    loss_fn_config: dict[str, float | str] | None = None


class ForwardBackwardOutput(WireModel):
    """Per-datum outputs (``logprobs``, ``elementwise_loss``) and ``name:reduction`` metrics."""

    loss_fn_output_type: str = "ArrayRecord"
    loss_fn_outputs: list[dict[str, TensorData]]
    metrics: dict[str, float]


class OptimStepResponse(WireModel):
    metrics: dict[str, float] | None = None

"""AdamW with decoupled weight decay and global-norm clipping, state as flat tensors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import ModelInputError

__all__ = ["AdamConfig", "AdamW"]


@dataclass(frozen=True)
class AdamConfig:
    """Hyper-parameters of one optimizer step (Tinker's ``AdamParams``; clip 0 = off)."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    def __post_init__(self) -> None:
        for name in ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ModelInputError(f"adam {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ModelInputError(f"adam {name} must be finite, got {value!r}")
        checks = (
            ("learning_rate", self.learning_rate >= 0, ">= 0"),
            ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
            ("beta2", 0 <= self.beta2 < 1, "in [0, 1)"),
            ("eps", self.eps > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip_norm", self.grad_clip_norm >= 0, ">= 0 (0 disables clipping)"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ModelInputError(f"adam {name} must be {allowed}, got {getattr(self, name)!r}")


class AdamW:
    """AdamW over named parameters, hyper-parameters given per step (so schedules work).

    Step ``t`` (counted from 1), gradient ``g`` (after clipping to ``grad_clip_norm``)::

        p <- p * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    A parameter without a gradient is stepped with a zero gradient. A non-finite gradient
    raises :class:`ModelInputError` without touching the weights (and drops the gradient).
    """

    def __init__(self, params: Mapping[str, torch.Tensor]) -> None:
        self.params = dict(params)
        self.step_count = 0
        self.exp_avg = {k: torch.zeros_like(p) for k, p in self.params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in self.params.items()}

    @torch.no_grad()
    def step(self, config: AdamConfig) -> dict[str, float]:
        grads = {
            k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in self.params.items()
        }
        squares = [g.pow(2).sum() for g in grads.values()]
        grad_norm = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
        if not math.isfinite(grad_norm):
            for param in self.params.values():
                param.grad = None
            raise ModelInputError(
                f"optim_step: the accumulated gradient is not finite (norm {grad_norm}); the "
                "step was skipped and the gradients dropped. Look for extreme logprobs or "
                "advantages in loss_fn_inputs"
            )
        clip = 1.0
        if config.grad_clip_norm > 0 and grad_norm > config.grad_clip_norm:
            clip = config.grad_clip_norm / (grad_norm + 1e-6)
        self.step_count += 1
        t = self.step_count
        lr = config.learning_rate
        bias1 = 1.0 - config.beta1**t
        bias2_sqrt = math.sqrt(1.0 - config.beta2**t)
        for key, param in self.params.items():
            grad = grads[key] * clip if clip != 1.0 else grads[key]
            if config.weight_decay:
                param.mul_(1.0 - lr * config.weight_decay)
            m, v = self.exp_avg[key], self.exp_avg_sq[key]
            m.mul_(config.beta1).add_(grad, alpha=1.0 - config.beta1)
            v.mul_(config.beta2).addcmul_(grad, grad, value=1.0 - config.beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(config.eps)
            param.addcdiv_(m, denom, value=-lr / bias1)
            param.grad = None
        return {"grad_norm:mean": grad_norm, "learning_rate:mean": float(lr)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``step`` (int64 scalar), ``exp_avg.<param>``, ``exp_avg_sq.<param>`` (copies)."""
        state = {"step": torch.tensor(self.step_count, dtype=torch.int64)}
        for key in self.params:
            state[f"exp_avg.{key}"] = self.exp_avg[key].clone()
            state[f"exp_avg_sq.{key}"] = self.exp_avg_sq[key].clone()
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the state; raises :class:`ModelInputError` naming the first bad entry
        (nothing is changed then)."""
        expected = {"step": ()} | {
            f"{kind}.{key}": tuple(p.shape)
            for key, p in self.params.items()
            for kind in ("exp_avg", "exp_avg_sq")
        }
        missing = [k for k in expected if k not in state]
        if missing:
            raise ModelInputError(
                f"optimizer state is missing {missing[0]!r} ({len(missing)} missing); "
                "it was saved for a different adapter layout"
            )
        unexpected = [k for k in state if k not in expected]
        if unexpected:
            raise ModelInputError(
                f"optimizer state has unexpected key {unexpected[0]!r} "
                f"({len(unexpected)} unexpected); it was saved for a different adapter layout"
            )
        loaded: dict[str, torch.Tensor] = {}
        for key, shape in expected.items():
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
                raise ModelInputError(f"optimizer state {key!r} has shape {got}, expected {shape}")
            loaded[key] = tensor.detach().to("cpu")
        step = loaded.pop("step")
        if step.is_floating_point() or step.is_complex() or int(step) < 0:
            raise ModelInputError(f"optimizer state 'step' must be an integer >= 0, got {step}")
        for key, tensor in loaded.items():
            if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                raise ModelInputError(f"optimizer state {key!r} must be finite floats")
        self.step_count = int(step)
        for key in self.params:
            self.exp_avg[key] = loaded[f"exp_avg.{key}"].to(torch.float32).clone()
            self.exp_avg_sq[key] = loaded[f"exp_avg_sq.{key}"].to(torch.float32).clone()

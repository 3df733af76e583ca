"""The built-in loss functions of ``forward_backward``, token by token.

Every loss is a sum over tokens of an elementwise loss of the learner's log-probability
``logp = log p_theta(target_tokens[t] | tokens[:t+1])``; ``q`` is the sampler's logprob
(``loss_fn_inputs["logprobs"]``), ``A`` the advantage and ``ratio = exp(logp - q)``:

=====================  ============================================================  ==========
loss_fn                elementwise loss                                               config
=====================  ============================================================  ==========
cross_entropy          ``-w * logp``                                                  —
importance_sampling    ``-w * ratio * A``                                             —
ppo                    ``-w * min(ratio * A, clip(ratio, lo, hi) * A)``               lo 0.8, hi 1.2
cispo                  ``-w * sg(clip(ratio, lo, hi)) * logp * A``                    lo 0.0, hi 4.0
dro                    ``-w * (logp * A - beta / 2 * (logp - q) ** 2)``               beta 0.05
=====================  ============================================================  ==========

``lo``/``hi`` are ``clip_low_threshold``/``clip_high_threshold``; ``sg`` stops gradients.
``w`` is ``loss_fn_inputs["weights"]`` when given, else 1 (the Tinker docs define the RL
losses without weights; sending a 0/1 mask there masks tokens). The DRO formula is the one
in the Tinker docs; they give no default for ``beta``, so 0.05 is ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import ModelInputError

__all__ = ["LOSS_FUNCTIONS", "LossDef", "elementwise_loss", "resolve_loss"]


@dataclass(frozen=True)
class LossDef:
    name: str
    required_inputs: tuple[str, ...]
    optional_inputs: tuple[str, ...]
    defaults: Mapping[str, float]

    @property
    def allowed_inputs(self) -> tuple[str, ...]:
        return tuple(sorted(self.required_inputs + self.optional_inputs))


_RL_INPUTS = ("target_tokens", "logprobs", "advantages")
LOSS_FUNCTIONS: dict[str, LossDef] = {
    d.name: d
    for d in (
        LossDef("cross_entropy", ("target_tokens",), ("weights",), {}),
        LossDef("importance_sampling", _RL_INPUTS, ("weights",), {}),
        LossDef(
            "ppo",
            _RL_INPUTS,
            ("weights",),
            {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
        ),
        LossDef(
            "cispo",
            _RL_INPUTS,
            ("weights",),
            {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
        ),
        LossDef("dro", _RL_INPUTS, ("weights",), {"beta": 0.05}),
    )
}


def resolve_loss(
    loss_fn: str, loss_fn_config: Mapping[str, float | str] | None
) -> tuple[LossDef, dict[str, float]]:
    """The loss definition and its full config (defaults filled in), or
    :class:`ModelInputError` for an unknown loss, unknown key or bad value."""
    definition = LOSS_FUNCTIONS.get(loss_fn) if isinstance(loss_fn, str) else None
    if definition is None:
        raise ModelInputError(
            f"loss_fn {loss_fn!r} is not supported (supported: {', '.join(LOSS_FUNCTIONS)})"
        )
    config = dict(definition.defaults)
    for key, value in (loss_fn_config or {}).items():
        if key not in definition.defaults:
            allowed = ", ".join(definition.defaults) or "none"
            raise ModelInputError(
                f"loss_fn_config key {key!r} is not accepted by loss_fn {loss_fn!r} "
                f"(accepted keys: {allowed})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelInputError(f"loss_fn_config[{key!r}] must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ModelInputError(f"loss_fn_config[{key!r}] must be finite, got {value!r}")
        config[key] = float(value)
    if "clip_low_threshold" in config:
        low, high = config["clip_low_threshold"], config["clip_high_threshold"]
        if low < 0:
            raise ModelInputError(f"loss_fn_config['clip_low_threshold'] must be >= 0, got {low}")
        if high < low:
            raise ModelInputError(
                f"loss_fn_config['clip_high_threshold'] ({high}) must be >= "
                f"clip_low_threshold ({low})"
            )
    if config.get("beta", 0.0) < 0:
        raise ModelInputError(f"loss_fn_config['beta'] must be >= 0, got {config['beta']}")
    return definition, config


def elementwise_loss(
    loss_fn: str,
    config: Mapping[str, float],
    logp: torch.Tensor,
    inputs: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """Per-token loss, same shape as ``logp``. ``inputs`` are float tensors of that shape
    (``weights`` may be absent); ``loss_fn``/``config`` come from :func:`resolve_loss`."""
    weights = inputs.get("weights")
    if loss_fn == "cross_entropy":
        loss = -logp
    else:
        sampler_logp = inputs["logprobs"]
        advantages = inputs["advantages"]
        if loss_fn == "dro":
            penalty = 0.5 * config["beta"] * (logp - sampler_logp).pow(2)
            loss = penalty - logp * advantages
        else:
            ratio = torch.exp(logp - sampler_logp)
            if loss_fn == "importance_sampling":
                loss = -ratio * advantages
            else:
                clipped = ratio.clamp(config["clip_low_threshold"], config["clip_high_threshold"])
                if loss_fn == "ppo":
                    loss = -torch.minimum(ratio * advantages, clipped * advantages)
                else:  # cispo
                    loss = -clipped.detach() * logp * advantages
    return loss * weights if weights is not None else loss

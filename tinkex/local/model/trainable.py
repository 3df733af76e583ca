"""A LoRA-adapted model that runs ``forward_backward`` and ``optim_step`` like Tinker does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import BaseModel
from .errors import ModelInputError
from .llama import decoder_hidden, unembed
from .lora import LoraSpec, LoraWeights, check_adapter_state, init_adapter_tensors, make_adapters
from .losses import LossDef, elementwise_loss, resolve_loss
from .optim import AdamConfig, AdamW
from .zero import ZERO_LOGPROB, ZeroModel

__all__ = ["DatumArrays", "ForwardBackwardResult", "TrainableModel"]

# Padded tokens per forward chunk; the logits of a chunk take tokens * vocab floats, so big
# vocabularies get smaller chunks (never less than one datum).
_MAX_CHUNK_TOKENS = 8192
_MAX_CHUNK_LOGITS = 1 << 26


@dataclass(frozen=True)
class DatumArrays:
    """One training example: ``tokens`` (int [T], the model input) and dense
    ``loss_fn_inputs`` arrays of shape [T] (``target_tokens`` is already shifted: position
    ``t`` predicts ``target_tokens[t]`` from ``tokens[:t+1]``)."""

    tokens: np.ndarray
    inputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ForwardBackwardResult:
    """Per datum (request order) ``logprobs`` and ``elementwise_loss`` (float32 [T]), and
    metrics keyed ``name:reduction`` (``loss:sum`` is the sum of all elementwise losses)."""

    outputs: list[dict[str, np.ndarray]]
    metrics: dict[str, float]
    loss_fn_output_type: str = "ArrayRecord"


@dataclass(frozen=True)
class _Checked:
    tokens: np.ndarray  # int64 [T]
    targets: np.ndarray  # int64 [T]
    floats: dict[str, np.ndarray]  # float32 [T] each


def _check_datum(
    index: int, datum: DatumArrays, loss: LossDef, vocab_size: int, max_length: int, model: str
) -> _Checked:
    where = f"datum {index}"
    tokens = np.asarray(datum.tokens)
    if tokens.ndim != 1:
        raise ModelInputError(f"{where}: model_input must be 1-D, got shape {tokens.shape}")
    if tokens.size == 0:
        raise ModelInputError(f"{where}: model_input is empty; at least 1 token is required")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ModelInputError(
            f"{where}: model_input must hold integer token ids, not {tokens.dtype}"
        )
    length = int(tokens.size)
    if length > max_length:
        raise ModelInputError(
            f"{where}: model_input has {length} tokens, more than the context length "
            f"{max_length} of {model!r}"
        )
    bad = tokens[(tokens < 0) | (tokens >= vocab_size)]
    if bad.size:
        raise ModelInputError(
            f"{where}: model_input token id {int(bad[0])} is outside the vocabulary "
            f"[0, {vocab_size})"
        )
    inputs = dict(datum.inputs)
    for key in inputs:
        if key not in loss.allowed_inputs:
            raise ModelInputError(
                f"{where}: loss_fn_inputs key {key!r} is not used by loss_fn {loss.name!r} "
                f"(allowed: {', '.join(loss.allowed_inputs)})"
            )
    missing = [key for key in loss.required_inputs if key not in inputs]
    if missing:
        raise ModelInputError(
            f"{where}: loss_fn {loss.name!r} requires loss_fn_inputs "
            f"{', '.join(loss.required_inputs)}; missing {', '.join(missing)}"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in inputs.items():
        array = np.asarray(value)
        if array.ndim != 1 or array.size != length:
            raise ModelInputError(
                f"{where}: loss_fn_inputs[{key!r}] has shape {array.shape}, but model_input has "
                f"{length} tokens; it must have shape ({length},)"
            )
        if key == "target_tokens":
            if not np.issubdtype(array.dtype, np.integer):
                raise ModelInputError(
                    f"{where}: loss_fn_inputs['target_tokens'] must hold integer token ids, "
                    f"not {array.dtype}"
                )
            bad = array[(array < 0) | (array >= vocab_size)]
            if bad.size:
                raise ModelInputError(
                    f"{where}: loss_fn_inputs['target_tokens'] token id {int(bad[0])} is outside "
                    f"the vocabulary [0, {vocab_size})"
                )
        else:
            if not (
                np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            ):
                raise ModelInputError(
                    f"{where}: loss_fn_inputs[{key!r}] must be numbers, not {array.dtype}"
                )
            array = array.astype(np.float32)
            if not np.isfinite(array).all():
                position = int(np.flatnonzero(~np.isfinite(array))[0])
                raise ModelInputError(
                    f"{where}: loss_fn_inputs[{key!r}] has {array[position]} at position "
                    f"{position}; values must be finite"
                )
        arrays[key] = array
    targets = arrays.pop("target_tokens").astype(np.int64)
    return _Checked(tokens=tokens.astype(np.int64), targets=targets, floats=arrays)


def _chunks(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Datum indices grouped (longest first) so each padded chunk stays within ``budget``
    tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        if current and max(width, lengths[i]) * (len(current) + 1) > budget:
            groups.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, lengths[i])
    if current:
        groups.append(current)
    return groups


def _zero_forward(
    checked: Sequence[_Checked], loss_fn: str, config: Mapping[str, float]
) -> ForwardBackwardResult:
    """:class:`ZeroModel`: every token's logprob is :data:`ZERO_LOGPROB`; the real loss
    function turns it into the elementwise loss. No decoder and no gradient."""
    outputs: list[dict[str, np.ndarray]] = []
    total = 0.0
    for datum in checked:
        logp = np.full(datum.tokens.size, ZERO_LOGPROB, dtype=np.float32)
        inputs = {k: torch.from_numpy(v) for k, v in datum.floats.items()}
        losses = elementwise_loss(loss_fn, config, torch.from_numpy(logp), inputs).numpy()
        total += float(losses.sum(dtype=np.float64))
        outputs.append({"logprobs": logp, "elementwise_loss": losses.astype(np.float32)})
    return ForwardBackwardResult(outputs=outputs, metrics={"loss:sum": total})


class TrainableModel:
    """LoRA adapters (trainable, float32) on a shared frozen :class:`BaseModel`, with an
    AdamW optimizer. Gradients accumulate over ``forward_backward`` calls until
    :meth:`optim_step` applies and clears them."""

    def __init__(self, base: BaseModel, spec: LoraSpec) -> None:
        if not isinstance(spec, LoraSpec):
            raise TypeError(f"spec must be a LoraSpec, got {type(spec).__name__}")
        self.base = base
        self.spec = spec
        self._params = {
            k: t.requires_grad_(True) for k, t in init_adapter_tensors(base, spec).items()
        }
        self._adapters = make_adapters(spec, self._params)
        self._optimizer = AdamW(self._params)

    @property
    def optim_steps(self) -> int:
        """Optimizer steps taken so far (restored by :meth:`load_optimizer_state`)."""
        return self._optimizer.step_count

    @property
    def num_trainable_parameters(self) -> int:
        return sum(t.numel() for t in self._params.values())

    def forward_backward(
        self,
        batch: Sequence[DatumArrays],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
        *,
        forward_only: bool,
    ) -> ForwardBackwardResult:
        """Run the model on ``batch`` and, unless ``forward_only``, add the gradient of the
        summed loss to the accumulated gradients. Every datum is validated before any work
        (:class:`ModelInputError` leaves the gradients untouched)."""
        definition, config = resolve_loss(loss_fn, loss_fn_config)
        checked = [
            _check_datum(
                i, d, definition, self.base.vocab_size, self.base.max_context_length, self.base.name
            )
            for i, d in enumerate(batch)
        ]
        if isinstance(self.base, ZeroModel):
            return _zero_forward(checked, definition.name, config)
        lengths = [c.tokens.size for c in checked]
        budget = max(
            max(lengths, default=1),
            min(_MAX_CHUNK_TOKENS, _MAX_CHUNK_LOGITS // self.base.vocab_size),
        )
        outputs: list[dict[str, np.ndarray]] = [{} for _ in checked]
        total = 0.0
        float_keys = sorted({k for c in checked for k in c.floats})
        for group in _chunks(lengths, budget):
            width = max(lengths[i] for i in group)
            tokens = torch.zeros(len(group), width, dtype=torch.int64)
            targets = torch.zeros(len(group), width, dtype=torch.int64)
            mask = torch.zeros(len(group), width, dtype=torch.bool)
            floats = {k: torch.zeros(len(group), width) for k in float_keys}
            for row, i in enumerate(group):
                n = lengths[i]
                tokens[row, :n] = torch.from_numpy(checked[i].tokens)
                targets[row, :n] = torch.from_numpy(checked[i].targets)
                mask[row, :n] = True
                for key, array in checked[i].floats.items():
                    floats[key][row, :n] = torch.from_numpy(array)
            with torch.set_grad_enabled(not forward_only):
                hidden = decoder_hidden(self.base.weights, self._adapters, tokens)
                logits = unembed(self.base.weights, self._adapters, hidden)
                logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
                losses = elementwise_loss(definition.name, config, logp, floats)
                losses = torch.where(mask, losses, torch.zeros(()))
                loss = losses.sum()
                if not forward_only:
                    torch.autograd.backward(loss)
            total += float(loss.detach())
            logp_np = logp.detach().numpy()
            losses_np = losses.detach().numpy()
            for row, i in enumerate(group):
                n = lengths[i]
                outputs[i] = {
                    "logprobs": logp_np[row, :n].astype(np.float32, copy=True),
                    "elementwise_loss": losses_np[row, :n].astype(np.float32, copy=True),
                }
        return ForwardBackwardResult(outputs=outputs, metrics={"loss:sum": total})

    def optim_step(self, params: AdamConfig) -> dict[str, float]:
        """Apply one AdamW step with the accumulated gradients, then clear them. Returns
        ``grad_norm:mean`` (before clipping) and ``learning_rate:mean``."""
        if not isinstance(params, AdamConfig):
            raise TypeError(f"params must be an AdamConfig, got {type(params).__name__}")
        return self._optimizer.step(params)

    def zero_grad(self) -> None:
        """Drop accumulated gradients without stepping."""
        for tensor in self._params.values():
            tensor.grad = None

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Adapter weights: flat names (see :mod:`.lora`), CPU float32 contiguous copies."""
        return {k: t.detach().clone().contiguous() for k, t in self._params.items()}

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        """AdamW moments and the step count (``"step"``, int64 scalar) as flat tensors.

        Gradients accumulated since the last :meth:`optim_step` are not part of any state.
        """
        return self._optimizer.state_dict()

    def load_adapter_state(self, sd: Mapping[str, torch.Tensor]) -> None:
        """Replace the adapter weights (and drop accumulated gradients); raises
        :class:`ModelInputError` on a key or shape mismatch without changing anything."""
        loaded = check_adapter_state(self.base, self.spec, sd)
        with torch.no_grad():
            for key, tensor in loaded.items():
                self._params[key].copy_(tensor)
        self.zero_grad()

    def load_optimizer_state(self, sd: Mapping[str, torch.Tensor]) -> None:
        """Replace the optimizer state; raises :class:`ModelInputError` on a mismatch."""
        self._optimizer.load_state_dict(sd)

    def lora_weights(self) -> LoraWeights:
        """A detached, immutable snapshot of the current adapters for sampling."""
        return LoraWeights(self.base, self.spec, self.adapter_state())

    def __repr__(self) -> str:
        return f"TrainableModel(base={self.base.name!r}, spec={self.spec!r})"

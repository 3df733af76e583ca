"""``forward_backward_custom``: train with a loss written in torch, on the client.

The service only knows its built-in losses, but every one of them is a function of the
target tokens' log-probabilities, and ``cross_entropy`` is linear in them: its loss is
``sum(-weights * logprobs)``, so its gradient with respect to the model's parameters is the
gradient of the logprobs weighted by ``-weights``. Any differentiable loss ``L(logprobs)``
can therefore be trained in two passes (PROTOCOL §4.6):

1. a ``forward`` (``cross_entropy``, forward only) returns each datum's ``logprobs``;
2. the user's ``loss_fn`` runs in torch on those logprobs (made leaves that require grad),
   and autograd gives ``dL/dlogprobs``;
3. a ``cross_entropy`` ``forward_backward`` with the same datums and
   ``weights = -dL/dlogprobs`` puts exactly ``dL/dparameters`` into the model's gradients.

Ordering: the call reserves its ``2 * C`` seq_ids (``C`` requests per pass) when it is made,
so requests made before it run before it and requests made after it (an ``optim_step``) run
after its second pass. A call that fails before its second pass was sent (the forward failed,
the loss raised or returned something unusable, the future was cancelled) still fills its
second-pass seq_ids, with a forward-only pass that changes nothing, so that the server never
waits for numbers that will not come and later calls go on as if this one had not been made.

torch is needed only here; it is imported when a custom loss is used
(``pip install 'tinkex[torch]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np

from tinkex.actors.io_loop import LoopContext, LoopStoppedError
from tinkex.actors.jobs import JobFuture, complete, new_job_id
from tinkex.actors.training import ModelState, TrainingJob, chunk_data, forward_backward_job
from tinkex.errors import TinkexError
from tinkex.futures import APIFuture
from tinkex.protocol import encode_forward_backward_request
from tinkex.types import Datum, ForwardBackwardOutput, TensorData

if TYPE_CHECKING:
    import torch

    from tinkex.actors.runtime import Runtime

__all__ = ["TORCH_INSTALL_HINT", "CustomLossError", "CustomLossFn", "submit_custom_loss"]

log = logging.getLogger("tinkex.custom_loss")

CustomLossFn: TypeAlias = Callable[
    [list[Datum], list["torch.Tensor"]], tuple["torch.Tensor", Mapping[str, Any]]
]
"""``loss_fn(data, logprobs_list) -> (loss, metrics)``: ``logprobs_list[i]`` holds the
target-token logprobs of ``data[i]`` (float32, shaped like its ``target_tokens``); ``loss``
is a scalar tensor computed from them; ``metrics`` maps names to numbers."""

TORCH_INSTALL_HINT: Final = "pip install 'tinkex[torch]'"
SURROGATE_LOSS: Final = "cross_entropy"
"""The built-in loss both passes use; linear in the logprobs, so it carries any gradient."""
_METHOD: Final = "TrainingClient.forward_backward_custom"
_NOTE: Final = f"(raised by the loss_fn given to {_METHOD})"


class CustomLossError(TinkexError, ValueError):
    """The loss function of ``forward_backward_custom`` returned something unusable."""


def _require_torch() -> ModuleType:
    """torch, or an ``ImportError`` that says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{_METHOD} evaluates your loss with PyTorch, which is not installed; install it "
            f"with: {TORCH_INSTALL_HINT}"
        ) from exc
    return torch


def submit_custom_loss(
    runtime: Runtime, state: ModelState, data: Sequence[Datum], loss_fn: CustomLossFn
) -> APIFuture[ForwardBackwardOutput]:
    """Start a custom-loss forward/backward on the model of ``state``; see the module doc.

    Raises at once (nothing sent, no seq_id used) when torch is missing or the arguments
    are wrong; everything after that fails the returned future.
    """
    _require_torch()
    if not callable(loss_fn):
        raise TypeError(
            f"{_METHOD}: loss_fn must be a callable loss_fn(data, logprobs_list) -> "
            f"(loss, metrics), got {type(loss_fn).__name__}"
        )
    if not data:
        raise ValueError(f"{_METHOD} needs at least one Datum in data")
    chunks = chunk_data([_forward_datum(index, datum) for index, datum in enumerate(data)])
    for chunk in chunks:
        # Encoding fails on some inputs (a token id beyond int32, ...): fail here, before the
        # seq_ids are reserved, where a failure cannot leave a hole later calls wait behind.
        encode_forward_backward_request(
            model_id=state.model_id, seq_id=None, data=chunk, loss_fn=SURROGATE_LOSS
        )
    loop = runtime.loop()  # before reserving, too: no seq_ids for a job that never starts
    job = state.reserve(
        2 * len(chunks), lambda seq_ids: CustomLossJob(state, list(data), loss_fn, chunks, seq_ids)
    )
    # A loop that is restarting keeps the job on its board and runs it on the next one.
    with contextlib.suppress(LoopStoppedError):
        loop.spawn(job)
    return runtime.future(job.result)


@dataclass
class CustomLossJob:
    """Both passes of one call and the loss between them; safe to run again after a crash
    of the I/O loop (each pass resubmits with its seq_ids, the loss is evaluated once)."""

    state: ModelState
    data: list[Datum]
    loss_fn: CustomLossFn
    chunks: list[list[Datum]]
    """The first pass's datums (target_tokens and weights only), as sent."""
    seq_ids: list[int]
    job_id: str = field(default_factory=lambda: new_job_id("custom-loss"))
    result: JobFuture[ForwardBackwardOutput] = field(default_factory=JobFuture)
    _forward: TrainingJob | None = None
    _loss: _EvaluatedLoss | None = None
    _backward: TrainingJob | None = None
    _filler: TrainingJob | None = None

    async def run(self, ctx: LoopContext) -> None:
        try:
            if self._loss is None:
                forward_output = await self._forward_pass(ctx)
                if self.result.cancelled():
                    await self._fill_backward_slots(ctx)
                    return
                self._loss = await asyncio.to_thread(
                    _evaluate_loss, self.data, forward_output, self.loss_fn
                )
            output = await self._backward_pass(ctx, self._loss)
        except asyncio.CancelledError:
            raise  # the loop is restarting: the job runs again
        except Exception:
            if self._backward is None:
                await self._fill_backward_slots(ctx)
            raise
        complete(self.result, self._loss.merge_into(output))

    def _pass(
        self, seq_ids: list[int], chunks: Sequence[Sequence[Datum]], *, forward_only: bool
    ) -> TrainingJob:
        return forward_backward_job(
            self.state,
            seq_ids,
            chunks,
            SURROGATE_LOSS,
            None,
            forward_only=forward_only,
            sdk_method=_METHOD,
        )

    async def _forward_pass(self, ctx: LoopContext) -> ForwardBackwardOutput:
        if self._forward is None:
            self._forward = self._pass(
                self.seq_ids[: len(self.chunks)], self.chunks, forward_only=True
            )
        if not self._forward.result.done():
            await self._forward.run(ctx)
        first = self._forward.submissions[0]
        self.result.submitted(first.request_id, first.request_type)
        output: ForwardBackwardOutput = self._forward.result.result()
        return output

    async def _backward_pass(self, ctx: LoopContext, loss: _EvaluatedLoss) -> ForwardBackwardOutput:
        if self._backward is None:
            chunks, start = [], 0
            for chunk in self.chunks:
                chunks.append(loss.backward_data[start : start + len(chunk)])
                start += len(chunk)
            self._backward = self._pass(
                self.seq_ids[len(self.chunks) :], chunks, forward_only=False
            )
        if not self._backward.result.done():
            await self._backward.run(ctx)
        first = self._backward.submissions[0]
        self.result.submitted(first.request_id, first.request_type)
        output: ForwardBackwardOutput = self._backward.result.result()
        return output

    async def _fill_backward_slots(self, ctx: LoopContext) -> None:
        """Use the second pass's seq_ids for a forward-only pass, whose result nobody needs."""
        if self._filler is None:
            self._filler = self._pass(
                self.seq_ids[len(self.chunks) :], self.chunks, forward_only=True
            )
        try:
            await self._filler.run(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("the stand-in for a failed custom-loss pass failed too", exc_info=True)


@dataclass(frozen=True)
class _EvaluatedLoss:
    """What the user's loss gave: the second pass's datums, the loss value, its metrics."""

    backward_data: list[Datum]
    value: float
    metrics: dict[str, float]

    def merge_into(self, output: ForwardBackwardOutput) -> ForwardBackwardOutput:
        """The second pass's output with the custom loss as ``loss:sum``; the server's
        (the surrogate's, meaningless on its own) kept as ``surrogate_loss:sum``."""
        metrics = dict(output.metrics)
        surrogate = metrics.pop("loss:sum", None)
        if surrogate is not None:
            metrics["surrogate_loss:sum"] = surrogate
        metrics["loss:sum"] = self.value
        metrics.update(self.metrics)
        return output.model_copy(update={"metrics": metrics})


def _evaluate_loss(
    data: Sequence[Datum], forward: ForwardBackwardOutput, loss_fn: CustomLossFn
) -> _EvaluatedLoss:
    """Run ``loss_fn`` on the forward pass's logprobs and turn its gradient into weights."""
    import torch  # present: submit_custom_loss checked

    if len(forward.loss_fn_outputs) != len(data):
        raise CustomLossError(
            f"the forward pass returned {len(forward.loss_fn_outputs)} outputs for "
            f"{len(data)} datums"
        )
    logprobs: list[torch.Tensor] = []
    for index, output in enumerate(forward.loss_fn_outputs):
        if "logprobs" not in output:
            raise CustomLossError(
                f"the forward pass returned no 'logprobs' for data[{index}] (it returned "
                f"{sorted(output)}); the server does not support custom losses"
            )
        tensor = output["logprobs"].to_torch().to(torch.float32)
        logprobs.append(tensor.requires_grad_(True))
    try:
        returned = loss_fn(list(data), logprobs)
    except Exception as exc:
        exc.add_note(_NOTE)
        raise
    loss, value, metrics = _unpack(returned)
    try:
        torch.autograd.backward(loss)
    except RuntimeError as exc:
        raise CustomLossError(f"backpropagating the loss failed: {exc}") from exc
    backward_data = []
    for index, (datum, tensor) in enumerate(zip(data, logprobs, strict=True)):
        # A datum the loss does not depend on gets no gradient: weight 0 everywhere.
        grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
        weights = (-grad).detach().numpy()
        if not np.isfinite(weights).all():
            raise CustomLossError(
                f"the gradient of the loss with respect to data[{index}]'s logprobs is not "
                "finite (nan or inf); check the loss for log(0), division by zero or overflow"
            )
        backward_data.append(
            Datum(
                model_input=datum.model_input,
                loss_fn_inputs={
                    "target_tokens": datum.loss_fn_inputs["target_tokens"],
                    "weights": TensorData.from_numpy(weights),
                },
            )
        )
    return _EvaluatedLoss(backward_data, value, metrics)


def _unpack(returned: Any) -> tuple[torch.Tensor, float, dict[str, float]]:
    """Check what ``loss_fn`` returned, ``(scalar tensor with grad, {name: number})``: the
    loss tensor, its value and the metrics as floats."""
    import torch

    if not isinstance(returned, tuple) or len(returned) != 2:
        raise CustomLossError(
            f"loss_fn must return a (loss, metrics) tuple, got {type(returned).__name__}; "
            "return e.g. (loss, {}) when there are no metrics"
        )
    loss, metrics = returned
    if not isinstance(loss, torch.Tensor):
        raise CustomLossError(
            f"loss_fn returned a {type(loss).__name__} as the loss; it must be a torch.Tensor "
            "computed from the logprobs tensors (not a number: the gradient is needed)"
        )
    if loss.numel() != 1:
        raise CustomLossError(
            f"loss_fn returned a loss of shape {tuple(loss.shape)}; it must be a scalar, "
            "e.g. reduce it with .sum() or .mean()"
        )
    if not loss.requires_grad:
        raise CustomLossError(
            "loss_fn returned a loss that does not require grad, so it has no gradient with "
            "respect to the logprobs; compute it from the logprobs tensors with torch "
            "operations (no .item(), .detach(), .numpy() or torch.no_grad() on the way)"
        )
    value = float(loss.detach().reshape(()))
    if not math.isfinite(value):
        raise CustomLossError(f"loss_fn returned a non-finite loss ({value})")
    if not isinstance(metrics, Mapping):
        raise CustomLossError(
            f"loss_fn returned a {type(metrics).__name__} as metrics; it must be a dict of "
            "name -> number (or {})"
        )
    numbers: dict[str, float] = {}
    for key, metric in metrics.items():
        try:
            number = float(metric.detach()) if isinstance(metric, torch.Tensor) else float(metric)
        except (TypeError, ValueError, RuntimeError):
            number = None
        if not isinstance(key, str) or number is None:
            raise CustomLossError(
                f"loss_fn metric {key!r} is {metric!r}; metrics must map str names to numbers "
                "(or one-element tensors)"
            )
        numbers[key] = number
    return loss, value, numbers


def _forward_datum(index: int, datum: Datum) -> Datum:
    """``datum`` as the first pass sends it: the loss's own inputs stay on the client."""
    targets = datum.loss_fn_inputs.get("target_tokens")
    if targets is None:
        raise ValueError(
            f"{_METHOD}: data[{index}] has no loss_fn_inputs['target_tokens']; every datum "
            "needs the target token of each position (your loss gets their logprobs)"
        )
    weights = datum.loss_fn_inputs.get("weights")
    if weights is None:
        weights = TensorData.from_numpy(np.zeros(targets.to_numpy().shape, dtype=np.float32))
    return Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": targets, "weights": weights},
    )

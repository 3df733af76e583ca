"""TrainingClient: the facade of one remote LoRA model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tinkex.actors.tokenizer_cache import get_tokenizer
from tinkex.actors.training import ModelState, TrainingActor
from tinkex.clients.custom_loss import CustomLossFn, submit_custom_loss
from tinkex.futures import APIFuture
from tinkex.tokenizers import Tokenizer
from tinkex.types import (
    AdamParams,
    Datum,
    ForwardBackwardOutput,
    GetInfoResponse,
    LoadWeightsResponse,
    OptimStepResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
)

if TYPE_CHECKING:
    from .sampling import SamplingClient
    from .service import ServiceClient


class TrainingClient:
    """Train one LoRA model: forward/backward passes, optimizer steps, checkpoints.

    Every method returns an :class:`~tinkex.futures.APIFuture` at once; calls are numbered
    in the order you make them and the server runs them in that order.
    """

    def __init__(self, service: ServiceClient, state: ModelState, info: GetInfoResponse) -> None:
        self._service = service
        self._state = state
        self._info = info
        self._name = f"training:{state.model_id}"

    @property
    def model_id(self) -> str:
        return self._state.model_id

    def __repr__(self) -> str:
        return f"TrainingClient(model_id={self.model_id!r}, base_model={self.base_model!r})"

    @property
    def base_model(self) -> str | None:
        return self._info.model_data.model_name or self._info.model_name

    def get_info(self) -> GetInfoResponse:
        """The model's info, fetched when the client was created (no request)."""
        return self._info

    def get_tokenizer(self, **options: Any) -> Tokenizer:
        """The tokenizer of this model, loaded once per process and shared.

        Uses the ``tokenizer_id`` the server gave in :meth:`get_info` (``:revision``
        stripped), else derives one from the base model's name. ``options`` are those of
        :func:`tinkex.get_tokenizer` (``tokenizer_id`` to override, a local path included,
        ``revision``, ``cache_dir``, ``tiktoken_model_path``, ``tokenizer_config_path``,
        ``timeout``). No chat template is ever applied. Raises ``TokenizerError``.
        """
        options.setdefault("tokenizer_id", self._info.model_data.tokenizer_id)
        return get_tokenizer(self.base_model, **options)

    def _call(self, method: str, *args: Any) -> APIFuture[Any]:
        runtime = self._service._runtime
        runtime.ensure_client_actor(self._name, TrainingActor, runtime=runtime, state=self._state)
        try:
            future = runtime.call(self._name, method, *args)
        except Exception as exc:
            return APIFuture.failed(exc)
        return runtime.future(future)

    def forward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: dict[str, float | str] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """A forward pass: per-datum outputs and metrics, no gradients."""
        return self._call("forward_backward", _datums(data), loss_fn, loss_fn_config, True)

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: dict[str, float | str] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Forward and backward: gradients accumulate on the server until ``optim_step``."""
        return self._call("forward_backward", _datums(data), loss_fn, loss_fn_config, False)

    def forward_backward_custom(
        self, data: Sequence[Datum], loss_fn: CustomLossFn
    ) -> APIFuture[ForwardBackwardOutput]:
        """Forward and backward with a loss you write in torch (needs ``tinkex[torch]``).

        ``loss_fn(data, logprobs_list) -> (loss, metrics)`` gets each datum's target-token
        logprobs as a tensor that requires grad and returns a scalar loss tensor and a dict
        of numbers. Two requests run on the server: a forward pass for the logprobs and a
        ``cross_entropy`` forward_backward weighted by ``-dloss/dlogprobs``, which puts the
        loss's gradient into the model. The output's ``loss:sum`` is your loss; the server's
        is kept as ``surrogate_loss:sum``; your metrics are added. Every datum needs
        ``target_tokens``; other ``loss_fn_inputs`` stay on the client for ``loss_fn`` to read.
        Ordered like :meth:`forward_backward` with the calls before and after it.
        """
        datums = _datums(data)
        return submit_custom_loss(self._service._runtime, self._state, datums, loss_fn)

    def optim_step(
        self, optim_params: AdamParams | None = None, *, adam_params: AdamParams | None = None
    ) -> APIFuture[OptimStepResponse]:
        """Apply the accumulated gradients with AdamW."""
        params = optim_params or adam_params
        if params is None:
            raise TypeError(
                "optim_step needs AdamParams (optim_step(AdamParams(learning_rate=...)))"
            )
        return self._call("optim_step", params)

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<run>/weights/<name>``."""
        return self._call("save_state", name, ttl_seconds, overwrite, user_metadata)

    def load_state(self, path: str) -> APIFuture[LoadWeightsResponse]:
        """Load weights (not the optimizer state) from a ``tinker://`` path into this model."""
        return self._call("load_state", path, False)

    def load_state_with_optimizer(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return self._call("load_state", path, True)

    def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Save the adapter as ``tinker://<run>/sampler_weights/<name>`` for sampling."""
        return self._call("save_weights_for_sampler", name, ttl_seconds, None, user_metadata)

    def save_weights_and_get_sampling_client(
        self, name: str | None = None
    ) -> APIFuture[SamplingClient]:
        """A sampling client on a snapshot of the current weights (nothing named is saved).

        ``name`` is accepted for code written for the official SDK, where it no longer has
        any effect either; use :meth:`save_weights_for_sampler` for a named checkpoint.
        """
        session = self._state.session_id
        service = self._service
        seq = service._runtime.call("session_manager", "next_sampling_seq_id", session)
        saved = self._call("save_weights_for_sampler", None, None, seq, None)

        def to_client(response: SaveWeightsForSamplerResponse) -> SamplingClient:
            if response.sampling_session_id is None:
                raise ValueError("the server did not return a sampling_session_id")
            return service._sampling_client(response.sampling_session_id, self.base_model)

        return saved.map(to_client)

    def create_sampling_client(self, model_path: str) -> APIFuture[SamplingClient]:
        return self._service.create_sampling_client(model_path=model_path)

    # asyncio twins: the same calls, made from a worker thread so that the event loop never
    # blocks (not even for the call into the actor); await the coroutine to get the APIFuture
    async def forward_async(self, *args: Any, **kwargs: Any) -> APIFuture[ForwardBackwardOutput]:
        return await asyncio.to_thread(self.forward, *args, **kwargs)

    async def forward_backward_async(
        self, *args: Any, **kwargs: Any
    ) -> APIFuture[ForwardBackwardOutput]:
        return await asyncio.to_thread(self.forward_backward, *args, **kwargs)

    async def forward_backward_custom_async(
        self, data: Sequence[Datum], loss_fn: CustomLossFn
    ) -> APIFuture[ForwardBackwardOutput]:
        return await asyncio.to_thread(self.forward_backward_custom, data, loss_fn)

    async def optim_step_async(self, *args: Any, **kwargs: Any) -> APIFuture[OptimStepResponse]:
        return await asyncio.to_thread(self.optim_step, *args, **kwargs)

    async def save_state_async(self, *args: Any, **kwargs: Any) -> APIFuture[SaveWeightsResponse]:
        return await asyncio.to_thread(self.save_state, *args, **kwargs)

    async def save_weights_for_sampler_async(
        self, *args: Any, **kwargs: Any
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        return await asyncio.to_thread(self.save_weights_for_sampler, *args, **kwargs)

    async def load_state_async(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return await asyncio.to_thread(self.load_state, path)

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[LoadWeightsResponse]:
        return await asyncio.to_thread(self.load_state_with_optimizer, path)

    async def save_weights_and_get_sampling_client_async(
        self, name: str | None = None
    ) -> APIFuture[SamplingClient]:
        return await asyncio.to_thread(self.save_weights_and_get_sampling_client, name)


def _datums(data: Sequence[Datum]) -> list[Datum]:
    items = list(data)
    for index, item in enumerate(items):
        if not isinstance(item, Datum):
            raise TypeError(
                f"data[{index}] is a {type(item).__name__}; pass tinkex.Datum objects "
                "(Datum(model_input=..., loss_fn_inputs={...}))"
            )
    return items

"""SamplingClient: the facade of one sampling session."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tinkex.actors.sampling import SamplerState, SamplingActor, submit_sample
from tinkex.actors.tokenizer_cache import get_tokenizer
from tinkex.futures import APIFuture
from tinkex.tokenizers import Tokenizer
from tinkex.types import GetSamplerResponse, ModelInput, SampleResponse, SamplingParams

if TYPE_CHECKING:
    from tinkex.transport import Transport

    from .service import ServiceClient


class SamplingClient:
    """Sample from a base model or trained weights; every call returns an APIFuture."""

    def __init__(self, service: ServiceClient, state: SamplerState) -> None:
        self._service = service
        self._state = state
        self._name = f"sampling:{state.sampling_session_id}"

    @property
    def sampling_session_id(self) -> str:
        return self._state.sampling_session_id

    def __repr__(self) -> str:
        return f"SamplingClient(sampling_session_id={self.sampling_session_id!r})"

    def get_base_model(self) -> str | None:
        return self._state.base_model

    def get_tokenizer(self, **options: Any) -> Tokenizer:
        """The tokenizer of this sampler's base model, loaded once per process and shared.

        The tokenizer id is derived from the base model's name (asked of the server with
        ``GET /api/v1/samplers/{id}`` if this client does not know it yet). ``options`` are
        those of :func:`tinkex.get_tokenizer` (``tokenizer_id`` to override, a local path
        included, ``revision``, ``cache_dir``, ``tiktoken_model_path``,
        ``tokenizer_config_path``, ``timeout``). No chat template is ever applied. Raises
        ``TokenizerError``.
        """
        return get_tokenizer(self._state.base_model or self._fetch_base_model(), **options)

    def _fetch_base_model(self) -> str:
        runtime = self._service._runtime
        path = f"samplers/{self.sampling_session_id}"

        async def fetch(transport: Transport) -> str:
            raw = await transport.request_json("GET", path)
            return GetSamplerResponse.model_validate(raw).base_model

        call = runtime.loop().call(lambda ctx: fetch(ctx.transport(self._state.config)))
        self._state.base_model = runtime.future(call).result()
        return self._state.base_model

    def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> APIFuture[SampleResponse]:
        """Sample ``num_samples`` continuations of ``prompt``."""
        runtime = self._service._runtime
        runtime.ensure_client_actor(self._name, SamplingActor, state=self._state)
        try:
            future = submit_sample(
                runtime,
                self._state,
                prompt,
                num_samples,
                sampling_params,
                include_prompt_logprobs,
                topk_prompt_logprobs,
            )
        except Exception as exc:
            return APIFuture.failed(exc)
        return runtime.future(future)

    def compute_logprobs(self, prompt: ModelInput) -> APIFuture[list[float | None]]:
        """The log-probability of each prompt token given those before it (first: None)."""
        response = self.sample(
            prompt, 1, SamplingParams(max_tokens=1), include_prompt_logprobs=True
        )
        return response.map(_prompt_logprobs)

    async def sample_async(self, *args: Any, **kwargs: Any) -> APIFuture[SampleResponse]:
        return await asyncio.to_thread(self.sample, *args, **kwargs)

    async def compute_logprobs_async(self, prompt: ModelInput) -> APIFuture[list[float | None]]:
        return await asyncio.to_thread(self.compute_logprobs, prompt)


def _prompt_logprobs(response: SampleResponse) -> list[float | None]:
    if response.prompt_logprobs is None:
        raise ValueError("the server returned no prompt_logprobs")
    return response.prompt_logprobs

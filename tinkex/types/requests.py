"""Request and response bodies of the JSON endpoints (PROTOCOL.md §2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import WireModel
from .model_input import ModelInput
from .sampling import SamplingParams
from .tensor_data import TensorData
from .training import AdamParams, ForwardBackwardInput, LoraConfig, OptimizerConfig


class ClientConfigRequest(WireModel):
    sdk_version: str


class ClientConfigResponse(WireModel):
    pjwt_auth_enabled: bool = False
    parallel_fwdbwd_chunks: bool = True
    proto_compress_fwdbwd: bool = False
    fwdbwd_max_chunk_len: int = 1024
    fwdbwd_max_chunk_bytes_count: int = 5_000_000


class CreateSessionRequest(WireModel):
    tags: list[str] = Field(default_factory=list)
    user_metadata: dict[str, Any] | None = None
    sdk_version: str
    project_id: str | None = None
    display_name: str | None = None
    type: Literal["create_session"] = "create_session"


class CreateSessionResponse(WireModel):
    session_id: str
    type: Literal["create_session"] = "create_session"
    info_message: str | None = None
    warning_message: str | None = None
    error_message: str | None = None


class SessionHeartbeatRequest(WireModel):
    session_id: str
    type: Literal["session_heartbeat"] = "session_heartbeat"


class SessionHeartbeatResponse(WireModel):
    type: Literal["session_heartbeat"] = "session_heartbeat"


class FinishReason(WireModel):
    type: Literal["success", "errored", "interrupted"]


class SessionFinishRequest(WireModel):
    reason: FinishReason
    detail: str | None = None


class CreateModelRequest(WireModel):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, str] | None = None
    lora_config: LoraConfig | None = None
    optimizer_config: OptimizerConfig = Field(default_factory=OptimizerConfig)
    type: Literal["create_model"] = "create_model"


class CreateModelResponse(WireModel):
    model_id: str
    type: Literal["create_model"] = "create_model"


class ModelData(WireModel):
    arch: str | None = None
    model_name: str | None = None
    tokenizer_id: str | None = None


class GetInfoRequest(WireModel):
    model_id: str
    type: Literal["get_info"] = "get_info"


class GetInfoResponse(WireModel):
    model_data: ModelData
    model_id: str
    optimizer_config: OptimizerConfig = Field(default_factory=OptimizerConfig)
    is_lora: bool | None = None
    lora_rank: int | None = None
    model_name: str | None = None
    type: Literal["get_info"] | None = None


class UnloadModelRequest(WireModel):
    model_id: str
    type: Literal["unload_model"] = "unload_model"


class UnloadModelResponse(WireModel):
    model_id: str
    type: Literal["unload_model"] | None = None


class ForwardRequest(WireModel):
    """The legacy JSON ``/forward`` body (SDKs up to 0.24)."""

    forward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


class OptimStepRequest(WireModel):
    model_id: str
    seq_id: int | None = None
    adam_params: AdamParams | None = None
    optimizer_params: dict[str, Any] | None = None
    type: Literal["optim_step"] = "optim_step"


class SaveWeightsRequest(WireModel):
    model_id: str
    path: str | None = None
    seq_id: int | None = None
    ttl_seconds: int | None = None
    overwrite: bool = False
    user_metadata: dict[str, str] | None = None
    type: Literal["save_weights"] = "save_weights"


class SaveWeightsResponse(WireModel):
    path: str
    type: Literal["save_weights"] | None = None


class SaveWeightsForSamplerRequest(WireModel):
    model_id: str
    path: str | None = None
    sampling_session_seq_id: int | None = None
    kind: Literal["snapshot", "inflight"] = "snapshot"
    seq_id: int | None = None
    ttl_seconds: int | None = None
    user_metadata: dict[str, str] | None = None
    type: Literal["save_weights_for_sampler"] = "save_weights_for_sampler"


class SaveWeightsForSamplerResponse(WireModel):
    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class LoadWeightsRequest(WireModel):
    model_id: str | None = None
    seq_id: int | None = None
    session_id: str | None = None
    model_seq_id: int | None = None
    base_model: str | None = None
    user_metadata: dict[str, Any] | None = None
    path: str
    optimizer: bool = False
    optimizer_config: OptimizerConfig | None = None
    weights_access_token: str | None = None
    type: Literal["load_weights"] = "load_weights"


class LoadWeightsResponse(WireModel):
    path: str | None = None
    model_id: str | None = None
    type: Literal["load_weights"] | None = None


class WeightsInfoRequest(WireModel):
    tinker_path: str


class WeightsInfoResponse(WireModel):
    base_model: str
    is_lora: bool
    optimizer_config: OptimizerConfig = Field(default_factory=OptimizerConfig)
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None


class CreateSamplingSessionRequest(WireModel):
    session_id: str
    sampling_session_seq_id: int
    base_model: str | None = None
    model_path: str | None = None
    type: Literal["create_sampling_session"] = "create_sampling_session"


class CreateSamplingSessionResponse(WireModel):
    sampling_session_id: str
    type: Literal["create_sampling_session"] | None = None


class GetSamplerResponse(WireModel):
    sampler_id: str
    base_model: str
    model_path: str | None = None


class SampleRequest(WireModel):
    num_samples: int = Field(default=1, ge=1)
    prompt: ModelInput
    sampling_params: SamplingParams
    base_model: str | None = None
    model_path: str | None = None
    sampling_session_id: str | None = None
    seq_id: int | None = None
    prompt_logprobs: bool | None = None
    topk_prompt_logprobs: int = Field(default=0, ge=0)
    topk_sample_logprobs: int = Field(default=0, ge=0)
    target_prompt_logprobs: TensorData | None = None
    prompt_alt_tokens_k: int = Field(default=0, ge=0)
    prompt_logprobs_last_n: int | None = None
    record_stability_info: bool | None = None
    type: Literal["sample"] = "sample"


class FutureRetrieveRequest(WireModel):
    request_id: str
    allow_metadata_only: bool = False


class UntypedAPIFuture(WireModel):
    """A promise: poll ``retrieve_future`` with ``request_id`` for the result."""

    request_id: str
    model_id: str | None = None
    sample_sequence_ids: list[str] | None = None


QueueState = Literal["active", "paused_capacity", "paused_rate_limit", "unknown"]


class TryAgainResponse(WireModel):
    type: Literal["try_again"] = "try_again"
    request_id: str
    queue_state: QueueState = "active"
    queue_state_reason: str | None = None


RequestErrorCategory = Literal["unknown", "server", "user"]


class RequestFailedResponse(WireModel):
    error: str
    category: RequestErrorCategory = "unknown"


class SupportedModel(WireModel):
    model_name: str | None = None
    max_context_length: int | None = None
    trainable: bool | None = None
    sampleable: bool | None = None


class GetServerCapabilitiesResponse(WireModel):
    supported_models: list[SupportedModel]


class HealthResponse(WireModel):
    status: Literal["ok"] = "ok"

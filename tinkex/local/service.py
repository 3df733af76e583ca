"""What each endpoint of the local server does, independent of HTTP.

Methods answer immediately (a response model) or with a :class:`Promise` whose work runs on
the engine's compute thread. Callers are identified by ``owner``, an opaque tenant id
derived from their API key; everything they create is theirs alone unless published.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np

from tinkex.protocol import DecodedDatum, DecodedForwardBackward
from tinkex.protocol.chunks import ProtoChunk
from tinkex.types import (
    CheckpointsListResponse,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    Cursor,
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    GetInfoRequest,
    GetInfoResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    GetSessionResponse,
    ListSessionsResponse,
    LoadWeightsRequest,
    LoraConfig,
    ModelData,
    ModelInput,
    OptimStepRequest,
    ParsedTinkerPath,
    SampleRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SupportedModel,
    TelemetrySendRequest,
    TrainingRun,
    TrainingRunsResponse,
    UnloadModelRequest,
    UntypedAPIFuture,
    WeightsInfoResponse,
)
from tinkex.types.chunks import ModelInputChunk
from tinkex.types.rest import SessionSearchRequest, SessionSearchResponse

from .archives import ArchiveSigner, ArchiveTicket, TarStream
from .catalog import ModelCatalog
from .config import ServerConfig
from .engine import Engine, ModelLane
from .errors import BadRequest, Gone, NotFound, RequestFailed
from .faults import FaultInjector
from .images import reject_non_text
from .model import (
    AdamConfig,
    BaseModel,
    DatumArrays,
    LoraSpec,
    LoraWeights,
    Sampler,
    TrainableModel,
)
from .promises import JsonResult, PromiseStore
from .results import ForwardBackwardPayload, SamplePayload
from .session_search import search_sessions
from .store import RunRow, SessionRow, Store, StoredCheckpoint, check_checkpoint_name, check_ttl

log = logging.getLogger("tinkex.local.service")

TELEMETRY_BATCHES_KEPT = 1000
"""Telemetry batches remembered per owner (the oldest are forgotten first)."""
ADAPTER_FILE = "adapter.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


@dataclass
class TrainingState:
    """A live training model: what the lane's create or load job built."""

    run_id: str
    base_name: str
    base: BaseModel
    lora: LoraConfig
    model: TrainableModel
    corrupted: bool = False


@dataclass
class SamplerState:
    sampler_id: str
    owner: str
    base_name: str
    model_path: str | None
    lora_source: Callable[[], LoraWeights | None]
    """Builds the adapter on first use (loading a checkpoint runs on the compute thread)."""
    ephemeral: bool = False
    sampler: Sampler | None = None
    lane: ModelLane | None = None
    """The engine lane of a sampling session (None for direct base_model/model_path samples);
    it deduplicates seq_ids and counts towards the owner's sampler limit."""


class LocalService:
    """The Tinker API over an engine, a store and a catalog of base models."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = Store(config.data_dir)
        self.promises = PromiseStore(config.promise_ttl_seconds)
        self.catalog = ModelCatalog(config.models)
        self.engine = Engine(
            self.promises,
            capacity_limit=config.capacity_limit,
            max_models_per_owner=config.max_training_clients_per_key,
            max_samplers_per_owner=config.max_samplers_per_key,
            seq_gap_timeout=config.seq_gap_timeout_seconds,
        )
        self.faults = FaultInjector(config.faults)
        self.archives = ArchiveSigner()
        self._samplers: dict[str, SamplerState] = {}
        self._telemetry: dict[str, deque[TelemetrySendRequest]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.shutdown()
        self.store.close()

    # capabilities and sessions ----------------------------------------------------------

    def capabilities(self) -> GetServerCapabilitiesResponse:
        return GetServerCapabilitiesResponse(
            supported_models=[
                SupportedModel(model_name=name, trainable=True, sampleable=True)
                for name in self.catalog.names
            ]
        )

    def create_session(self, owner: str, req: CreateSessionRequest) -> CreateSessionResponse:
        session_id = self.store.create_session(
            owner=owner,
            tags=req.tags,
            user_metadata=req.user_metadata,
            project_id=req.project_id,
            display_name=req.display_name,
            sdk_version=req.sdk_version,
        )
        return CreateSessionResponse(session_id=session_id)

    def heartbeat(self, owner: str, session_id: str) -> None:
        session = self._session(owner, session_id, allow_finished=True)
        if session.finish_reason is not None:
            raise Gone(f"session {session_id} has finished ({session.finish_reason})")
        self.store.heartbeat(session_id)

    def finish_session(self, owner: str, session_id: str, reason: str, detail: str | None) -> None:
        self._session(owner, session_id, allow_finished=True)
        if self.store.finish_session(session_id, reason, detail):
            self._release_session(session_id)

    def list_sessions(self, owner: str, limit: int, offset: int) -> ListSessionsResponse:
        return ListSessionsResponse(sessions=self.store.list_sessions(owner, limit, offset))

    def get_session(self, owner: str, session_id: str) -> GetSessionResponse:
        session = self._session(owner, session_id, allow_finished=True)
        return GetSessionResponse(
            training_run_ids=self.store.runs_of_session(session_id),
            sampler_ids=self.store.samplers_of_session(session_id),
            user_metadata=session.user_metadata,
            display_name=session.display_name,
        )

    def assign_session_project(self, owner: str, session_id: str, project_id: str) -> None:
        """Move a session (and so its runs, for ``list_training_runs(project_id=)``)."""
        self._session(owner, session_id, allow_finished=True)
        self.store.set_session_project(session_id, project_id)

    def search_sessions(self, owner: str, req: SessionSearchRequest) -> SessionSearchResponse:
        return search_sessions(self.store, owner, req)

    def _session(self, owner: str, session_id: str, *, allow_finished: bool = False) -> SessionRow:
        session = self.store.get_session(session_id)
        if session is None or session.owner != owner:
            raise NotFound(f"session {session_id!r} does not exist")
        if session.finish_reason is not None and not allow_finished:
            raise BadRequest(
                f"session {session_id} has finished ({session.finish_reason}); create a new "
                "ServiceClient to start another session"
            )
        return session

    def _release_session(self, session_id: str) -> None:
        for run_id in self.store.runs_of_session(session_id):
            self.engine.close_lane(run_id)
        for sampler_id in self.store.samplers_of_session(session_id):
            self.engine.close_lane(sampler_id)
            with self._lock:
                self._samplers.pop(sampler_id, None)

    # telemetry --------------------------------------------------------------------------

    def record_telemetry(self, owner: str, batch: TelemetrySendRequest) -> None:
        """Keep an accepted batch in memory (the last few per owner) for inspection."""
        with self._lock:
            kept = self._telemetry.setdefault(owner, deque(maxlen=TELEMETRY_BATCHES_KEPT))
            kept.append(batch)

    def telemetry_batches(
        self, owner: str, session_id: str | None = None
    ) -> list[TelemetrySendRequest]:
        """The owner's recorded batches, oldest first, optionally of one session only."""
        with self._lock:
            batches = list(self._telemetry.get(owner, ()))
        return [b for b in batches if session_id is None or b.session_id == session_id]

    # training models --------------------------------------------------------------------

    def create_model(self, owner: str, req: CreateModelRequest) -> UntypedAPIFuture:
        self._session(owner, req.session_id)
        self.catalog.check(req.base_model)
        if req.optimizer_config.type != "adamw":
            raise BadRequest(
                f"optimizer_config type {req.optimizer_config.type!r} is not supported by the "
                "local backend; use adamw"
            )
        lora = req.lora_config or LoraConfig(rank=32)
        run_id = f"{req.session_id}:train:{req.model_seq_id}"
        lane, created = self.engine.open_lane(run_id, owner)
        if not created:
            return self._existing_create(lane, run_id)

        def create() -> JsonResult:
            base = self.catalog.get(req.base_model)
            model = TrainableModel(base, _lora_spec(lora))
            lane.state = TrainingState(run_id, req.base_model, base, lora, model)
            self.store.create_run(
                run_id=run_id,
                session_id=req.session_id,
                owner=owner,
                base_model=req.base_model,
                lora_config=lora.model_dump(),
                user_metadata=req.user_metadata,
            )
            return JsonResult({"model_id": run_id, "type": "create_model"})

        request_id = self._submit_create(lane, "CreateModel", create)
        return UntypedAPIFuture(request_id=request_id, model_id=run_id)

    def load_weights(self, owner: str, req: LoadWeightsRequest) -> UntypedAPIFuture:
        checkpoint = self.store.checkpoint_at(req.path, owner)
        if req.optimizer and checkpoint.record.checkpoint_type != "training":
            raise BadRequest(
                f"{req.path} is a sampler checkpoint and holds no optimizer state; load a "
                "'weights/' checkpoint saved with save_state to restore the optimizer"
            )
        if req.model_id is not None:
            lane = self._lane(owner, req.model_id)
            request_id = self.engine.submit_ordered(
                lane, req.seq_id, "LoadWeights", lambda: self._load_into(lane, checkpoint, req)
            )
            return UntypedAPIFuture(request_id=request_id, model_id=req.model_id)
        if req.session_id is None or req.model_seq_id is None:
            raise BadRequest(
                "load_weights needs either model_id (load onto an existing model) or "
                "session_id and model_seq_id (create a model from the checkpoint)"
            )
        self._session(owner, req.session_id)
        base_name = str(checkpoint.meta.get("base_model", ""))
        if req.base_model is not None and req.base_model != base_name:
            raise BadRequest(
                f"base_model {req.base_model!r} does not match the checkpoint, which was "
                f"trained on {base_name!r}"
            )
        self.catalog.check(base_name)
        lora = LoraConfig.model_validate(checkpoint.meta["lora"])
        run_id = f"{req.session_id}:train:{req.model_seq_id}"
        lane, created = self.engine.open_lane(run_id, owner)
        if not created:
            return self._existing_create(lane, run_id)

        def create_from_checkpoint() -> JsonResult:
            base = self.catalog.get(base_name)
            model = TrainableModel(base, _lora_spec(lora))
            _restore(model, checkpoint, optimizer=req.optimizer)
            lane.state = TrainingState(run_id, base_name, base, lora, model)
            self.store.create_run(
                run_id=run_id,
                session_id=req.session_id or "",
                owner=owner,
                base_model=base_name,
                lora_config=lora.model_dump(),
                user_metadata=req.user_metadata,
            )
            return JsonResult({"path": req.path, "model_id": run_id, "type": "load_weights"})

        request_id = self._submit_create(lane, "LoadWeights", create_from_checkpoint)
        return UntypedAPIFuture(request_id=request_id, model_id=run_id)

    def _submit_create(self, lane: ModelLane, request_type: str, work: Any) -> str:
        def forget_on_failure() -> JsonResult:
            try:
                result: JsonResult = work()
                return result
            except BaseException:
                # A model that failed to come up must not keep a slot or block a retry.
                self.engine.close_lane(lane.model_id)
                raise

        return self.engine.submit_ordered(lane, 0, request_type, forget_on_failure)

    def _existing_create(self, lane: ModelLane, run_id: str) -> UntypedAPIFuture:
        first = lane.seen.get(0)
        if first is None:
            raise BadRequest(f"model {run_id} already exists")
        return UntypedAPIFuture(request_id=first, model_id=run_id)

    def _load_into(
        self, lane: ModelLane, checkpoint: StoredCheckpoint, req: LoadWeightsRequest
    ) -> JsonResult:
        state = _training_state(lane)
        if checkpoint.meta.get("base_model") != state.base_name:
            raise BadRequest(
                f"{req.path} was trained on {checkpoint.meta.get('base_model')!r}, but model "
                f"{lane.model_id} uses {state.base_name!r}"
            )
        _restore(state.model, checkpoint, optimizer=req.optimizer)
        return JsonResult({"path": req.path, "model_id": lane.model_id, "type": "load_weights"})

    def get_info(self, owner: str, req: GetInfoRequest) -> GetInfoResponse:
        state = _training_state(self._lane(owner, req.model_id))
        return GetInfoResponse(
            model_data=ModelData(
                arch=state.base.arch,
                model_name=state.base_name,
                tokenizer_id=state.base.tokenizer_id,
            ),
            model_id=req.model_id,
            is_lora=True,
            lora_rank=state.lora.rank,
            model_name=state.base_name,
            type="get_info",
        )

    def unload_model(self, owner: str, req: UnloadModelRequest) -> UntypedAPIFuture:
        lane = self._lane(owner, req.model_id)

        def unload() -> JsonResult:
            self.engine.close_lane(lane.model_id)
            return JsonResult({"model_id": req.model_id, "type": "unload_model"})

        request_id = self.engine.submit_ordered(lane, None, "UnloadModel", unload)
        return UntypedAPIFuture(request_id=request_id, model_id=req.model_id)

    def _lane(self, owner: str, model_id: str) -> ModelLane:
        lane = self.engine.lane(model_id)
        if lane is None or lane.owner != owner:
            run = self.store.get_run(model_id)
            if run is not None and run.owner == owner:
                raise NotFound(
                    f"model {model_id} is not loaded: it was unloaded, its session ended, or "
                    "the server restarted. Restore it from a checkpoint with "
                    "create_training_client_from_state"
                )
            raise NotFound(f"model {model_id!r} does not exist")
        return lane

    # training operations ----------------------------------------------------------------

    def forward_backward(self, owner: str, req: DecodedForwardBackward) -> UntypedAPIFuture:
        lane = self._lane(owner, req.model_id)
        if not req.data:
            raise BadRequest("forward_backward needs at least one datum")
        request_type = "Forward" if req.forward_only else "ForwardBackward"

        def run() -> ForwardBackwardPayload:
            state = _usable_state(lane)
            # Image datums are refused here, as a failed future: refusing the submission
            # would leave a hole in the model's seq_ids that later requests wait behind.
            batch = [
                _arrays_from_decoded(i, d.tokens, d.chunks, d.inputs, state.base_name)
                for i, d in enumerate(req.data)
            ]
            result = state.model.forward_backward(
                batch, req.loss_fn, req.loss_fn_config, forward_only=req.forward_only
            )
            self.store.touch_run(lane.model_id)
            return ForwardBackwardPayload(result)

        seq_id = req.seq_id if req.seq_id else None
        request_id = self.engine.submit_ordered(
            lane, seq_id, request_type, run, on_crash=self._corrupt(lane)
        )
        return UntypedAPIFuture(request_id=request_id, model_id=req.model_id)

    def forward_json(
        self,
        owner: str,
        model_id: str,
        seq_id: int | None,
        forward_input: ForwardBackwardInput,
        *,
        forward_only: bool,
    ) -> UntypedAPIFuture:
        """The legacy JSON ``/forward`` and ``/forward_backward`` bodies (SDKs up to 0.24)."""
        decoded = DecodedForwardBackward(
            model_id=model_id,
            seq_id=seq_id or 0,
            loss_fn=forward_input.loss_fn,
            loss_fn_config=dict(forward_input.loss_fn_config or {}),
            forward_only=forward_only,
            data=[_decoded_from_datum(datum) for datum in forward_input.data],
        )
        return self.forward_backward(owner, decoded)

    def optim_step(self, owner: str, req: OptimStepRequest) -> UntypedAPIFuture:
        lane = self._lane(owner, req.model_id)
        if req.adam_params is None:
            raise BadRequest(
                "optim_step needs adam_params: the local backend's models use AdamW"
                + (" (optimizer_params was given instead)" if req.optimizer_params else "")
            )
        params = req.adam_params

        def run() -> JsonResult:
            state = _usable_state(lane)
            metrics = state.model.optim_step(AdamConfig(**params.model_dump()))
            self.store.touch_run(lane.model_id)
            return JsonResult({"metrics": dict(metrics)})

        request_id = self.engine.submit_ordered(
            lane, req.seq_id, "OptimStep", run, on_crash=self._corrupt(lane)
        )
        return UntypedAPIFuture(request_id=request_id, model_id=req.model_id)

    def save_weights(self, owner: str, req: SaveWeightsRequest) -> UntypedAPIFuture:
        lane = self._lane(owner, req.model_id)
        if not req.path:
            raise BadRequest("save_weights needs path, the checkpoint name")
        check_checkpoint_name(req.path)
        check_ttl(req.ttl_seconds)
        name = req.path

        def run() -> JsonResult:
            state = _usable_state(lane)
            record = self.store.save_checkpoint(
                run_id=lane.model_id,
                owner=owner,
                checkpoint_type="training",
                name=name,
                files={
                    ADAPTER_FILE: state.model.adapter_state(),
                    OPTIMIZER_FILE: state.model.optimizer_state(),
                },
                meta=_checkpoint_meta(state),
                ttl_seconds=req.ttl_seconds,
                user_metadata=req.user_metadata,
                overwrite=req.overwrite,
            )
            return JsonResult({"path": record.tinker_path, "type": "save_weights"})

        request_id = self.engine.submit_ordered(lane, req.seq_id, "SaveWeights", run)
        return UntypedAPIFuture(request_id=request_id, model_id=req.model_id)

    def save_weights_for_sampler(
        self, owner: str, req: SaveWeightsForSamplerRequest
    ) -> UntypedAPIFuture:
        lane = self._lane(owner, req.model_id)
        check_ttl(req.ttl_seconds)
        if req.path:
            check_checkpoint_name(req.path)
            name = req.path

            def save_named() -> JsonResult:
                state = _usable_state(lane)
                record = self.store.save_checkpoint(
                    run_id=lane.model_id,
                    owner=owner,
                    checkpoint_type="sampler",
                    name=name,
                    files={ADAPTER_FILE: state.model.lora_weights().state_dict()},
                    meta=_checkpoint_meta(state),
                    ttl_seconds=req.ttl_seconds,
                    user_metadata=req.user_metadata,
                    overwrite=True,
                )
                return JsonResult({"path": record.tinker_path, "type": "save_weights_for_sampler"})

            work = save_named
        elif req.sampling_session_seq_id is not None:
            run = self.store.get_run(lane.model_id)
            session_id = run.session_id if run else lane.model_id.split(":train:")[0]
            sampler_id = f"{session_id}:sample:{req.sampling_session_seq_id}"

            def save_ephemeral() -> JsonResult:
                state = _usable_state(lane)
                weights = state.model.lora_weights()
                self._register_sampler(
                    SamplerState(
                        sampler_id=sampler_id,
                        owner=owner,
                        base_name=state.base_name,
                        model_path=None,
                        lora_source=lambda: weights,
                        ephemeral=True,
                    ),
                    session_id,
                )
                return JsonResult(
                    {"sampling_session_id": sampler_id, "type": "save_weights_for_sampler"}
                )

            work = save_ephemeral
        else:
            raise BadRequest(
                "save_weights_for_sampler needs path (a named sampler checkpoint) or "
                "sampling_session_seq_id (an ephemeral sampling session)"
            )
        request_id = self.engine.submit_ordered(lane, req.seq_id, "SaveWeightsForSampler", work)
        return UntypedAPIFuture(request_id=request_id, model_id=req.model_id)

    def weights_info(self, owner: str, tinker_path: str) -> WeightsInfoResponse:
        checkpoint = self.store.checkpoint_at(tinker_path, owner)
        lora = LoraConfig.model_validate(checkpoint.meta["lora"])
        return WeightsInfoResponse(
            base_model=checkpoint.meta["base_model"],
            is_lora=True,
            lora_rank=lora.rank,
            train_unembed=lora.train_unembed,
            train_mlp=lora.train_mlp,
            train_attn=lora.train_attn,
        )

    def _corrupt(self, lane: ModelLane) -> Callable[[BaseException], None]:
        def mark(exc: BaseException) -> None:
            if isinstance(lane.state, TrainingState):
                lane.state.corrupted = True
            self.store.mark_corrupted(lane.model_id)

        return mark

    def corrupt_run(self, owner: str, model_id: str) -> None:
        """Mark a live run corrupted, as a crash mid-step would (for recovery tests)."""
        self._corrupt(self._lane(owner, model_id))(RuntimeError("corrupted on request"))

    # sampling ---------------------------------------------------------------------------

    def create_sampling_session(
        self, owner: str, req: CreateSamplingSessionRequest
    ) -> CreateSamplingSessionResponse:
        self._session(owner, req.session_id)
        sampler_id = f"{req.session_id}:sample:{req.sampling_session_seq_id}"
        with self._lock:
            if sampler_id in self._samplers:
                return CreateSamplingSessionResponse(sampling_session_id=sampler_id)
        state = self._sampler_for(owner, sampler_id, req.base_model, req.model_path)
        self._register_sampler(state, req.session_id)
        return CreateSamplingSessionResponse(sampling_session_id=sampler_id)

    def _sampler_for(
        self, owner: str, sampler_id: str, base_model: str | None, model_path: str | None
    ) -> SamplerState:
        if model_path is not None:
            checkpoint = self.store.checkpoint_at(model_path, owner)
            base_name = str(checkpoint.meta["base_model"])
            if base_model is not None and base_model != base_name:
                raise BadRequest(
                    f"base_model {base_model!r} does not match {model_path}, which was trained "
                    f"on {base_name!r}"
                )
            self.catalog.check(base_name)
            lora = LoraConfig.model_validate(checkpoint.meta["lora"])

            def load() -> LoraWeights:
                base = self.catalog.get(base_name)
                return LoraWeights.from_state_dict(
                    base, _lora_spec(lora), checkpoint.tensors(ADAPTER_FILE)
                )

            return SamplerState(sampler_id, owner, base_name, model_path, load)
        if base_model is None:
            raise BadRequest("create_sampling_session needs base_model or model_path")
        self.catalog.check(base_model)
        return SamplerState(sampler_id, owner, base_model, None, lambda: None)

    def _register_sampler(self, state: SamplerState, session_id: str) -> None:
        state.lane, _ = self.engine.open_lane(state.sampler_id, state.owner, "sampler")
        with self._lock:
            self._samplers[state.sampler_id] = state
        self.store.create_sampler(
            sampler_id=state.sampler_id,
            session_id=session_id,
            owner=state.owner,
            base_model=state.base_name,
            model_path=state.model_path,
            ephemeral=state.ephemeral,
        )

    def get_sampler(self, owner: str, sampler_id: str) -> GetSamplerResponse:
        row = self.store.get_sampler(sampler_id)
        if row is None or row.owner != owner:
            raise NotFound(f"sampler {sampler_id!r} does not exist")
        return GetSamplerResponse(
            sampler_id=sampler_id, base_model=row.base_model, model_path=row.model_path
        )

    def sample(self, owner: str, req: SampleRequest) -> UntypedAPIFuture:
        state = self._sampler_state(owner, req)
        for name, value in (
            ("prompt_alt_tokens_k", req.prompt_alt_tokens_k),
            ("topk_sample_logprobs", req.topk_sample_logprobs),
        ):
            if value:
                raise BadRequest(f"{name}={value} is not supported by the local backend; use 0")
        if req.target_prompt_logprobs is not None:
            raise BadRequest("target_prompt_logprobs is not supported by the local backend")
        prompt = _prompt_tokens(req.prompt, state.base_name)
        last_n = req.prompt_logprobs_last_n
        if last_n is not None and not (req.prompt_logprobs and 1 <= last_n <= len(prompt) - 1):
            raise BadRequest(
                f"prompt_logprobs_last_n={last_n} needs prompt_logprobs=true and a value from 1 "
                f"to len(prompt) - 1 = {len(prompt) - 1}"
            )
        params = req.sampling_params
        ids: list[str] = []

        def run() -> SamplePayload:
            sampler = self._ensure_sampler(state)
            output = sampler.sample(
                prompt,
                num_samples=req.num_samples,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                seed=params.seed,
                stop=params.stop,
                prompt_logprobs=bool(req.prompt_logprobs),
                topk_prompt_logprobs=req.topk_prompt_logprobs,
            )
            if last_n is not None and output.prompt_logprobs is not None:
                output.prompt_logprobs[: len(prompt) - last_n] = np.nan
            return SamplePayload(output, ids)

        if state.lane is not None:
            request_id = self.engine.submit_ordered(state.lane, req.seq_id, "Sample", run)
        else:
            request_id = self.engine.submit("Sample", owner, run).request_id
        ids.extend(f"{request_id}:{i}" for i in range(req.num_samples))
        return UntypedAPIFuture(request_id=request_id, sample_sequence_ids=ids)

    def _sampler_state(self, owner: str, req: SampleRequest) -> SamplerState:
        if req.sampling_session_id is not None:
            with self._lock:
                state = self._samplers.get(req.sampling_session_id)
            if state is None:
                state = self._restored_sampler(owner, req.sampling_session_id)
            if state.owner != owner:
                raise NotFound(f"sampling session {req.sampling_session_id!r} does not exist")
            return state
        key = f"direct:{owner}:{req.model_path or req.base_model}"
        with self._lock:
            cached = self._samplers.get(key)
        if cached is not None:
            return cached
        state = self._sampler_for(owner, key, req.base_model, req.model_path)
        with self._lock:
            return self._samplers.setdefault(key, state)

    def _restored_sampler(self, owner: str, sampler_id: str) -> SamplerState:
        """A sampler known to the store but not in memory (the server restarted)."""
        row = self.store.get_sampler(sampler_id)
        if row is None or row.owner != owner or row.ephemeral:
            raise NotFound(
                f"sampling session {sampler_id!r} does not exist (ephemeral samplers from "
                "save_weights_and_get_sampling_client do not survive a server restart)"
            )
        session = self.store.get_session(row.session_id)
        if session is None or session.finish_reason is not None:
            raise NotFound(
                f"sampling session {sampler_id!r} belongs to a finished session; create a new "
                "sampling client"
            )
        state = self._sampler_for(owner, sampler_id, row.base_model, row.model_path)
        self._register_sampler(state, row.session_id)
        return state

    def _ensure_sampler(self, state: SamplerState) -> Sampler:
        if state.sampler is None:
            state.sampler = Sampler(self.catalog.get(state.base_name), state.lora_source())
        return state.sampler

    # REST -------------------------------------------------------------------------------

    def list_runs(
        self,
        owner: str,
        limit: int,
        offset: int,
        *,
        accessible: bool = False,
        project_id: str | None = None,
    ) -> TrainingRunsResponse:
        """The owner's runs; ``accessible`` adds other tenants' runs with a published
        checkpoint, ``project_id`` keeps only runs of sessions in that project."""
        rows, total = self.store.list_runs(
            owner, limit, offset, accessible=accessible, project_id=project_id
        )
        return TrainingRunsResponse(
            training_runs=[self._training_run(row, owner) for row in rows],
            cursor=Cursor(offset=offset, limit=limit, total_count=total),
        )

    def get_run(self, owner: str, run_id: str, *, accessible: bool = False) -> TrainingRun:
        row = self.store.get_run(run_id)
        visible = row is not None and (
            row.owner == owner or (accessible and self.store.has_public_checkpoint(run_id))
        )
        if row is None or not visible:
            raise NotFound(f"training run {run_id!r} does not exist")
        return self._training_run(row, owner)

    def _training_run(self, row: RunRow, viewer: str) -> TrainingRun:
        """A run as ``viewer`` may see it: another tenant sees only published checkpoints."""
        checkpoints = self.store.list_checkpoints(row.run_id)
        if viewer != row.owner:
            checkpoints = [c for c in checkpoints if c.public]
        training = [c for c in checkpoints if c.checkpoint_type == "training"]
        sampler = [c for c in checkpoints if c.checkpoint_type == "sampler"]
        return TrainingRun(
            training_run_id=row.run_id,
            base_model=row.base_model,
            model_owner=row.owner,
            is_lora=True,
            corrupted=row.corrupted,
            lora_rank=int(row.lora_config["rank"]),
            last_request_time=row.last_request_time,
            last_checkpoint=training[-1] if training else None,
            last_sampler_checkpoint=sampler[-1] if sampler else None,
            user_metadata=row.user_metadata,
        )

    def list_checkpoints(self, owner: str, run_id: str) -> CheckpointsListResponse:
        self.get_run(owner, run_id)
        checkpoints = self.store.list_checkpoints(run_id)
        return CheckpointsListResponse(
            checkpoints=checkpoints,
            cursor=Cursor(offset=0, limit=len(checkpoints), total_count=len(checkpoints)),
        )

    def list_user_checkpoints(self, owner: str, limit: int, offset: int) -> CheckpointsListResponse:
        checkpoints, total = self.store.list_user_checkpoints(owner, limit, offset)
        return CheckpointsListResponse(
            checkpoints=checkpoints, cursor=Cursor(offset=offset, limit=limit, total_count=total)
        )

    def owned_checkpoint(
        self, owner: str, run_id: str, checkpoint_id: str, *, allow_public: bool = False
    ) -> StoredCheckpoint:
        """One of ``owner``'s checkpoints (or, with ``allow_public``, a published one)."""
        path = f"tinker://{run_id}/{checkpoint_id}"
        try:
            ParsedTinkerPath.parse(path)
        except ValueError:
            raise BadRequest(
                f"checkpoint id {checkpoint_id!r} must be '<kind>/<name>' with kind weights or "
                "sampler_weights, e.g. 'weights/step-10'"
            ) from None
        found = self.store.find_checkpoint(run_id, checkpoint_id)
        if found is None or (found.owner != owner and not (allow_public and found.record.public)):
            raise NotFound(f"checkpoint {path} does not exist")
        return found

    def delete_checkpoint(self, owner: str, run_id: str, checkpoint_id: str) -> None:
        self.owned_checkpoint(owner, run_id, checkpoint_id)
        self.store.delete_checkpoint(run_id, checkpoint_id)

    def set_public(self, owner: str, run_id: str, checkpoint_id: str, public: bool) -> None:
        self.owned_checkpoint(owner, run_id, checkpoint_id)
        self.store.set_public(run_id, checkpoint_id, public)

    def set_ttl(self, owner: str, run_id: str, checkpoint_id: str, ttl: int | None) -> None:
        self.owned_checkpoint(owner, run_id, checkpoint_id)
        self.store.set_ttl(run_id, checkpoint_id, ttl)

    def archive_url(self, owner: str, run_id: str, checkpoint_id: str) -> tuple[str, ArchiveTicket]:
        """A signed token for downloading one of the owner's, or a published, checkpoint."""
        self.owned_checkpoint(owner, run_id, checkpoint_id, allow_public=True)
        return self.archives.issue(owner, run_id, checkpoint_id)

    def archive(self, token: str) -> TarStream:
        """The tar of the checkpoint a token grants (still there, and still the holder's or
        published: unpublishing revokes other tenants' URLs)."""
        ticket = self.archives.check(token)
        found = self.owned_checkpoint(
            ticket.owner, ticket.run_id, ticket.checkpoint_id, allow_public=True
        )
        return TarStream(found.directory)

    # housekeeping -----------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire promises, checkpoints and silent sessions; run past seq_id gaps."""
        self.promises.expire()
        self.store.expire_checkpoints()
        cutoff = datetime.now(UTC) - timedelta(seconds=self.config.session_timeout_seconds)
        for session_id in self.store.stale_sessions(cutoff):
            log.info("session %s sent no heartbeat in time; expiring it", session_id)
            self.store.finish_session(session_id, "expired", "no heartbeat")
            self._release_session(session_id)
        self.engine.skip_gaps()


def _lora_spec(lora: LoraConfig) -> LoraSpec:
    return LoraSpec(
        rank=lora.rank,
        seed=lora.seed,
        train_attn=lora.train_attn,
        train_mlp=lora.train_mlp,
        train_unembed=lora.train_unembed,
    )


def _checkpoint_meta(state: TrainingState) -> dict[str, Any]:
    return {"format": 1, "base_model": state.base_name, "lora": state.lora.model_dump()}


def _restore(model: TrainableModel, checkpoint: StoredCheckpoint, *, optimizer: bool) -> None:
    model.load_adapter_state(checkpoint.tensors(ADAPTER_FILE))
    if optimizer:
        model.load_optimizer_state(checkpoint.tensors(OPTIMIZER_FILE))


def _training_state(lane: ModelLane) -> TrainingState:
    if not isinstance(lane.state, TrainingState):
        raise NotFound(f"model {lane.model_id} is still being created; wait for create_model")
    return lane.state


def _usable_state(lane: ModelLane) -> TrainingState:
    state = _training_state(lane)
    if state.corrupted:
        raise RequestFailed(
            f"training run {lane.model_id} is corrupted after an internal error; restore it "
            "from its last checkpoint",
            "server",
        )
    return state


def _prompt_tokens(prompt: ModelInput, model: str) -> np.ndarray:
    return _text_tokens(prompt.chunks, "prompt", model)


def _text_tokens(chunks: Sequence[ModelInputChunk], where: str, model: str) -> np.ndarray:
    reject_non_text(chunks, model=model, where=where)
    tokens: list[int] = []
    for chunk in chunks:
        assert isinstance(chunk, EncodedTextChunk)
        tokens.extend(chunk.tokens)
    return np.asarray(tokens, dtype=np.int64)


def _arrays_from_decoded(
    index: int,
    tokens: np.ndarray | None,
    chunks: Sequence[ModelInputChunk],
    inputs: dict[str, np.ndarray],
    model: str,
) -> DatumArrays:
    if tokens is None:
        tokens = _text_tokens(chunks, f"datum {index}'s model_input", model)
    return DatumArrays(tokens=tokens, inputs=inputs)


def _decoded_from_datum(datum: Datum) -> DecodedDatum:
    chunks = datum.model_input.chunks
    inputs = {name: tensor.to_numpy() for name, tensor in datum.loss_fn_inputs.items()}
    if not all(isinstance(chunk, EncodedTextChunk) for chunk in chunks):
        # Refused when the request runs (see forward_backward), like protobuf image datums.
        return DecodedDatum(chunks=cast(list[ProtoChunk], list(chunks)), tokens=None, inputs=inputs)
    tokens = np.asarray(datum.model_input.to_ints(), dtype=np.int64)
    return DecodedDatum(
        chunks=[EncodedTextChunk(tokens=tokens.tolist())], tokens=tokens, inputs=inputs
    )

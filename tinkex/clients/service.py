"""ServiceClient: the entry point; opens a session and creates training and sampling clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from types import TracebackType
from typing import Any, Literal

from tinkex.actors.runtime import Runtime
from tinkex.actors.sampling import SamplerState
from tinkex.actors.submission import Submission
from tinkex.actors.training import ModelState
from tinkex.config import Config
from tinkex.errors import redact_url
from tinkex.futures import APIFuture, decode_json
from tinkex.reporting import TelemetryReporter
from tinkex.reporting import context as telemetry_context
from tinkex.transport import Transport
from tinkex.types import (
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    GetInfoResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    LoraConfig,
)

from ._oneshot import OneShotJob
from .rest import RestClient
from .sampling import SamplingClient
from .training import TrainingClient

log = logging.getLogger("tinkex.client")


class ServiceClient:
    """Talks to one Tinker service (or ``tinkex serve``) as one session.

    Keyword arguments are :class:`~tinkex.config.Config` fields (``api_key``, ``base_url``,
    ``timeout``, ...), falling back to the environment (``TINKER_API_KEY``, ...). The
    session is opened on first use and finished by :meth:`close` or the ``with`` block.
    """

    def __init__(
        self,
        user_metadata: dict[str, Any] | None = None,
        project_id: str | None = None,
        *,
        display_name: str | None = None,
        config: Config | None = None,
        **config_fields: Any,
    ) -> None:
        if config is None:
            config = Config.from_env(
                project_id=project_id, user_metadata=user_metadata, **config_fields
            )
        self.config = config
        self._display_name = display_name
        self._runtime = Runtime.get()
        self._session_id: str | None = None
        self._reporter: TelemetryReporter | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        base_url = redact_url(self.config.base_url)
        return f"ServiceClient(base_url={base_url!r}, session_id={self._session_id!r})"

    @property
    def session_id(self) -> str:
        """The session's id; opens the session if this is the first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this ServiceClient is closed; create a new one")
            if self._session_id is None:
                self._session_id = self._runtime.call(
                    "session_manager",
                    "open",
                    self.config,
                    user_metadata=self.config.user_metadata,
                    display_name=self._display_name,
                )
                self._reporter = self._start_reporter(self._session_id)
            return self._session_id

    @property
    def telemetry_reporter(self) -> TelemetryReporter | None:
        """The session's reporter to ``/api/v1/telemetry`` (``log``, ``log_exception``,
        ``flush``); ``None`` when telemetry is disabled (``TINKER_TELEMETRY=0``).

        The reporter belongs to the session, so this opens the session if nothing has yet
        (like :attr:`session_id`); on a client closed before its session opened it is
        ``None`` too."""
        if self.config.telemetry and self._reporter is None:
            with contextlib.suppress(RuntimeError):  # closed: there is no session to report
                _ = self.session_id  # opens the session and starts its reporter
        return self._reporter

    def _start_reporter(self, session_id: str) -> TelemetryReporter | None:
        if not self.config.telemetry:
            return None
        try:
            return TelemetryReporter.start(self._runtime, self.config, session_id)
        except Exception:  # telemetry must never cost the user their session
            log.warning("could not start the telemetry reporter; continuing without", exc_info=True)
            return None

    # training ---------------------------------------------------------------------------

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[TrainingClient]:
        """Create a LoRA model on ``base_model``; the future holds its TrainingClient."""
        lora = LoraConfig(
            rank=rank,
            seed=seed,
            train_mlp=train_mlp,
            train_attn=train_attn,
            train_unembed=train_unembed,
        )
        session = self.session_id
        request = CreateModelRequest(
            session_id=session,
            model_seq_id=self._runtime.call("session_manager", "next_model_seq_id", session),
            base_model=base_model,
            user_metadata=user_metadata,
            lora_config=lora,
        )
        submission = Submission(
            "create_model",
            "CreateModel",
            None,
            json=request.to_wire(),
            sdk_method="ServiceClient.create_lora_training_client",
        )
        return self._create_training(submission, decode_json(CreateModelResponse))

    def create_training_client_from_state(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, Any] | None = None
    ) -> APIFuture[TrainingClient]:
        """A new model restored from a ``tinker://`` checkpoint (weights only)."""
        return self._restore(path, base_model, user_metadata, optimizer=False)

    def create_training_client_from_state_with_optimizer(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, Any] | None = None
    ) -> APIFuture[TrainingClient]:
        """A new model restored from a ``tinker://`` checkpoint with its optimizer state."""
        return self._restore(path, base_model, user_metadata, optimizer=True)

    def _restore(
        self,
        path: str,
        base_model: str | None,
        user_metadata: dict[str, Any] | None,
        *,
        optimizer: bool,
    ) -> APIFuture[TrainingClient]:
        session = self.session_id
        request = LoadWeightsRequest(
            session_id=session,
            model_seq_id=self._runtime.call("session_manager", "next_model_seq_id", session),
            base_model=base_model,
            user_metadata=user_metadata,
            path=path,
            optimizer=optimizer,
        )
        submission = Submission(
            "load_weights",
            "LoadWeights",
            None,
            json=request.to_wire(),
            sdk_method="ServiceClient.create_training_client_from_state",
        )
        return self._create_training(submission, decode_json(LoadWeightsResponse))

    def _create_training(self, submission: Submission, decode: Any) -> APIFuture[TrainingClient]:
        session = self.session_id

        async def get_info(transport: Transport, created: Any) -> tuple[str, GetInfoResponse]:
            model_id = created.model_id or _model_id_of(submission)
            raw = await transport.request_json(
                "POST", "get_info", json={"model_id": model_id, "type": "get_info"}
            )
            return model_id, GetInfoResponse.model_validate(raw)

        windows = self._runtime.windows()
        job = OneShotJob(
            self.config, submission, decode, get_info, windows, {"session_id": session}
        )
        self._runtime.loop().spawn(job)

        def to_client(created: tuple[str, GetInfoResponse]) -> TrainingClient:
            model_id, info = created
            state = ModelState(model_id, session, self.config, windows)
            return TrainingClient(self, state, info)

        return self._runtime.future(job.result).map(to_client)

    # sampling ---------------------------------------------------------------------------

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> APIFuture[SamplingClient]:
        """Sample from trained weights (``model_path``) or a base model (``base_model``)."""
        if model_path is None and base_model is None:
            raise ValueError("create_sampling_client needs model_path or base_model")
        session = self.session_id
        request = CreateSamplingSessionRequest(
            session_id=session,
            sampling_session_seq_id=self._runtime.call(
                "session_manager", "next_sampling_seq_id", session
            ),
            base_model=base_model,
            model_path=model_path,
        )

        async def create(transport: Transport) -> tuple[str, str | None]:
            telemetry_context.bind({"session_id": session})
            raw = await transport.request_json(
                "POST", "create_sampling_session", json=request.to_wire()
            )
            sampler_id = CreateSamplingSessionResponse.model_validate(raw).sampling_session_id
            if base_model is not None:
                return sampler_id, base_model
            info = await transport.request_json("GET", f"samplers/{sampler_id}")
            return sampler_id, GetSamplerResponse.model_validate(info).base_model

        future = self._runtime.loop().call(lambda ctx: create(ctx.transport(self.config)))
        return self._runtime.future(future).map(lambda created: self._sampling_client(*created))

    def _sampling_client(self, sampling_session_id: str, base_model: str | None) -> SamplingClient:
        if self._reporter is not None:
            self._reporter.track_sampling_session(sampling_session_id)
        return SamplingClient(self, SamplerState(sampling_session_id, base_model, self.config))

    # the rest ---------------------------------------------------------------------------

    def create_rest_client(self) -> RestClient:
        """A :class:`RestClient` with this client's configuration (it needs no session)."""
        return RestClient(config=self.config)

    def get_server_capabilities(self) -> APIFuture[GetServerCapabilitiesResponse]:
        async def fetch(transport: Transport) -> GetServerCapabilitiesResponse:
            raw = await transport.request_json("GET", "get_server_capabilities")
            return GetServerCapabilitiesResponse.model_validate(raw)

        return self._runtime.future(
            self._runtime.loop().call(lambda ctx: fetch(ctx.transport(self.config)))
        )

    def close(
        self,
        status: Literal["success", "errored", "interrupted"] = "success",
        detail: str | None = None,
    ) -> APIFuture[None]:
        """Finish the session on the server (first reason wins); later calls fail.

        Then the telemetry reporter sends ``SESSION_END`` and drains its queue (30 s at most).
        """
        with self._lock:
            if self._closed:
                return APIFuture.completed(None)
            self._closed = True
            session = self._session_id
        if session is None:
            return APIFuture.completed(None)
        try:
            self._runtime.call("session_manager", "finish", session, status, detail)
        except Exception as exc:
            return APIFuture.failed(exc)
        finally:
            if self._reporter is not None:
                self._reporter.close()
        return APIFuture.completed(None)

    # asyncio twins: the same calls, made from a worker thread so that the event loop never
    # blocks (opening the session waits for the network); await to get the APIFuture
    async def create_lora_training_client_async(
        self, *args: Any, **kwargs: Any
    ) -> APIFuture[TrainingClient]:
        return await asyncio.to_thread(self.create_lora_training_client, *args, **kwargs)

    async def create_training_client_from_state_async(
        self, *args: Any, **kwargs: Any
    ) -> APIFuture[TrainingClient]:
        return await asyncio.to_thread(self.create_training_client_from_state, *args, **kwargs)

    async def create_training_client_from_state_with_optimizer_async(
        self, *args: Any, **kwargs: Any
    ) -> APIFuture[TrainingClient]:
        return await asyncio.to_thread(
            self.create_training_client_from_state_with_optimizer, *args, **kwargs
        )

    async def create_sampling_client_async(
        self, *args: Any, **kwargs: Any
    ) -> APIFuture[SamplingClient]:
        return await asyncio.to_thread(self.create_sampling_client, *args, **kwargs)

    async def get_server_capabilities_async(self) -> APIFuture[GetServerCapabilitiesResponse]:
        return await asyncio.to_thread(self.get_server_capabilities)

    async def close_async(
        self,
        status: Literal["success", "errored", "interrupted"] = "success",
        detail: str | None = None,
    ) -> APIFuture[None]:
        return await asyncio.to_thread(self.close, status, detail)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status: Literal["success", "errored", "interrupted"] = "success"
        elif issubclass(exc_type, Exception):
            status = "errored"
            if self._reporter is not None and exc is not None:
                self._reporter.log_exception(exc)
        else:
            status = "interrupted"
        closed = self.close(status, None if exc is None else f"{type(exc).__name__}: {exc}")
        if exc is None:
            closed.result()
            return
        try:
            closed.result()
        except Exception:  # the block's own exception is the one the caller must see
            log.warning("could not finish session %s", self._session_id, exc_info=True)


def _model_id_of(submission: Submission) -> str:
    """The id the protocol assigns to a model created by loading weights."""
    body = submission.json or {}
    return f"{body['session_id']}:train:{body['model_seq_id']}"

"""The Starlette application: one route per Tinker endpoint, over a LocalService."""

from __future__ import annotations

import asyncio
import email.utils
import logging
from typing import Any

from google.protobuf.message import DecodeError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tinkex.protocol import PROTOBUF_CONTENT_TYPE, decode_forward_backward_request, wants_protobuf
from tinkex.types import (
    CheckpointTtlRequest,
    ClientConfigResponse,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    ForwardBackwardInput,
    ForwardRequest,
    FutureRetrieveRequest,
    GetInfoRequest,
    LoadWeightsRequest,
    OptimStepRequest,
    SampleRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SessionFinishRequest,
    SessionHeartbeatRequest,
    SessionHeartbeatResponse,
    TelemetryResponse,
    TelemetrySendRequest,
    TryAgainResponse,
    UnloadModelRequest,
    UntypedAPIFuture,
    WeightsInfoRequest,
)
from tinkex.types.rest import AssignSessionProjectRequest, SessionSearchRequest

from .errors import BadRequest, Gone, ServerError
from .http import (
    DroppedResponse,
    error_response,
    guarded,
    json_response,
    parse,
    read_body,
)
from .promises import Promise
from .service import LocalService

log = logging.getLogger("tinkex.local.app")

PAUSED_POLL_SECONDS = 2.0
"""How long a poll is held while the queue is paused, so clients see the state promptly."""


class Routes:
    """The handlers, bound to one service and one fault injector."""

    def __init__(self, service: LocalService) -> None:
        self.service = service
        self.faults = service.faults

    # config, health, sessions -----------------------------------------------------------

    async def client_config(self, request: Request, owner: str) -> Response:
        return json_response(ClientConfigResponse())

    async def dynamic_config(self, request: Request, owner: str) -> Response:
        return json_response({"refresh_interval_sec": 300})

    async def capabilities(self, request: Request, owner: str) -> Response:
        return json_response(self.service.capabilities())

    async def create_session(self, request: Request, owner: str) -> Response:
        req = await parse(request, CreateSessionRequest)
        return json_response(self.service.create_session(owner, req))

    async def heartbeat(self, request: Request, owner: str) -> Response:
        req = await parse(request, SessionHeartbeatRequest)
        if self.faults.roll("heartbeat_fail_rate"):
            return error_response(503, "fault injection: heartbeat failed")
        self.service.heartbeat(owner, req.session_id)
        return json_response(SessionHeartbeatResponse())

    async def finish_session(self, request: Request, owner: str) -> Response:
        req = await parse(request, SessionFinishRequest)
        session_id = request.path_params["session_id"]
        self.service.finish_session(owner, session_id, req.reason.type, req.detail)
        return json_response({})

    async def telemetry(self, request: Request, owner: str) -> Response:
        batch = await parse(request, TelemetrySendRequest)
        if self.faults.roll("telemetry_5xx_rate"):
            return error_response(503, "fault injection: telemetry unavailable")
        self.service.record_telemetry(owner, batch)
        if self.faults.roll("telemetry_drop_rate"):
            return DroppedResponse()
        return json_response(TelemetryResponse())

    async def telemetry_events(self, request: Request, owner: str) -> Response:
        """The caller's recorded telemetry batches (``?session_id=`` narrows), for tests."""
        session_id = request.query_params.get("session_id") or None
        batches = self.service.telemetry_batches(owner, session_id)
        return json_response({"batches": [b.to_wire() for b in batches]})

    # training ---------------------------------------------------------------------------

    async def create_model(self, request: Request, owner: str) -> Response:
        req = await parse(request, CreateModelRequest)
        return await self._submitted(lambda: self.service.create_model(owner, req))

    async def get_info(self, request: Request, owner: str) -> Response:
        req = await parse(request, GetInfoRequest)
        return json_response(self.service.get_info(owner, req))

    async def unload_model(self, request: Request, owner: str) -> Response:
        req = await parse(request, UnloadModelRequest)
        return await self._submitted(lambda: self.service.unload_model(owner, req))

    async def forward_backward(self, request: Request, owner: str) -> Response:
        content_type = request.headers.get("content-type", "")
        if PROTOBUF_CONTENT_TYPE in content_type:
            body = await read_body(request)
            try:
                decoded = await asyncio.to_thread(decode_forward_backward_request, body)
            except (DecodeError, ValueError) as exc:
                raise BadRequest(
                    f"forward_backward body is not a valid tinker_public.ForwardBackwardRequest "
                    f"protobuf: {exc}"
                ) from None
            return await self._submitted(lambda: self.service.forward_backward(owner, decoded))
        raw = await parse(request, _JsonForwardBackward)
        return await self._submitted(
            lambda: self.service.forward_json(
                owner, raw.model_id, raw.seq_id, raw.forward_backward_input, forward_only=False
            )
        )

    async def forward(self, request: Request, owner: str) -> Response:
        req = await parse(request, ForwardRequest)
        return await self._submitted(
            lambda: self.service.forward_json(
                owner, req.model_id, req.seq_id, req.forward_input, forward_only=True
            )
        )

    async def optim_step(self, request: Request, owner: str) -> Response:
        req = await parse(request, OptimStepRequest)
        return await self._submitted(lambda: self.service.optim_step(owner, req))

    async def save_weights(self, request: Request, owner: str) -> Response:
        req = await parse(request, SaveWeightsRequest)
        return await self._submitted(lambda: self.service.save_weights(owner, req))

    async def save_weights_for_sampler(self, request: Request, owner: str) -> Response:
        req = await parse(request, SaveWeightsForSamplerRequest)
        return await self._submitted(lambda: self.service.save_weights_for_sampler(owner, req))

    async def load_weights(self, request: Request, owner: str) -> Response:
        req = await parse(request, LoadWeightsRequest)
        return await self._submitted(lambda: self.service.load_weights(owner, req))

    async def weights_info(self, request: Request, owner: str) -> Response:
        req = await parse(request, WeightsInfoRequest)
        return json_response(self.service.weights_info(owner, req.tinker_path))

    async def corrupt_run(self, request: Request, owner: str) -> Response:
        req = await parse(request, GetInfoRequest)
        self.service.corrupt_run(owner, req.model_id)
        return json_response({})

    # sampling ---------------------------------------------------------------------------

    async def create_sampling_session(self, request: Request, owner: str) -> Response:
        req = await parse(request, CreateSamplingSessionRequest)
        return json_response(self.service.create_sampling_session(owner, req))

    async def get_sampler(self, request: Request, owner: str) -> Response:
        return json_response(self.service.get_sampler(owner, request.path_params["sampler_id"]))

    async def asample(self, request: Request, owner: str) -> Response:
        req = await parse(request, SampleRequest)
        if self.faults.roll("sample_429_rate"):
            return error_response(
                429, "fault injection: sampling backpressure", headers={"Retry-After": "1"}
            )
        return await self._submitted(lambda: self.service.sample(owner, req))

    async def _submitted(self, submit: Any) -> Response:
        """Answer a submission with its promise, honouring the submit fault knobs."""
        if self.faults.roll("submit_429_rate"):
            return error_response(
                429, "fault injection: too many requests", headers={"Retry-After": "1"}
            )
        if self.faults.roll("submit_5xx_rate"):
            return error_response(503, "fault injection: service unavailable")
        future: UntypedAPIFuture = submit()
        if self.faults.roll("submit_drop_rate"):
            return DroppedResponse()
        return json_response(future)

    # futures ----------------------------------------------------------------------------

    async def retrieve_future(self, request: Request, owner: str) -> Response:
        req = await parse(request, FutureRetrieveRequest)
        profile = self.faults.profile
        promise = self.service.promises.get(req.request_id)
        if promise is None or promise.owner != owner:
            raise Gone(f"request {req.request_id!r} is unknown or its result has expired")
        if profile.slow_poll_seconds:
            await asyncio.sleep(profile.slow_poll_seconds)
        if self.faults.roll("expire_rate"):
            self.service.promises.forget(promise.request_id)
            raise Gone(f"fault injection: request {req.request_id!r} expired")
        promise.polls += 1
        if promise.polls <= profile.paused_polls:
            return json_response(
                TryAgainResponse(
                    request_id=promise.request_id,
                    queue_state=profile.paused_state,
                    queue_state_reason="fault injection: queue paused",
                )
            )
        state = promise.queue_state()
        hold = self.service.config.long_poll_seconds
        if state != "active":
            hold = min(hold, PAUSED_POLL_SECONDS)
        if not await self.service.promises.wait(promise, hold):
            return self._try_again(promise)
        return self._result(promise, request.headers.get("accept", ""), req.allow_metadata_only)

    def _try_again(self, promise: Promise) -> Response:
        state = promise.queue_state()
        body = TryAgainResponse(
            request_id=promise.request_id,
            queue_state=state,
            queue_state_reason=_STATE_REASONS.get(state),
        )
        # An active queue whose long-poll ran out answers 408 (the HTTP form of try-again);
        # a paused queue answers 200 try_again so the reason reaches the client's logs.
        return JSONResponse(body.to_wire(), status_code=408 if state == "active" else 200)

    def _result(self, promise: Promise, accept: str, allow_metadata_only: bool) -> Response:
        if promise.error is not None:
            return json_response(
                {"error": promise.error.message, "category": promise.error.category}
            )
        assert promise.result is not None
        encoded = promise.result.to_protobuf() if wants_protobuf(accept) else None
        response = (
            Response(encoded, media_type=PROTOBUF_CONTENT_TYPE)
            if encoded is not None
            else json_response(promise.result.to_json())
        )
        threshold = self.service.config.metadata_only_threshold_bytes
        if allow_metadata_only and threshold is not None and len(response.body) >= threshold:
            return json_response(
                {"status": "complete_metadata", "response_payload_size": len(response.body)}
            )
        return response

    # REST -------------------------------------------------------------------------------

    async def list_runs(self, request: Request, owner: str) -> Response:
        limit, offset = _page(request, 20)
        accessible = _access_scope(request) == "accessible"
        project_id = request.query_params.get("project_id") or None
        runs = self.service.list_runs(
            owner, limit, offset, accessible=accessible, project_id=project_id
        )
        return json_response(runs)

    async def get_run(self, request: Request, owner: str) -> Response:
        accessible = _access_scope(request) == "accessible"
        run_id = request.path_params["run_id"]
        return json_response(self.service.get_run(owner, run_id, accessible=accessible))

    async def list_checkpoints(self, request: Request, owner: str) -> Response:
        return json_response(self.service.list_checkpoints(owner, request.path_params["run_id"]))

    async def list_user_checkpoints(self, request: Request, owner: str) -> Response:
        limit, offset = _page(request, 100)
        return json_response(self.service.list_user_checkpoints(owner, limit, offset))

    async def delete_checkpoint(self, request: Request, owner: str) -> Response:
        self.service.delete_checkpoint(owner, *_checkpoint_ref(request))
        return json_response({})

    async def publish(self, request: Request, owner: str) -> Response:
        public = request.method == "POST"
        self.service.set_public(owner, *_checkpoint_ref(request), public)
        return json_response({})

    async def set_ttl(self, request: Request, owner: str) -> Response:
        req = await parse(request, CheckpointTtlRequest)
        self.service.set_ttl(owner, *_checkpoint_ref(request), req.ttl_seconds)
        return json_response({})

    async def archive_url(self, request: Request, owner: str) -> Response:
        token, ticket = self.service.archive_url(owner, *_checkpoint_ref(request))
        base = str(request.base_url).rstrip("/")
        return Response(
            status_code=302,
            headers={
                "Location": f"{base}/api/v1/checkpoint_archive?token={token}",
                "Expires": email.utils.formatdate(ticket.expires, usegmt=True),
            },
        )

    async def archive_download(self, request: Request) -> Response:
        """Authenticated by the URL's signed token, not by an API key."""
        try:
            tar = self.service.archive(request.query_params.get("token", ""))
        except ServerError as exc:
            return error_response(exc.status, exc.message)
        return StreamingResponse(
            tar.chunks(),
            media_type="application/x-tar",
            headers={"Content-Length": str(tar.length)},
        )

    # Sessions are never shared between tenants (publishing is per checkpoint), so the
    # "accessible" sessions are the owned ones; the scope is still checked.

    async def list_sessions(self, request: Request, owner: str) -> Response:
        limit, offset = _page(request, 20)
        _access_scope(request)
        return json_response(self.service.list_sessions(owner, limit, offset))

    async def get_session(self, request: Request, owner: str) -> Response:
        _access_scope(request)
        return json_response(self.service.get_session(owner, request.path_params["session_id"]))

    async def assign_session_project(self, request: Request, owner: str) -> Response:
        req = await parse(request, AssignSessionProjectRequest)
        session_id = request.path_params["session_id"]
        self.service.assign_session_project(owner, session_id, req.project_id)
        return json_response({})

    async def search_sessions(self, request: Request, owner: str) -> Response:
        req = await parse(request, SessionSearchRequest)
        return json_response(self.service.search_sessions(owner, req))


class _JsonForwardBackward(ForwardRequest):
    """The legacy JSON ``/forward_backward`` body (SDKs up to 0.24)."""

    forward_input: ForwardBackwardInput | None = None  # type: ignore[assignment]
    forward_backward_input: ForwardBackwardInput


_STATE_REASONS = {
    "paused_capacity": "the local backend's queue is full; requests wait their turn",
    "paused_rate_limit": "concurrent training clients rate limit hit for this API key",
}


def _page(request: Request, default_limit: int) -> tuple[int, int]:
    values = []
    for name, default in (("limit", default_limit), ("offset", 0)):
        raw = request.query_params.get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"query parameter {name}={raw!r} is not an integer") from None
        if value < 0 or (name == "limit" and value > 10_000):
            raise BadRequest(f"query parameter {name}={value} is out of range")
        values.append(value)
    return values[0], values[1]


_ACCESS_SCOPES = ("owned", "accessible")


def _access_scope(request: Request) -> str:
    scope = request.query_params.get("access_scope", "owned")
    if scope not in _ACCESS_SCOPES:
        raise BadRequest(
            f"query parameter access_scope={scope!r} is not valid: use 'owned' or 'accessible'"
        )
    return scope


def _checkpoint_ref(request: Request) -> tuple[str, str]:
    params = request.path_params
    return params["run_id"], f"{params['kind']}/{params['name']}"


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = f"no endpoint {request.method} {request.url.path}"
    return error_response(status, message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ServerError):
        return error_response(exc.status, exc.message)
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return error_response(500, f"internal server error: {type(exc).__name__}")


def build_app(service: LocalService) -> Starlette:
    routes = Routes(service)
    keys = service.config.api_keys

    def route(path: str, handler: Any, methods: list[str]) -> Route:
        return Route("/api/v1/" + path, guarded(handler, keys), methods=methods)

    checkpoint = "training_runs/{run_id}/checkpoints/{kind}/{name}"
    table: list[Route] = [
        route("client/config", routes.client_config, ["POST"]),
        route("client/dynamic_config", routes.dynamic_config, ["POST"]),
        route("get_server_capabilities", routes.capabilities, ["GET"]),
        route("create_session", routes.create_session, ["POST"]),
        route("session_heartbeat", routes.heartbeat, ["POST"]),
        route("sessions/{session_id}/finish", routes.finish_session, ["POST"]),
        route("telemetry", routes.telemetry, ["POST"]),
        route("local/telemetry_events", routes.telemetry_events, ["GET"]),
        route("create_model", routes.create_model, ["POST"]),
        route("get_info", routes.get_info, ["POST"]),
        route("unload_model", routes.unload_model, ["POST"]),
        route("forward_backward", routes.forward_backward, ["POST"]),
        route("forward", routes.forward, ["POST"]),
        route("optim_step", routes.optim_step, ["POST"]),
        route("save_weights", routes.save_weights, ["POST"]),
        route("save_weights_for_sampler", routes.save_weights_for_sampler, ["POST"]),
        route("load_weights", routes.load_weights, ["POST"]),
        route("weights_info", routes.weights_info, ["POST"]),
        route("local/corrupt_run", routes.corrupt_run, ["POST"]),
        route("create_sampling_session", routes.create_sampling_session, ["POST"]),
        route("samplers/{sampler_id}", routes.get_sampler, ["GET"]),
        route("asample", routes.asample, ["POST"]),
        route("retrieve_future", routes.retrieve_future, ["POST"]),
        route("training_runs", routes.list_runs, ["GET"]),
        route("training_runs/{run_id}", routes.get_run, ["GET"]),
        route("training_runs/{run_id}/checkpoints", routes.list_checkpoints, ["GET"]),
        route(checkpoint, routes.delete_checkpoint, ["DELETE"]),
        route(checkpoint + "/publish", routes.publish, ["POST", "DELETE"]),
        route(checkpoint + "/ttl", routes.set_ttl, ["PUT"]),
        route(checkpoint + "/archive", routes.archive_url, ["GET"]),
        route("checkpoints", routes.list_user_checkpoints, ["GET"]),
        route("sessions", routes.list_sessions, ["GET"]),
        route("sessions/search", routes.search_sessions, ["POST"]),
        route("sessions/{session_id}", routes.get_session, ["GET"]),
        route("sessions/{session_id}/project", routes.assign_session_project, ["PUT"]),
    ]

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    table.append(Route("/api/v1/healthz", healthz, methods=["GET"]))
    table.append(Route("/api/v1/checkpoint_archive", routes.archive_download, methods=["GET"]))
    return Starlette(
        routes=table,
        exception_handlers={HTTPException: _not_found, Exception: _unexpected},
    )

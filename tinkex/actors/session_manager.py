"""The session manager actor: creates sessions, keeps them alive, finishes them.

A session is what the server bills and expires: ``client/config`` then ``create_session``
open it, a heartbeat every 10 s keeps it, ``sessions/{id}/finish`` closes it. Sessions and
their per-session counters (model and sampling-session sequence numbers) live in the
actor's store; heartbeats run as jobs on the I/O loop, so neither a restart of this actor
nor of the loop stops them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tinkex import telemetry
from tinkex.config import Config
from tinkex.errors import APIError, APIStatusError
from tinkex.reporting import context as telemetry_context
from tinkex.types import ClientConfigRequest, CreateSessionRequest, CreateSessionResponse

from .base import TinkexActor
from .io_loop import LoopContext
from .jobs import complete, new_job_id

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("tinkex.session")

HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_WARN_AFTER = 120.0
SESSION_CALL_TIMEOUT = 120.0

FinishStatus = Literal["success", "errored", "interrupted"]


@dataclass
class HeartbeatJob:
    """Heartbeats one session until it is finished or the server says it is gone (410)."""

    config: Config
    session_id: str
    interval: float = HEARTBEAT_INTERVAL
    warn_after: float = HEARTBEAT_WARN_AFTER
    job_id: str = field(default_factory=lambda: new_job_id("heartbeat"))
    result: Future[None] = field(default_factory=Future)
    last_success: float = field(default_factory=time.monotonic)
    warned: bool = False

    async def run(self, ctx: LoopContext) -> None:
        telemetry_context.bind({"session_id": self.session_id})
        transport = ctx.transport(self.config)
        body = {"session_id": self.session_id, "type": "session_heartbeat"}
        while not self.result.done():
            await asyncio.sleep(self.interval)
            if self.result.done():  # finished while asleep: the server would answer 410
                return
            try:
                await transport.request_json(
                    "POST", "session_heartbeat", json=body, timeout=10.0, max_retries=0
                )
            except APIStatusError as exc:
                if exc.status_code == 410:
                    log.warning(
                        "session %s has ended on the server; heartbeats stop", self.session_id
                    )
                    telemetry.execute("tinkex.session.expired", {}, {"session_id": self.session_id})
                    complete(self.result, None)
                    return
                self._failed(exc)
            except APIError as exc:
                self._failed(exc)
            else:
                self.last_success = time.monotonic()
                self.warned = False

    def _failed(self, exc: APIError) -> None:
        silent_for = time.monotonic() - self.last_success
        telemetry.execute(
            "tinkex.session.heartbeat_failed",
            {"seconds_since_success": silent_for},
            {"session_id": self.session_id, "error": type(exc).__name__},
        )
        if silent_for > self.warn_after and not self.warned:
            self.warned = True
            log.warning(
                "session %s: no successful heartbeat for %.0f s (%s); the server may end the "
                "session",
                self.session_id,
                silent_for,
                exc,
            )
            telemetry.execute(
                "tinkex.session.heartbeat_warning",
                {"seconds_since_success": silent_for},
                {"session_id": self.session_id},
            )


@dataclass
class Session:
    session_id: str
    config: Config
    heartbeat: HeartbeatJob
    model_seq: Any = field(default_factory=itertools.count)
    sampling_seq: Any = field(default_factory=itertools.count)


class SessionManager(TinkexActor):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self._runtime = runtime

    def init(self) -> None:
        self._sessions: dict[str, Session] = self.store.setdefault("sessions", {})

    def open(
        self,
        config: Config,
        *,
        user_metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> str:
        """Open a session for ``config``; returns its id (blocks this actor for the calls)."""
        request = CreateSessionRequest(
            tags=list(config.tags),
            user_metadata=dict(user_metadata or config.user_metadata or {}),
            sdk_version=config.sdk_version,
            project_id=config.project_id,
            display_name=display_name,
        )

        async def create(ctx: LoopContext) -> CreateSessionResponse:
            transport = ctx.transport(config)
            await transport.request_json(
                "POST",
                "client/config",
                json=ClientConfigRequest(sdk_version=config.sdk_version).to_wire(),
            )
            raw = await transport.request_json("POST", "create_session", json=request.to_wire())
            return CreateSessionResponse.model_validate(raw)

        response = self._runtime.loop().call(create).result(SESSION_CALL_TIMEOUT)
        for level, message in (
            (logging.INFO, response.info_message),
            (logging.WARNING, response.warning_message),
            (logging.ERROR, response.error_message),
        ):
            if message:
                log.log(level, "server: %s", message)
        heartbeat = HeartbeatJob(config=config, session_id=response.session_id)
        self._sessions[response.session_id] = Session(response.session_id, config, heartbeat)
        self._runtime.loop().spawn(heartbeat)
        telemetry.execute("tinkex.session.start", {}, {"session_id": response.session_id})
        return response.session_id

    def next_model_seq_id(self, session_id: str) -> int:
        return int(next(self._session(session_id).model_seq))

    def next_sampling_seq_id(self, session_id: str) -> int:
        return int(next(self._session(session_id).sampling_seq))

    def finish(self, session_id: str, status: FinishStatus, detail: str | None = None) -> None:
        """Stop heartbeating and tell the server the session is over (first reason wins)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        complete(session.heartbeat.result, None)
        body = {"reason": {"type": status}, "detail": detail}

        async def finish(ctx: LoopContext) -> None:
            telemetry_context.bind({"session_id": session_id})
            await ctx.transport(session.config).request_json(
                "POST", f"sessions/{session_id}/finish", json=body
            )

        self._runtime.loop().call(finish).result(SESSION_CALL_TIMEOUT)
        telemetry.execute("tinkex.session.stop", {}, {"session_id": session_id, "status": status})

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise KeyError(f"session {session_id!r} is not open in this process")
        return session

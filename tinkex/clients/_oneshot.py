"""A submit-and-poll job that needs no ordering: model creation and restore."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tinkex.actors.io_loop import LoopContext
from tinkex.actors.jobs import JobFuture, complete, new_job_id
from tinkex.actors.rate_limiter import RateWindows
from tinkex.actors.submission import Submission, await_result
from tinkex.config import Config
from tinkex.reporting import context as telemetry_context
from tinkex.transport import Transport


@dataclass
class OneShotJob:
    config: Config
    submission: Submission
    decode: Callable[[httpx.Response], Any]
    then: Callable[[Transport, Any], Awaitable[Any]]
    windows: RateWindows
    metadata: dict[str, Any] = field(default_factory=dict)
    job_id: str = field(default_factory=lambda: new_job_id("oneshot"))
    result: JobFuture[Any] = field(default_factory=JobFuture)

    async def run(self, ctx: LoopContext) -> None:
        telemetry_context.bind(self.metadata)
        transport = ctx.transport(self.config)
        if self.submission.request_id is None:
            await self.submission.submit_in_window(transport, self.windows)
        self.result.submitted(self.submission.request_id, self.submission.request_type)
        value = await await_result(
            transport, self.submission, self.decode, expects_protobuf=False, metadata=self.metadata
        )
        complete(self.result, await self.then(transport, value))

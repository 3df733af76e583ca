"""The sampling actor: one per sampling client; samples run as restartable jobs.

Sampling needs no ordering, only restraint. Each sample is a :class:`SampleJob` on the I/O
loop that waits out the tenant's 429 window, passes the dispatch gates (a limit on
submissions in flight, a smaller one while recently throttled, and a byte budget), submits
``/asample`` and polls. A 429 is backpressure, not an error: it opens the tenant's window
(``Retry-After``, else 1 s, or 5 s for prompts over 128 KiB) and the same ``seq_id`` is
resubmitted after it. Transient failures are retried with backoff until
``progress_timeout``; a 410 on the result resubmits with a new ``seq_id``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tinkex import telemetry
from tinkex.config import Config
from tinkex.errors import (
    APIConnectionError,
    APIStatusError,
    RateLimitError,
    RetryableFutureError,
    TinkexError,
)
from tinkex.futures import decode_sample
from tinkex.reporting import context as telemetry_context
from tinkex.types import (
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    SampleResponse,
    SamplingParams,
)

from .base import TinkexActor
from .io_loop import LoopContext
from .jobs import JobFuture, complete, new_job_id
from .rate_limiter import RateWindows
from .submission import Submission, await_result

if TYPE_CHECKING:
    from .runtime import Runtime

MAX_IN_FLIGHT = 400
MAX_IN_FLIGHT_THROTTLED = 10
BYTE_BUDGET = 10 * 1024 * 1024
LARGE_PROMPT_BYTES = 128 * 1024
PROGRESS_TIMEOUT = 7200.0
RETRY_DELAY_BASE = 0.5
RETRY_DELAY_MAX = 10.0

_JITTER = random.Random()
"""Backoff jitter, drawn on the I/O loop thread only (seeding one per sample is costly)."""


class SamplingStuckError(TinkexError):
    """A sample made no progress (only transient failures) for the progress timeout."""


@dataclass
class SamplerState:
    """What must outlive the sampling actor: the sampler's identity and seq_id counter."""

    sampling_session_id: str
    base_model: str | None
    config: Config
    progress_timeout: float = PROGRESS_TIMEOUT
    _counter: Any = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_seq_id(self) -> int:
        with self._lock:
            return int(next(self._counter))

    @property
    def metadata(self) -> dict[str, str]:
        return {"sampling_session_id": self.sampling_session_id}


class DispatchGate:
    """The submission limits of one sampler on one event loop."""

    def __init__(self) -> None:
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.throttled = asyncio.Semaphore(MAX_IN_FLIGHT_THROTTLED)
        self.bytes_available = BYTE_BUDGET
        self._bytes_changed = asyncio.Condition()

    async def reserve_bytes(self, size: int) -> None:
        # Blocks only while the balance is negative, so one oversized prompt still goes.
        async with self._bytes_changed:
            await self._bytes_changed.wait_for(lambda: self.bytes_available > 0)
            self.bytes_available -= size

    async def release_bytes(self, size: int) -> None:
        async with self._bytes_changed:
            self.bytes_available += size
            self._bytes_changed.notify_all()


def estimate_prompt_bytes(prompt: ModelInput) -> int:
    total = 0
    for chunk in prompt.chunks:
        if isinstance(chunk, ImageChunk):
            total += len(chunk.data)
        elif isinstance(chunk, ImageAssetPointerChunk):
            total += len(chunk.location)
        else:
            total += 10 * chunk.length
    return total


@dataclass
class SampleJob:
    state: SamplerState
    windows: RateWindows
    body: dict[str, Any]
    prompt_bytes: int
    job_id: str = field(default_factory=lambda: new_job_id("sample"))
    result: JobFuture[SampleResponse] = field(default_factory=JobFuture)
    submission: Submission | None = None
    sequence_ids: list[str] | None = None

    @property
    def tenant(self) -> Hashable:
        return self.state.config.tenant

    async def run(self, ctx: LoopContext) -> None:
        telemetry_context.bind(self.state.metadata)
        transport = ctx.transport(self.state.config)
        last_progress = time.monotonic()
        failures = 0
        while True:
            if time.monotonic() - last_progress > self.state.progress_timeout:
                raise SamplingStuckError(
                    f"sampling made no progress for {self.state.progress_timeout:.0f} s "
                    f"(sampling session {self.state.sampling_session_id}); last attempts failed "
                    "with transient errors"
                )
            try:
                if self.submission is None or self.submission.request_id is None:
                    await self._submit(ctx, transport)
                    last_progress = time.monotonic()
                assert self.submission is not None
                response = await await_result(
                    transport,
                    self.submission,
                    decode_sample(self.sequence_ids),
                    expects_protobuf=True,
                    metadata=self.state.metadata,
                )
            except RateLimitError as exc:
                self.windows.backoff(self.tenant, self._window_for(exc), reason="asample 429")
            except RetryableFutureError:
                self.submission = None  # the promise is gone: a new submission, a new seq_id
                self.body = {**self.body, "seq_id": self.state.next_seq_id()}
                last_progress = time.monotonic()
            except (APIConnectionError, _TransientStatus) as exc:
                failures += 1
                delay = min(RETRY_DELAY_BASE * 2**failures, RETRY_DELAY_MAX)
                delay *= _JITTER.uniform(0.75, 1.25)
                telemetry.execute(
                    "tinkex.retry.sample",
                    {"delay": delay, "attempt": failures},
                    {**self.state.metadata, "error": type(exc).__name__},
                )
                await asyncio.sleep(delay)
            else:
                complete(self.result, response)
                return

    async def _submit(self, ctx: LoopContext, transport: Any) -> None:
        await self.windows.wait(self.tenant)
        gate = ctx.local(("dispatch", self.state.sampling_session_id), DispatchGate)
        throttled = self.windows.recently_throttled(self.tenant)
        size = self.prompt_bytes * (20 if throttled else 1)
        async with gate.in_flight:
            await gate.reserve_bytes(size)
            try:
                if throttled:
                    async with gate.throttled:
                        await self._post(transport)
                else:
                    await self._post(transport)
            finally:
                await gate.release_bytes(size)

    async def _post(self, transport: Any) -> None:
        # Again: another sample may have hit a 429 while this one queued at the gates.
        await self.windows.wait(self.tenant)
        submission = Submission(
            path="asample",
            request_type="Sample",
            seq_id=self.body.get("seq_id"),
            json=self.body,
            sdk_method="SamplingClient.sample",
        )
        try:
            # No HTTP-layer retries (PROTOCOL §4.3): a 429 must open the tenant's window
            # rather than be retried blindly, and run() retries everything else itself.
            promise = await submission.submit(
                transport, headers={"X-Tinker-Sampling-Backpressure": "1"}, max_retries=0
            )
        except APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise _TransientStatus(str(exc)) from exc
            raise
        self.sequence_ids = promise.sample_sequence_ids
        self.submission = submission
        self.result.submitted(submission.request_id, submission.request_type)

    def _window_for(self, exc: RateLimitError) -> float:
        if exc.retry_after is not None and 0 < exc.retry_after <= 60:
            return exc.retry_after
        return 5.0 if self.prompt_bytes > LARGE_PROMPT_BYTES else 1.0


class _TransientStatus(TinkexError):
    """A status worth retrying the whole sample for (5xx, 408, 409)."""


def submit_sample(
    runtime: Runtime,
    state: SamplerState,
    prompt: ModelInput,
    num_samples: int,
    sampling_params: SamplingParams,
    include_prompt_logprobs: bool,
    topk_prompt_logprobs: int,
) -> Future[SampleResponse]:
    """Start one sample on the I/O loop, straight from the caller's thread.

    Samples need no ordering, so unlike training calls they do not pass through an actor's
    mailbox: an ask per sample cost milliseconds under load, and everything a sample needs
    (the seq_id counter, the tenant's windows, the loop) is safe to use from any thread.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    body = {
        "num_samples": num_samples,
        "prompt": prompt.to_wire(),
        "sampling_params": sampling_params.to_wire(),
        "sampling_session_id": state.sampling_session_id,
        "seq_id": state.next_seq_id(),
        "prompt_logprobs": include_prompt_logprobs,
        "topk_prompt_logprobs": topk_prompt_logprobs,
        "type": "sample",
    }
    job = SampleJob(
        state=state,
        windows=runtime.windows(),
        body=body,
        prompt_bytes=estimate_prompt_bytes(prompt),
    )
    runtime.loop().spawn(job)
    return job.result


class SamplingActor(TinkexActor):
    """The supervised home of one sampling client's :class:`SamplerState`.

    As with the Elixir SDK's SamplingClient process, the actor is there for the sampler's
    lifecycle, not for each sample (see :func:`submit_sample`): it keeps the state, whose
    seq_id counter must never go back, in its supervisor's store across restarts.
    """

    def __init__(self, state: SamplerState) -> None:
        super().__init__()
        self._initial_state = state

    def init(self) -> None:
        self.state: SamplerState = self.store.setdefault("sampler", self._initial_state)

"""The training actor: one per remote model; turns calls into ordered, restartable jobs.

Each call reserves its ``seq_id``s when it is made (so calls are numbered in the order the
user made them), then becomes a :class:`TrainingJob` on the I/O loop. Jobs of one model
submit strictly in ``seq_id`` order through the model's :class:`~.jobs.Sequencer`; a
forward_backward larger than one request is split into chunks that are submitted together,
the first chunk last, so the server has the whole batch before it starts. Polling runs
concurrently. The model's counters live in a :class:`ModelState` kept across restarts, and
a job that runs again after a crash resubmits its unsent chunks with the same ``seq_id``s,
which the server answers with the original promises.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from tinkex.config import Config
from tinkex.futures import decode_forward_backward, decode_json
from tinkex.protocol import encode_forward_backward_request, merge_forward_backward_outputs
from tinkex.reporting import context as telemetry_context
from tinkex.types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    LoadWeightsResponse,
    OptimStepResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
)

from .base import TinkexActor
from .io_loop import LoopContext
from .jobs import JobFuture, Sequencer, complete, new_job_id
from .rate_limiter import RateWindows
from .submission import Submission, await_result

if TYPE_CHECKING:
    from .runtime import Runtime

T = TypeVar("T")

MAX_CHUNK_DATUMS = 1024
MAX_CHUNK_BYTES = 5_000_000


@dataclass
class ModelState:
    """What must outlive the training actor: the model's identity and counters."""

    model_id: str
    session_id: str
    config: Config
    windows: RateWindows
    """The tenant's 429 windows (the rate limiter's), which every submission sits out."""
    sequencer: Sequencer = field(default_factory=lambda: Sequencer(1))
    _next_seq_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reserve(self, count: int, build: Callable[[list[int]], T]) -> T:
        """What ``build`` makes of the next ``count`` consecutive seq_ids, which it takes.

        The ids are taken only if ``build`` returns: a call whose request cannot be built
        (a token id beyond int32, a bad ``loss_fn_config`` value...) must fail alone, not
        leave a hole in the sequence that every later call of the model would wait behind.
        """
        with self._lock:
            first = self._next_seq_id
            built = build(list(range(first, first + count)))
            self._next_seq_id = first + count
            return built

    @property
    def metadata(self) -> dict[str, str]:
        return {"model_id": self.model_id, "session_id": self.session_id}


@dataclass
class TrainingJob:
    """Submissions of one call (in order, first last), their polls, and the combined result."""

    state: ModelState
    submissions: list[Submission]
    decode: Callable[[httpx.Response], Any]
    expects_protobuf: bool
    combine: Callable[[list[Any]], Any]
    job_id: str = field(default_factory=lambda: new_job_id("train"))
    result: JobFuture[Any] = field(default_factory=JobFuture)

    async def run(self, ctx: LoopContext) -> None:
        telemetry_context.bind(self.state.metadata)
        transport = ctx.transport(self.state.config)
        if any(s.request_id is None for s in self.submissions):
            await self._submit_in_turn(transport)
        first = self.submissions[0]
        self.result.submitted(first.request_id, first.request_type)
        results = await asyncio.gather(
            *(
                await_result(
                    transport,
                    s,
                    self.decode,
                    expects_protobuf=self.expects_protobuf,
                    metadata=self.state.metadata,
                )
                for s in self.submissions
            )
        )
        complete(self.result, self.combine(list(results)))

    async def _submit_in_turn(self, transport: Any) -> None:
        sequencer = self.state.sequencer
        seq_ids = [s.seq_id for s in self.submissions if s.seq_id is not None]
        await sequencer.wait_turn(min(seq_ids))
        first, *rest = self.submissions
        try:
            windows = self.state.windows
            await asyncio.gather(
                *(s.submit_in_window(transport, windows) for s in rest if s.request_id is None)
            )
            if first.request_id is None:
                await first.submit_in_window(transport, windows)
        except asyncio.CancelledError:
            raise  # the loop is restarting: this job runs again and resubmits, in turn
        finally:
            # Submitted or given up, later calls keep their numbers; but a cancelled job
            # keeps its turn for when it runs again.
            if not _being_cancelled():
                await sequencer.advance_past(max(seq_ids))


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def chunk_data(
    data: Sequence[Datum], max_datums: int = MAX_CHUNK_DATUMS, max_bytes: int = MAX_CHUNK_BYTES
) -> list[list[Datum]]:
    """Split ``data`` into requests of at most ``max_datums`` datums and ~``max_bytes``."""
    chunks: list[list[Datum]] = []
    current: list[Datum] = []
    size = 0
    for datum in data:
        datum_bytes = estimate_bytes(datum)
        if current and (len(current) >= max_datums or size + datum_bytes > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(datum)
        size += datum_bytes
    if current:
        chunks.append(current)
    return chunks


def estimate_bytes(datum: Datum) -> int:
    """The protobuf size estimate used for chunking (PROTOCOL §4.5).

    Raises ``ValueError`` for an image asset pointer, which has no protobuf form: found
    here, before the call reserves its seq_ids, it cannot leave a hole in them.
    """
    total = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            total += 4 * len(chunk.tokens)
        elif isinstance(chunk, ImageChunk):
            total += len(chunk.data)
        elif isinstance(chunk, ImageAssetPointerChunk):
            raise ValueError(
                "image_asset_pointer chunks cannot go into training requests (they only exist "
                "in JSON sampling requests); load the image with ImageChunk.from_path(...)"
            )
    for tensor in datum.loss_fn_inputs.values():
        total += 8 * len(tensor.array)
        if tensor.sparse_col_indices is not None and tensor.sparse_crow_indices is not None:
            total += 8 * (len(tensor.sparse_col_indices) + len(tensor.sparse_crow_indices))
    return total


def forward_backward_job(
    state: ModelState,
    seq_ids: Sequence[int],
    chunks: Sequence[Sequence[Datum]],
    loss_fn: str,
    loss_fn_config: dict[str, float | str] | None,
    *,
    forward_only: bool,
    sdk_method: str,
) -> TrainingJob:
    """The job of a forward(_backward) call already split into ``chunks`` (see
    :func:`chunk_data`) with their reserved ``seq_ids``; its result is the merged output."""
    submissions = [
        Submission(
            path="forward_backward",
            request_type="Forward" if forward_only else "ForwardBackward",
            seq_id=seq_id,
            content=encode_forward_backward_request(
                model_id=state.model_id,
                seq_id=seq_id,
                data=chunk,
                loss_fn=loss_fn,
                loss_fn_config=loss_fn_config,
                forward_only=forward_only,
            ),
            sdk_method=sdk_method,
        )
        for seq_id, chunk in zip(seq_ids, chunks, strict=True)
    ]
    return TrainingJob(
        state=state,
        submissions=submissions,
        decode=decode_forward_backward,
        expects_protobuf=True,
        combine=_merge_outputs([len(chunk) for chunk in chunks]),
    )


def _merge_outputs(chunk_sizes: list[int]) -> Callable[[list[Any]], ForwardBackwardOutput]:
    def merge(outputs: list[Any]) -> ForwardBackwardOutput:
        return merge_forward_backward_outputs(outputs, chunk_sizes)

    return merge


def _single(results: list[Any]) -> Any:
    return results[0]


class TrainingActor(TinkexActor):
    """Numbers the calls of one model and hands them to the I/O loop as jobs."""

    def __init__(self, runtime: Runtime, state: ModelState) -> None:
        super().__init__()
        self._runtime = runtime
        self._initial_state = state

    def init(self) -> None:
        self.state: ModelState = self.store.setdefault("model", self._initial_state)

    def _spawn(self, job: TrainingJob) -> Future[Any]:
        self._runtime.loop().spawn(job)
        return job.result

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: dict[str, float | str] | None,
        forward_only: bool,
    ) -> Future[ForwardBackwardOutput]:
        if not data:
            raise ValueError("forward_backward needs at least one Datum in data")
        chunks = chunk_data(data)
        method = "TrainingClient.forward" if forward_only else "TrainingClient.forward_backward"
        return self._spawn(
            self.state.reserve(
                len(chunks),
                lambda seq_ids: forward_backward_job(
                    self.state,
                    seq_ids,
                    chunks,
                    loss_fn,
                    loss_fn_config,
                    forward_only=forward_only,
                    sdk_method=method,
                ),
            )
        )

    def _json_call(
        self, path: str, request_type: str, body: dict[str, Any], model: type[Any], method: str
    ) -> Future[Any]:
        def build(seq_ids: list[int]) -> TrainingJob:
            (seq_id,) = seq_ids
            sent = {"model_id": self.state.model_id, "seq_id": seq_id, **body}
            return TrainingJob(
                state=self.state,
                submissions=[Submission(path, request_type, seq_id, json=sent, sdk_method=method)],
                decode=decode_json(model),
                expects_protobuf=False,
                combine=_single,
            )

        return self._spawn(self.state.reserve(1, build))

    def optim_step(self, params: AdamParams) -> Future[OptimStepResponse]:
        body = {"adam_params": params.to_wire(), "type": "optim_step"}
        return self._json_call(
            "optim_step", "OptimStep", body, OptimStepResponse, "TrainingClient.optim_step"
        )

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None,
        overwrite: bool,
        user_metadata: dict[str, Any] | None,
    ) -> Future[SaveWeightsResponse]:
        body = _without_none(
            path=name,
            ttl_seconds=ttl_seconds,
            overwrite=overwrite,
            user_metadata=user_metadata,
            type="save_weights",
        )
        return self._json_call(
            "save_weights", "SaveWeights", body, SaveWeightsResponse, "TrainingClient.save_state"
        )

    def save_weights_for_sampler(
        self,
        name: str | None,
        ttl_seconds: int | None,
        sampling_session_seq_id: int | None,
        user_metadata: dict[str, Any] | None,
    ) -> Future[SaveWeightsForSamplerResponse]:
        body = _without_none(
            path=name,
            ttl_seconds=ttl_seconds,
            sampling_session_seq_id=sampling_session_seq_id,
            user_metadata=user_metadata,
            kind="snapshot",
            type="save_weights_for_sampler",
        )
        return self._json_call(
            "save_weights_for_sampler",
            "SaveWeightsForSampler",
            body,
            SaveWeightsForSamplerResponse,
            "TrainingClient.save_weights_for_sampler",
        )

    def load_state(self, path: str, optimizer: bool) -> Future[LoadWeightsResponse]:
        body = {"path": path, "optimizer": optimizer, "type": "load_weights"}
        return self._json_call(
            "load_weights", "LoadWeights", body, LoadWeightsResponse, "TrainingClient.load_state"
        )


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}

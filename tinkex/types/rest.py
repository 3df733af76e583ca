"""REST management types: training runs, checkpoints, sessions, ``tinker://`` paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ._base import WireModel

CheckpointType = Literal["training", "sampler", "external"]

# The path segment that names each checkpoint type inside a ``tinker://`` path.
CHECKPOINT_KINDS: dict[str, CheckpointType] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}


class Cursor(WireModel):
    offset: int
    limit: int
    total_count: int


class Checkpoint(WireModel):
    checkpoint_id: str
    checkpoint_type: CheckpointType
    time: datetime
    tinker_path: str
    size_bytes: int | None = None
    public: bool = False
    user_metadata: dict[str, Any] | None = None
    expires_at: datetime | None = None


class CheckpointsListResponse(WireModel):
    checkpoints: list[Checkpoint]
    cursor: Cursor | None = None


class TrainingRun(WireModel):
    training_run_id: str
    base_model: str
    model_owner: str
    is_lora: bool
    corrupted: bool = False
    lora_rank: int | None = None
    last_request_time: datetime
    last_checkpoint: Checkpoint | None = None
    last_sampler_checkpoint: Checkpoint | None = None
    user_metadata: dict[str, Any] | None = None


class TrainingRunsResponse(WireModel):
    training_runs: list[TrainingRun]
    cursor: Cursor


class ListSessionsResponse(WireModel):
    sessions: list[str]


class GetSessionResponse(WireModel):
    training_run_ids: list[str]
    sampler_ids: list[str]
    user_metadata: dict[str, Any] | None = None
    display_name: str | None = None


class CheckpointTtlRequest(WireModel):
    ttl_seconds: int | None = None


class CheckpointArchiveUrlResponse(WireModel):
    """Where a checkpoint's files can be fetched as one tar archive, and until when.

    The URL is signed: it needs no API key, so it must be treated as a secret until
    ``expires``.
    """

    url: str
    expires: datetime


class ParsedTinkerPath(WireModel):
    """``tinker://<training_run_id>/<kind>/<name>`` split into its parts."""

    tinker_path: str
    training_run_id: str
    checkpoint_type: CheckpointType
    checkpoint_id: str

    @property
    def name(self) -> str:
        return self.checkpoint_id.split("/", 1)[1]

    @classmethod
    def parse(cls, tinker_path: str) -> ParsedTinkerPath:
        """Parse a ``tinker://`` path, raising ValueError that says what is wrong with it."""
        prefix = "tinker://"
        if not tinker_path.startswith(prefix):
            raise ValueError(
                f"invalid tinker path {tinker_path!r}: it must start with {prefix!r}, as in "
                "'tinker://<training_run_id>/weights/<name>'"
            )
        parts = tinker_path[len(prefix) :].split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"invalid tinker path {tinker_path!r}: expected "
                "'tinker://<training_run_id>/<kind>/<name>' with three non-empty parts"
            )
        run_id, kind, name = parts
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(
                f"invalid tinker path {tinker_path!r}: kind {kind!r} is not one of "
                f"{', '.join(sorted(CHECKPOINT_KINDS))}"
            )
        return cls(
            tinker_path=tinker_path,
            training_run_id=run_id,
            checkpoint_type=CHECKPOINT_KINDS[kind],
            checkpoint_id=f"{kind}/{name}",
        )

"""REST management types: training runs, checkpoints, sessions, ``tinker://`` paths."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, Field

from ._base import WireModel

CheckpointType = Literal["training", "sampler", "external"]

# The path segment that names each checkpoint type inside a ``tinker://`` path.
CHECKPOINT_KINDS: dict[str, CheckpointType] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}


MIN_TTL_SECONDS: Final = 3600
"""The shortest checkpoint TTL the service accepts (one hour)."""
MAX_TTL_SECONDS: Final = 10 * 365 * 24 * 3600
"""The longest checkpoint TTL the service accepts (ten years)."""

DOT_SEGMENTS: Final = frozenset({".", ".."})
"""Path parts that URL normalisation removes, so an id equal to one reaches another endpoint."""


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


class AssignSessionProjectRequest(WireModel):
    """``PUT /sessions/{session_id}/project``: move a session and its runs into a project."""

    project_id: str = Field(min_length=1)


# session search (experimental in the protocol) ------------------------------------------


class OwnSearchOwner(WireModel):
    """The caller's own sessions."""

    type: Literal["own"] = "own"


class AccessibleSearchOwner(WireModel):
    """Every session the caller may see."""

    type: Literal["accessible"] = "accessible"


class UserSearchOwner(WireModel):
    """The sessions of the listed owners (1 to 10)."""

    type: Literal["user"] = "user"
    owner_urns: list[str] = Field(min_length=1, max_length=10)


SearchOwner = Annotated[
    OwnSearchOwner | AccessibleSearchOwner | UserSearchOwner, Field(discriminator="type")
]

ClientSessionFinishReasonType = Literal["success", "errored", "interrupted"]


class ActiveSessionStatusQuery(WireModel):
    type: Literal["active"] = "active"


class CancelledSessionStatusQuery(WireModel):
    type: Literal["cancelled"] = "cancelled"


class FailedSessionStatusQuery(WireModel):
    type: Literal["failed"] = "failed"


class ClientFinishedSessionStatusQuery(WireModel):
    """Sessions whose client said it was done, optionally only for some ``reasons``."""

    type: Literal["client_finished"] = "client_finished"
    reasons: list[ClientSessionFinishReasonType] | None = Field(default=None, min_length=1)


SessionStatusQuery = Annotated[
    ActiveSessionStatusQuery
    | CancelledSessionStatusQuery
    | FailedSessionStatusQuery
    | ClientFinishedSessionStatusQuery,
    Field(discriminator="type"),
]


class SessionSearchCursor(WireModel):
    """Where the next page starts: pass a response's ``next_cursor`` back unchanged."""

    last_created_at: AwareDatetime
    last_session_id: str


class SessionSearchRequest(WireModel):
    """Filters, page size and cursor of a session search (results newest first).

    ``session_id`` and ``display_name`` (case-insensitive; every word must appear) match
    if either does; every other filter must hold.
    """

    session_id: str | None = None
    project_ids: list[str] | None = None
    user_metadata: dict[str, str] = Field(default_factory=dict)
    display_name: str | None = Field(default=None, min_length=1)
    owner: SearchOwner = Field(default_factory=OwnSearchOwner)
    statuses: list[SessionStatusQuery] | None = Field(default=None, min_length=1)
    limit: int = Field(default=50, ge=1, le=200)
    cursor: SessionSearchCursor | None = None


class SessionActive(WireModel):
    type: Literal["active"] = "active"


class SessionCancelled(WireModel):
    type: Literal["cancelled"] = "cancelled"
    detail: str | None = None


class SessionFailedReason(WireModel):
    """What failed the session: a request, a training run or a sampling session."""

    type: str
    request_id: str | None = None
    request_type: str | None = None
    training_run_id: str | None = None
    sampling_session_id: str | None = None


class SessionFailed(WireModel):
    type: Literal["failed"] = "failed"
    category: Literal["user", "internal"]
    reason: SessionFailedReason
    message: str


class ClientSessionFinishReason(WireModel):
    type: ClientSessionFinishReasonType


class ClientSessionFinished(WireModel):
    type: Literal["client_finished"] = "client_finished"
    reason: ClientSessionFinishReason
    detail: str | None = None


SessionStatus = Annotated[
    SessionActive | SessionCancelled | SessionFailed | ClientSessionFinished,
    Field(discriminator="type"),
]


class SessionSummary(WireModel):
    session_id: str
    created_at: datetime
    owner: str
    project_id: str
    status: SessionStatus | None = None
    checkpoints_count: int
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    checkpoint_storage_bytes: int | None = None


class SessionSearchResponse(WireModel):
    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None


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
        for part, value in (("training_run_id", run_id), ("name", name)):
            if value in DOT_SEGMENTS:
                raise ValueError(
                    f"invalid tinker path {tinker_path!r}: its {part} {value!r} is a dot "
                    "segment, which URLs drop (the request would reach another endpoint); "
                    "use the real id"
                )
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

"""``POST /sessions/search`` (experimental in the protocol) over the local store.

Tenants of the local server are isolated and have no organisation, so every owner filter
searches the caller's own sessions: ``own`` and ``accessible`` are the same, and ``user``
finds something only when it names the caller's own owner id. Results are newest first,
paged by a ``(created_at, session_id)`` cursor so pages never overlap or skip.
"""

from __future__ import annotations

import json
from typing import Any, cast

from tinkex.types.rest import (
    ActiveSessionStatusQuery,
    CancelledSessionStatusQuery,
    ClientFinishedSessionStatusQuery,
    ClientSessionFinished,
    ClientSessionFinishReason,
    ClientSessionFinishReasonType,
    FailedSessionStatusQuery,
    SessionActive,
    SessionCancelled,
    SessionFailed,
    SessionSearchCursor,
    SessionSearchRequest,
    SessionSearchResponse,
    SessionStatus,
    SessionStatusQuery,
    SessionSummary,
    UserSearchOwner,
)

from .store import SessionRow, Store

__all__ = ["search_sessions"]

_CLIENT_REASONS = frozenset({"success", "errored", "interrupted"})


def search_sessions(store: Store, owner: str, req: SessionSearchRequest) -> SessionSearchResponse:
    if isinstance(req.owner, UserSearchOwner) and owner not in req.owner.owner_urns:
        return SessionSearchResponse(sessions=[])
    page: list[SessionRow] = []
    more = False
    for row in store.sessions_of(owner):
        if not _after(row, req.cursor) or not _matches(row, req):
            continue
        if len(page) == req.limit:
            more = True
            break
        page.append(row)
    cursor = (
        SessionSearchCursor(
            last_created_at=page[-1].created_at, last_session_id=page[-1].session_id
        )
        if more
        else None
    )
    return SessionSearchResponse(
        sessions=[_summary(store, row) for row in page], next_cursor=cursor
    )


def _status(row: SessionRow) -> SessionStatus:
    """A session's status as the protocol spells it; a heartbeat timeout is a cancel."""
    reason = row.finish_reason
    if reason is None:
        return SessionActive()
    if reason in _CLIENT_REASONS:
        return ClientSessionFinished(
            reason=ClientSessionFinishReason(type=cast(ClientSessionFinishReasonType, reason)),
            detail=row.finish_detail,
        )
    detail = f"{reason}: {row.finish_detail}" if row.finish_detail else reason
    return SessionCancelled(detail=detail)


def _after(row: SessionRow, cursor: SessionSearchCursor | None) -> bool:
    if cursor is None:
        return True
    return (row.created_at, row.session_id) < (cursor.last_created_at, cursor.last_session_id)


def _matches(row: SessionRow, req: SessionSearchRequest) -> bool:
    if req.session_id is not None or req.display_name is not None:
        by_id = req.session_id == row.session_id
        if not by_id and not _name_matches(row.display_name, req.display_name):
            return False
    if req.project_ids is not None and row.project_id not in req.project_ids:
        return False
    metadata = _as_text(row.user_metadata or {})
    if any(metadata.get(key) != value for key, value in req.user_metadata.items()):
        return False
    status = _status(row)
    return req.statuses is None or any(_status_matches(query, status) for query in req.statuses)


def _name_matches(name: str | None, wanted: str | None) -> bool:
    if name is None or wanted is None:
        return False
    lowered = name.lower()
    return all(word in lowered for word in wanted.lower().split())


def _status_matches(query: SessionStatusQuery, status: SessionStatus) -> bool:
    if isinstance(query, ActiveSessionStatusQuery):
        return isinstance(status, SessionActive)
    if isinstance(query, CancelledSessionStatusQuery):
        return isinstance(status, SessionCancelled)
    if isinstance(query, FailedSessionStatusQuery):
        return isinstance(status, SessionFailed)
    assert isinstance(query, ClientFinishedSessionStatusQuery)
    if not isinstance(status, ClientSessionFinished):
        return False
    return query.reasons is None or status.reason.type in query.reasons


def _as_text(metadata: dict[str, Any]) -> dict[str, str]:
    """Session metadata may hold any JSON value; the summary (and matching) use strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def _summary(store: Store, row: SessionRow) -> SessionSummary:
    count, size = store.checkpoint_totals(row.session_id)
    return SessionSummary(
        session_id=row.session_id,
        created_at=row.created_at,
        owner=row.owner,
        project_id=row.project_id,
        status=_status(row),
        checkpoints_count=count,
        display_name=row.display_name,
        user_metadata=None if row.user_metadata is None else _as_text(row.user_metadata),
        checkpoint_storage_bytes=size,
    )

"""Durable state of the local server: SQLite metadata and safetensors checkpoints.

Everything a restarted server must still know (sessions, training runs, samplers,
checkpoints) lives in ``<data_dir>/tinkex.sqlite3``; weights live under
``<data_dir>/checkpoints/<run>/<kind>/<name>/``. A checkpoint is written into a scratch
directory and renamed into place, so a crash mid-save leaves no half checkpoint behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tinkex.types import Checkpoint, CheckpointType, ParsedTinkerPath
from tinkex.types.rest import MAX_TTL_SECONDS, MIN_TTL_SECONDS

from .errors import BadRequest, Conflict, NotFound

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_KIND_OF_TYPE: dict[str, str] = {"training": "weights", "sampler": "sampler_weights"}
DEFAULT_PROJECT_ID = "default"
"""The project of a session created without one (until assign_session_project moves it)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL,
    tags TEXT NOT NULL, user_metadata TEXT, project_id TEXT, display_name TEXT,
    sdk_version TEXT, last_heartbeat TEXT NOT NULL, finish_reason TEXT, finish_detail TEXT
);
CREATE TABLE IF NOT EXISTS training_runs (
    run_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, owner TEXT NOT NULL,
    base_model TEXT NOT NULL, lora_config TEXT NOT NULL, user_metadata TEXT,
    created_at TEXT NOT NULL, last_request_time TEXT NOT NULL, corrupted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS samplers (
    sampler_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, owner TEXT NOT NULL,
    base_model TEXT NOT NULL, model_path TEXT, created_at TEXT NOT NULL,
    ephemeral INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL, checkpoint_type TEXT NOT NULL,
    owner TEXT NOT NULL, created_at TEXT NOT NULL, size_bytes INTEGER NOT NULL,
    public INTEGER NOT NULL, user_metadata TEXT, expires_at TEXT, directory TEXT NOT NULL,
    PRIMARY KEY (run_id, checkpoint_id)
);
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def check_ttl(ttl_seconds: int | None) -> None:
    if ttl_seconds is not None and not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        raise BadRequest(
            f"ttl_seconds={ttl_seconds} is out of range: use {MIN_TTL_SECONDS} (1 hour) to "
            f"{MAX_TTL_SECONDS} (10 years), or omit it for a checkpoint that never expires"
        )


def check_checkpoint_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise BadRequest(
            f"checkpoint name {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or "
            "'-', not starting with '.' or '-'"
        )


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    owner: str
    created_at: datetime
    user_metadata: dict[str, Any] | None
    display_name: str | None
    last_heartbeat: datetime
    finish_reason: str | None
    finish_detail: str | None = None
    project_id: str = DEFAULT_PROJECT_ID


@dataclass(frozen=True)
class RunRow:
    run_id: str
    session_id: str
    owner: str
    base_model: str
    lora_config: dict[str, Any]
    user_metadata: dict[str, Any] | None
    created_at: datetime
    last_request_time: datetime
    corrupted: bool


@dataclass(frozen=True)
class SamplerRow:
    sampler_id: str
    session_id: str
    owner: str
    base_model: str
    model_path: str | None
    ephemeral: bool


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint's record and the directory holding its files."""

    record: Checkpoint
    owner: str
    directory: Path
    meta: dict[str, Any]

    def tensors(self, filename: str) -> dict[str, torch.Tensor]:
        path = self.directory / filename
        if not path.is_file():
            raise NotFound(f"checkpoint {self.record.tinker_path} has no {filename}")
        return load_file(str(path))


class Store:
    """Sessions, runs, samplers and checkpoints of one data directory; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._checkpoints = data_dir / "checkpoints"
        self._scratch = data_dir / "tmp"
        self._checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._scratch, ignore_errors=True)  # leftovers of an interrupted save
        self._scratch.mkdir(parents=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            data_dir / "tinkex.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._drop_orphans()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # sessions ---------------------------------------------------------------------------

    def create_session(
        self,
        *,
        owner: str,
        tags: list[str],
        user_metadata: dict[str, Any] | None,
        project_id: str | None,
        display_name: str | None,
        sdk_version: str,
    ) -> str:
        session_id = f"session-{uuid.uuid4()}"
        now = _iso(_now())
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (session_id, owner, created_at, tags, user_metadata, "
                "project_id, display_name, sdk_version, last_heartbeat) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    owner,
                    now,
                    json.dumps(tags),
                    _dumps(user_metadata),
                    project_id,
                    display_name,
                    sdk_version,
                    now,
                ),
            )
        return session_id

    def get_session(self, session_id: str) -> SessionRow | None:
        rows = self._query("SELECT * FROM sessions WHERE session_id = ?", session_id)
        return _session_row(rows[0]) if rows else None

    def sessions_of(self, owner: str) -> list[SessionRow]:
        """All of ``owner``'s sessions, newest first (ties: greater session id first)."""
        rows = self._query(
            "SELECT * FROM sessions WHERE owner = ? ORDER BY created_at DESC, session_id DESC",
            owner,
        )
        return [_session_row(row) for row in rows]

    def set_session_project(self, session_id: str, project_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET project_id = ? WHERE session_id = ?", (project_id, session_id)
            )

    def checkpoint_totals(self, session_id: str) -> tuple[int, int]:
        """How many unexpired checkpoints a session's runs hold, and their bytes."""
        rows = self._query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(c.size_bytes), 0) AS size FROM checkpoints c "
            "JOIN training_runs r ON r.run_id = c.run_id WHERE r.session_id = ? "
            "AND (c.expires_at IS NULL OR c.expires_at > ?)",
            session_id,
            _iso(_now()),
        )
        return int(rows[0]["n"]), int(rows[0]["size"])

    def heartbeat(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET last_heartbeat = ? WHERE session_id = ?",
                (_iso(_now()), session_id),
            )

    def finish_session(self, session_id: str, reason: str, detail: str | None) -> bool:
        """Record the first finish reason; False when the session was already finished."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE sessions SET finish_reason = ?, finish_detail = ? "
                "WHERE session_id = ? AND finish_reason IS NULL",
                (reason, detail, session_id),
            )
            return cursor.rowcount == 1

    def list_sessions(self, owner: str, limit: int, offset: int) -> list[str]:
        rows = self._query(
            "SELECT session_id FROM sessions WHERE owner = ? ORDER BY created_at DESC, "
            "session_id LIMIT ? OFFSET ?",
            owner,
            limit,
            offset,
        )
        return [row["session_id"] for row in rows]

    def stale_sessions(self, older_than: datetime) -> list[str]:
        rows = self._query(
            "SELECT session_id FROM sessions WHERE finish_reason IS NULL AND last_heartbeat < ?",
            _iso(older_than),
        )
        return [row["session_id"] for row in rows]

    # training runs ----------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        session_id: str,
        owner: str,
        base_model: str,
        lora_config: dict[str, Any],
        user_metadata: dict[str, Any] | None,
    ) -> None:
        now = _iso(_now())
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO training_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    run_id,
                    session_id,
                    owner,
                    base_model,
                    json.dumps(lora_config),
                    _dumps(user_metadata),
                    now,
                    now,
                ),
            )

    def touch_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE training_runs SET last_request_time = ? WHERE run_id = ?",
                (_iso(_now()), run_id),
            )

    def mark_corrupted(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE training_runs SET corrupted = 1 WHERE run_id = ?", (run_id,))

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self._query("SELECT * FROM training_runs WHERE run_id = ?", run_id)
        return _run_row(rows[0]) if rows else None

    def list_runs(
        self,
        owner: str,
        limit: int,
        offset: int,
        *,
        accessible: bool = False,
        project_id: str | None = None,
    ) -> tuple[list[RunRow], int]:
        """One page of runs, newest first: ``owner``'s, plus (``accessible``) every run with
        a published checkpoint; only those of sessions in ``project_id`` if given."""
        where = f"(r.owner = ? OR (? AND {_HAS_PUBLIC})) AND (? IS NULL OR {_PROJECT} = ?)"
        args = (owner, accessible, _iso(_now()), project_id, project_id)
        tables = "training_runs r LEFT JOIN sessions s ON s.session_id = r.session_id"
        rows = self._query(
            f"SELECT r.* FROM {tables} WHERE {where} ORDER BY r.created_at DESC, r.run_id "
            "LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
        total = self._query(f"SELECT COUNT(*) AS n FROM {tables} WHERE {where}", *args)
        return [_run_row(row) for row in rows], int(total[0]["n"])

    def has_public_checkpoint(self, run_id: str) -> bool:
        rows = self._query(
            f"SELECT 1 FROM training_runs r WHERE r.run_id = ? AND {_HAS_PUBLIC}",
            run_id,
            _iso(_now()),
        )
        return bool(rows)

    def runs_of_session(self, session_id: str) -> list[str]:
        rows = self._query(
            "SELECT run_id FROM training_runs WHERE session_id = ? ORDER BY created_at",
            session_id,
        )
        return [row["run_id"] for row in rows]

    # samplers ---------------------------------------------------------------------------

    def create_sampler(
        self,
        *,
        sampler_id: str,
        session_id: str,
        owner: str,
        base_model: str,
        model_path: str | None,
        ephemeral: bool,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO samplers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sampler_id, session_id, owner, base_model, model_path, _iso(_now()), ephemeral),
            )

    def get_sampler(self, sampler_id: str) -> SamplerRow | None:
        rows = self._query("SELECT * FROM samplers WHERE sampler_id = ?", sampler_id)
        if not rows:
            return None
        row = rows[0]
        return SamplerRow(
            sampler_id=row["sampler_id"],
            session_id=row["session_id"],
            owner=row["owner"],
            base_model=row["base_model"],
            model_path=row["model_path"],
            ephemeral=bool(row["ephemeral"]),
        )

    def samplers_of_session(self, session_id: str) -> list[str]:
        rows = self._query(
            "SELECT sampler_id FROM samplers WHERE session_id = ? ORDER BY created_at",
            session_id,
        )
        return [row["sampler_id"] for row in rows]

    # checkpoints ------------------------------------------------------------------------

    def save_checkpoint(
        self,
        *,
        run_id: str,
        owner: str,
        checkpoint_type: CheckpointType,
        name: str,
        files: Mapping[str, Mapping[str, torch.Tensor]],
        meta: dict[str, Any],
        ttl_seconds: int | None,
        user_metadata: dict[str, Any] | None,
        overwrite: bool,
    ) -> Checkpoint:
        """Write ``files`` (safetensors name → tensors) atomically and record them."""
        check_checkpoint_name(name)
        check_ttl(ttl_seconds)
        kind = _KIND_OF_TYPE[checkpoint_type]
        checkpoint_id = f"{kind}/{name}"
        # Every save gets a directory of its own; the record points at it. Overwriting swaps
        # the pointer in one transaction and only then deletes the old files, so a crash at
        # any moment leaves the old checkpoint or the new one, never neither.
        directory = f"{run_id}/{kind}/{name}@{uuid.uuid4().hex[:12]}"
        final = self._checkpoints / directory
        with self._lock:
            exists = bool(
                self._query(
                    "SELECT 1 FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
                    run_id,
                    checkpoint_id,
                )
            )
        if exists and not overwrite:
            raise Conflict(
                f"checkpoint tinker://{run_id}/{checkpoint_id} already exists; choose another "
                "name or pass overwrite=True"
            )
        scratch = self._scratch / uuid.uuid4().hex
        scratch.mkdir()
        try:
            for filename, tensors in files.items():
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(scratch / filename))
            (scratch / "checkpoint.json").write_text(json.dumps(meta, sort_keys=True))
            for path in scratch.iterdir():
                _fsync(path)
            size = sum(path.stat().st_size for path in scratch.iterdir())
            now = _now()
            expires = now + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None
            final.parent.mkdir(parents=True, exist_ok=True)
            scratch.rename(final)
            _fsync(final.parent)
            with self._tx() as db:
                previous = db.execute(
                    "SELECT directory FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
                    (run_id, checkpoint_id),
                ).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    (
                        run_id,
                        checkpoint_id,
                        checkpoint_type,
                        owner,
                        _iso(now),
                        size,
                        _dumps(user_metadata),
                        _iso(expires),
                        directory,
                    ),
                )
            if previous is not None:
                shutil.rmtree(self._checkpoints / previous["directory"], ignore_errors=True)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        found = self.find_checkpoint(run_id, checkpoint_id)
        assert found is not None
        return found.record

    def find_checkpoint(self, run_id: str, checkpoint_id: str) -> StoredCheckpoint | None:
        rows = self._query(
            "SELECT * FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
            run_id,
            checkpoint_id,
        )
        if not rows or _expired(rows[0]):
            return None
        return self._stored(rows[0])

    def checkpoint_at(self, tinker_path: str, owner: str) -> StoredCheckpoint:
        """The checkpoint a ``tinker://`` path names, if ``owner`` may read it."""
        try:
            parsed = ParsedTinkerPath.parse(tinker_path)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        found = self.find_checkpoint(parsed.training_run_id, parsed.checkpoint_id)
        if found is None or (found.owner != owner and not found.record.public):
            raise NotFound(f"checkpoint {tinker_path} does not exist (or has expired)")
        return found

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        rows = self._query(
            "SELECT * FROM checkpoints WHERE run_id = ? ORDER BY created_at, checkpoint_id",
            run_id,
        )
        return [self._stored(row).record for row in rows if not _expired(row)]

    def list_user_checkpoints(
        self, owner: str, limit: int, offset: int
    ) -> tuple[list[Checkpoint], int]:
        now = _iso(_now())
        where = "owner = ? AND (expires_at IS NULL OR expires_at > ?)"
        rows = self._query(
            f"SELECT * FROM checkpoints WHERE {where} ORDER BY created_at DESC, run_id, "
            "checkpoint_id LIMIT ? OFFSET ?",
            owner,
            now,
            limit,
            offset,
        )
        total = self._query(f"SELECT COUNT(*) AS n FROM checkpoints WHERE {where}", owner, now)
        return [self._stored(row).record for row in rows], int(total[0]["n"])

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT directory FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
                (run_id, checkpoint_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"checkpoint tinker://{run_id}/{checkpoint_id} does not exist")
            db.execute(
                "DELETE FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
                (run_id, checkpoint_id),
            )
        self._remove_files(row["directory"])

    def set_public(self, run_id: str, checkpoint_id: str, public: bool) -> None:
        self._update_checkpoint(run_id, checkpoint_id, "public = ?", int(public))

    def set_ttl(self, run_id: str, checkpoint_id: str, ttl_seconds: int | None) -> None:
        check_ttl(ttl_seconds)
        expires = _now() + timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None
        self._update_checkpoint(run_id, checkpoint_id, "expires_at = ?", _iso(expires))

    def expire_checkpoints(self) -> int:
        """Delete checkpoints whose TTL has passed; returns how many went."""
        with self._tx() as db:
            rows = list(
                db.execute(
                    "SELECT run_id, checkpoint_id, directory FROM checkpoints "
                    "WHERE expires_at <= ?",
                    (_iso(_now()),),
                )
            )
            for row in rows:
                db.execute(
                    "DELETE FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
                    (row["run_id"], row["checkpoint_id"]),
                )
                self._remove_files(row["directory"])
        return len(rows)

    def _update_checkpoint(
        self, run_id: str, checkpoint_id: str, assignment: str, value: Any
    ) -> None:
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE checkpoints SET {assignment} WHERE run_id = ? AND checkpoint_id = ?",
                (value, run_id, checkpoint_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"checkpoint tinker://{run_id}/{checkpoint_id} does not exist")

    def _remove_files(self, directory: str) -> None:
        shutil.rmtree(self._checkpoints / directory, ignore_errors=True)

    def _stored(self, row: sqlite3.Row) -> StoredCheckpoint:
        directory = self._checkpoints / row["directory"]
        meta_path = directory / "checkpoint.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        record = Checkpoint(
            checkpoint_id=row["checkpoint_id"],
            checkpoint_type=row["checkpoint_type"],
            time=datetime.fromisoformat(row["created_at"]),
            tinker_path=f"tinker://{row['run_id']}/{row['checkpoint_id']}",
            size_bytes=row["size_bytes"],
            public=bool(row["public"]),
            user_metadata=_loads(row["user_metadata"]),
            expires_at=datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None,
        )
        return StoredCheckpoint(record=record, owner=row["owner"], directory=directory, meta=meta)

    def _drop_orphans(self) -> None:
        """Reconcile records and files after a crash or a hand edit of the data directory.

        Records whose files are gone are forgotten; checkpoint directories no record points
        at (a save or an overwrite interrupted half way) are deleted.
        """
        with self._tx() as db:
            referenced = set()
            for row in list(db.execute("SELECT run_id, checkpoint_id, directory FROM checkpoints")):
                if (self._checkpoints / row["directory"] / "checkpoint.json").is_file():
                    referenced.add(row["directory"])
                else:
                    db.execute(
                        "DELETE FROM checkpoints WHERE run_id = ? AND checkpoint_id = ?",
                        (row["run_id"], row["checkpoint_id"]),
                    )
        for path in self._checkpoints.glob("*/*/*"):
            if path.is_dir() and path.relative_to(self._checkpoints).as_posix() not in referenced:
                shutil.rmtree(path, ignore_errors=True)


_HAS_PUBLIC = (
    "EXISTS (SELECT 1 FROM checkpoints c WHERE c.run_id = r.run_id AND c.public = 1 "
    "AND (c.expires_at IS NULL OR c.expires_at > ?))"
)
"""SQL: run ``r`` has a published, unexpired checkpoint (one parameter: now)."""
_PROJECT = f"COALESCE(s.project_id, '{DEFAULT_PROJECT_ID}')"
"""SQL: the project of session ``s``."""


def _session_row(row: sqlite3.Row) -> SessionRow:
    return SessionRow(
        session_id=row["session_id"],
        owner=row["owner"],
        created_at=datetime.fromisoformat(row["created_at"]),
        user_metadata=_loads(row["user_metadata"]),
        display_name=row["display_name"],
        last_heartbeat=datetime.fromisoformat(row["last_heartbeat"]),
        finish_reason=row["finish_reason"],
        finish_detail=row["finish_detail"],
        project_id=row["project_id"] or DEFAULT_PROJECT_ID,
    )


def _expired(row: sqlite3.Row) -> bool:
    expires = row["expires_at"]
    return expires is not None and datetime.fromisoformat(expires) <= _now()


def _run_row(row: sqlite3.Row) -> RunRow:
    return RunRow(
        run_id=row["run_id"],
        session_id=row["session_id"],
        owner=row["owner"],
        base_model=row["base_model"],
        lora_config=json.loads(row["lora_config"]),
        user_metadata=_loads(row["user_metadata"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        last_request_time=datetime.fromisoformat(row["last_request_time"]),
        corrupted=bool(row["corrupted"]),
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

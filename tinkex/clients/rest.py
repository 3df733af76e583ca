"""RestClient: manage training runs, checkpoints and sessions (no session of its own).

Every method sends one plain request (no futures to poll) on the runtime's I/O loop and
returns an :class:`~tinkex.futures.APIFuture`; each (but the experimental
:meth:`RestClient.search_sessions`) has an ``_async`` twin that awaits it. Arguments are
checked before anything is sent: a malformed ``tinker://`` path, id, page, TTL or access
scope raises :class:`ValueError` saying what is wrong and what a valid one looks like. Ids
equal to ``.`` or ``..`` are refused too: URL normalisation would drop them and the request
would silently reach another endpoint.
What the server refuses arrives as the matching :mod:`tinkex.errors` class
(:class:`~tinkex.errors.NotFoundError`, :class:`~tinkex.errors.AuthenticationError`, ...)
with the server's explanation.
"""

from __future__ import annotations

import contextlib
import email.utils
import threading
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote, urljoin

import httpx
from pydantic import BaseModel, ValidationError

from tinkex.actors.io_loop import LoopContext
from tinkex.actors.runtime import Runtime
from tinkex.config import Config
from tinkex.errors import APIResponseValidationError, RequestInfo, redact_url
from tinkex.futures import APIFuture
from tinkex.transport import Transport
from tinkex.types import (
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    WeightsInfoResponse,
)
from tinkex.types.rest import (
    CHECKPOINT_KINDS,
    DOT_SEGMENTS,
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
    AssignSessionProjectRequest,
    CheckpointArchiveUrlResponse,
    CheckpointsListResponse,
    GetSessionResponse,
    ListSessionsResponse,
    ParsedTinkerPath,
    SessionSearchRequest,
    SessionSearchResponse,
    TrainingRun,
    TrainingRunsResponse,
)

from .checkpoint_download import (
    Progress,
    check_extracted_limit,
    check_target,
    download_archive,
)

__all__ = ["AccessScope", "ExperimentalWarning", "RestClient"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

AccessScope = Literal["owned", "accessible"]
_ACCESS_SCOPES: Final = ("owned", "accessible")
_MAX_LIMIT: Final = 10_000
_ARCHIVE_URL_LIFETIME: Final = timedelta(minutes=15)
"""How long an archive URL is assumed valid when the server does not say (PROTOCOL §2.11)."""
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

Decode = Callable[[Transport, httpx.Response], T]


class ExperimentalWarning(FutureWarning):
    """A method the protocol marks experimental: it may change or go in any release."""


class RestClient:
    """Lists, inspects, publishes, expires, deletes and downloads checkpoints and runs.

    Keyword arguments are :class:`~tinkex.config.Config` fields (``api_key``, ``base_url``,
    ``timeout``, ...), falling back to the environment (``TINKER_API_KEY``, ...), exactly as
    for :class:`~tinkex.clients.ServiceClient`; or pass a ready ``config``. The client opens
    no session and holds nothing but its configuration: connections are the runtime's shared
    pools, so creating many RestClients is cheap. ``close()`` (or leaving a ``with`` block)
    only makes later calls fail loudly.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        config: Config | None = None,
        **config_fields: Any,
    ) -> None:
        if config is None:
            config = Config.from_env(base_url=base_url, api_key=api_key, **config_fields)
        elif base_url is not None or api_key is not None or config_fields:
            raise TypeError(
                "RestClient takes either config= or individual settings (base_url=, "
                "api_key=, ...), not both; use config.replace(...) to change a Config"
            )
        self.config = config
        self._runtime = Runtime.get()
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RestClient(base_url={redact_url(self.config.base_url)!r})"

    # runs -------------------------------------------------------------------------------

    def get_server_capabilities(self) -> APIFuture[GetServerCapabilitiesResponse]:
        """The models the server can train and sample."""
        return self._send(
            "GET",
            "get_server_capabilities",
            _model(GetServerCapabilitiesResponse),
            "get_server_capabilities",
        )

    def get_training_run(
        self, training_run_id: str, access_scope: AccessScope = "owned"
    ) -> APIFuture[TrainingRun]:
        """One training run (its base model, LoRA rank, last checkpoints, metadata)."""
        run = _segment(training_run_id, "training_run_id")
        return self._send(
            "GET",
            f"training_runs/{run}",
            _model(TrainingRun),
            "get_training_run",
            params={"access_scope": _scope(access_scope)},
        )

    def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> APIFuture[TrainingRun]:
        """The training run a checkpoint's ``tinker://`` path belongs to."""
        parsed = _parse_tinker_path(tinker_path)
        return self.get_training_run(parsed.training_run_id, access_scope)

    def list_training_runs(
        self,
        limit: int = 20,
        offset: int = 0,
        access_scope: AccessScope = "owned",
        project_id: str | None = None,
    ) -> APIFuture[TrainingRunsResponse]:
        """One page of training runs; ``cursor.total_count`` says how many there are."""
        params: dict[str, Any] = {
            **_page(limit, offset),
            "access_scope": _scope(access_scope),
        }
        if project_id is not None:
            params["project_id"] = _text(project_id, "project_id")
        return self._send(
            "GET", "training_runs", _model(TrainingRunsResponse), "list_training_runs", params
        )

    def get_weights_info_by_tinker_path(self, tinker_path: str) -> APIFuture[WeightsInfoResponse]:
        """What a checkpoint was trained as: base model, LoRA rank, trained parts."""
        _parse_tinker_path(tinker_path)
        return self._send(
            "POST",
            "weights_info",
            _model(WeightsInfoResponse),
            "get_weights_info_by_tinker_path",
            json={"tinker_path": tinker_path},
        )

    # checkpoints ------------------------------------------------------------------------

    def list_checkpoints(self, training_run_id: str) -> APIFuture[CheckpointsListResponse]:
        """Every checkpoint of one training run, oldest first."""
        run = _segment(training_run_id, "training_run_id")
        return self._send(
            "GET",
            f"training_runs/{run}/checkpoints",
            _model(CheckpointsListResponse),
            "list_checkpoints",
        )

    def list_user_checkpoints(
        self, limit: int = 100, offset: int = 0
    ) -> APIFuture[CheckpointsListResponse]:
        """One page of the caller's checkpoints across all runs, with a cursor."""
        return self._send(
            "GET",
            "checkpoints",
            _model(CheckpointsListResponse),
            "list_user_checkpoints",
            _page(limit, offset),
        )

    def delete_checkpoint(self, training_run_id: str, checkpoint_id: str) -> APIFuture[None]:
        """Delete a checkpoint and its files; ``checkpoint_id`` is ``'<kind>/<name>'``."""
        return self._on_checkpoint(
            "DELETE", _checkpoint_path(training_run_id, checkpoint_id), "delete_checkpoint"
        )

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        """Delete the checkpoint a ``tinker://`` path names."""
        return self._on_checkpoint(
            "DELETE", _tinker_checkpoint_path(tinker_path), "delete_checkpoint_from_tinker_path"
        )

    def publish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        """Make a checkpoint readable by every tenant of the server."""
        path = _tinker_checkpoint_path(tinker_path) + "/publish"
        return self._on_checkpoint("POST", path, "publish_checkpoint_from_tinker_path")

    def unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        """Make a published checkpoint private again."""
        path = _tinker_checkpoint_path(tinker_path) + "/publish"
        return self._on_checkpoint("DELETE", path, "unpublish_checkpoint_from_tinker_path")

    def set_checkpoint_ttl_from_tinker_path(
        self, tinker_path: str, ttl_seconds: int | None
    ) -> APIFuture[None]:
        """Expire a checkpoint ``ttl_seconds`` from now, or never (``None``).

        The service accepts 3600 (one hour) to 315 360 000 (ten years) seconds.
        """
        _check_ttl(ttl_seconds)
        path = _tinker_checkpoint_path(tinker_path) + "/ttl"
        return self._on_checkpoint(
            "PUT", path, "set_checkpoint_ttl_from_tinker_path", json={"ttl_seconds": ttl_seconds}
        )

    def get_checkpoint_archive_url(
        self, training_run_id: str, checkpoint_id: str
    ) -> APIFuture[CheckpointArchiveUrlResponse]:
        """A signed URL serving the checkpoint's files as a tar archive (no API key needed)."""
        path = _checkpoint_path(training_run_id, checkpoint_id) + "/archive"
        return self._send("GET", path, _archive_url, "get_checkpoint_archive_url", redirects=False)

    def get_checkpoint_archive_url_from_tinker_path(
        self, tinker_path: str
    ) -> APIFuture[CheckpointArchiveUrlResponse]:
        """:meth:`get_checkpoint_archive_url` for the checkpoint a ``tinker://`` path names."""
        parsed = _parse_tinker_path(tinker_path)
        return self.get_checkpoint_archive_url(parsed.training_run_id, parsed.checkpoint_id)

    def download_checkpoint(
        self,
        tinker_path: str,
        output_dir: str | PathLike[str],
        *,
        force: bool = False,
        progress: Progress | None = None,
        max_extracted_bytes: int | None = None,
    ) -> APIFuture[Path]:
        """Fetch a checkpoint's files into ``<output_dir>/<run>_<kind>_<name>``.

        The archive is streamed to disk (by a worker thread, never blocking the I/O loop)
        and unpacked in a hidden directory next to the target, which appears only when
        everything arrived: a failure, or cancelling the future, leaves nothing behind, not
        even the directories the call created for ``output_dir``. An existing non-empty
        target raises :class:`FileExistsError` (here, or in the future if it appears
        meanwhile) unless ``force=True``. ``progress(bytes_received, bytes_total)`` runs on
        tinkex's I/O thread after every chunk (``bytes_total`` is ``None`` if the server
        does not say), so it must be quick; an exception it raises aborts the download.
        Archive members that could write outside the target, sparse members, and archives
        that unpack to more than ``max_extracted_bytes`` (default: ten times the archive,
        at least 16 MiB) raise :class:`~tinkex.clients.checkpoint_download.UnsafeArchiveError`.
        The future holds the target directory.
        """
        parsed = _parse_tinker_path(tinker_path)
        check_extracted_limit(max_extracted_bytes)
        target = Path(output_dir) / _target_name(parsed)
        check_target(target, force=force)
        config = self._checked_config()
        archive = self.get_checkpoint_archive_url(parsed.training_run_id, parsed.checkpoint_id)

        async def download(ctx: LoopContext) -> Path:
            located = await archive
            transport = ctx.transport(config)
            await download_archive(
                transport,
                located.url,
                target,
                force=force,
                progress=progress,
                max_extracted_bytes=max_extracted_bytes,
            )
            return target

        return self._runtime.future(self._runtime.loop().call(download))

    # sessions and samplers --------------------------------------------------------------

    def list_sessions(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> APIFuture[ListSessionsResponse]:
        """One page of session ids."""
        params = {**_page(limit, offset), "access_scope": _scope(access_scope)}
        return self._send("GET", "sessions", _model(ListSessionsResponse), "list_sessions", params)

    def get_session(
        self, session_id: str, access_scope: AccessScope = "owned"
    ) -> APIFuture[GetSessionResponse]:
        """The training runs and samplers a session created."""
        session = _segment(session_id, "session_id")
        return self._send(
            "GET",
            f"sessions/{session}",
            _model(GetSessionResponse),
            "get_session",
            {"access_scope": _scope(access_scope)},
        )

    def get_sampler(self, sampler_id: str) -> APIFuture[GetSamplerResponse]:
        """A sampling session's base model and weights path."""
        sampler = _segment(sampler_id, "sampler_id")
        return self._send("GET", f"samplers/{sampler}", _model(GetSamplerResponse), "get_sampler")

    def assign_session_project(self, session_id: str, project_id: str) -> APIFuture[None]:
        """Move a session, with its training runs and samplers, into project ``project_id``.

        There is no way back out of a project, only into another one.
        """
        session = _segment(session_id, "session_id")
        body = AssignSessionProjectRequest(project_id=_text(project_id, "project_id"))
        return self._send(
            "PUT",
            f"sessions/{session}/project",
            _ignore,
            "assign_session_project",
            json=body.to_wire(),
        )

    def search_sessions(self, request: SessionSearchRequest) -> APIFuture[SessionSearchResponse]:
        """One page of the sessions matching ``request``, newest first (experimental).

        Page on by passing each answer's ``next_cursor`` back as the request's ``cursor``
        (``request.model_copy(update={"cursor": page.next_cursor})``) until it is ``None``.
        Warns with :class:`ExperimentalWarning`: the protocol may change this call in any
        release.
        """
        if not isinstance(request, SessionSearchRequest):
            raise ValueError(
                f"request must be a tinkex.types.rest.SessionSearchRequest, got "
                f"{type(request).__name__}; e.g. SessionSearchRequest(display_name='nightly')"
            )
        warnings.warn(
            "RestClient.search_sessions is experimental: it may change or be removed in any "
            "release",
            ExperimentalWarning,
            stacklevel=2,
        )
        return self._send(
            "POST",
            "sessions/search",
            _model(SessionSearchResponse),
            "search_sessions",
            json=request.to_wire(),
        )

    # asyncio twins: the calls above only schedule work, so awaiting them never blocks ---

    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await self.get_server_capabilities()

    async def get_training_run_async(
        self, training_run_id: str, access_scope: AccessScope = "owned"
    ) -> TrainingRun:
        return await self.get_training_run(training_run_id, access_scope)

    async def get_training_run_by_tinker_path_async(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> TrainingRun:
        return await self.get_training_run_by_tinker_path(tinker_path, access_scope)

    async def list_training_runs_async(
        self,
        limit: int = 20,
        offset: int = 0,
        access_scope: AccessScope = "owned",
        project_id: str | None = None,
    ) -> TrainingRunsResponse:
        return await self.list_training_runs(limit, offset, access_scope, project_id)

    async def get_weights_info_by_tinker_path_async(self, tinker_path: str) -> WeightsInfoResponse:
        return await self.get_weights_info_by_tinker_path(tinker_path)

    async def list_checkpoints_async(self, training_run_id: str) -> CheckpointsListResponse:
        return await self.list_checkpoints(training_run_id)

    async def list_user_checkpoints_async(
        self, limit: int = 100, offset: int = 0
    ) -> CheckpointsListResponse:
        return await self.list_user_checkpoints(limit, offset)

    async def delete_checkpoint_async(self, training_run_id: str, checkpoint_id: str) -> None:
        await self.delete_checkpoint(training_run_id, checkpoint_id)

    async def delete_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.delete_checkpoint_from_tinker_path(tinker_path)

    async def publish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.publish_checkpoint_from_tinker_path(tinker_path)

    async def unpublish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.unpublish_checkpoint_from_tinker_path(tinker_path)

    async def set_checkpoint_ttl_from_tinker_path_async(
        self, tinker_path: str, ttl_seconds: int | None
    ) -> None:
        await self.set_checkpoint_ttl_from_tinker_path(tinker_path, ttl_seconds)

    async def get_checkpoint_archive_url_async(
        self, training_run_id: str, checkpoint_id: str
    ) -> CheckpointArchiveUrlResponse:
        return await self.get_checkpoint_archive_url(training_run_id, checkpoint_id)

    async def get_checkpoint_archive_url_from_tinker_path_async(
        self, tinker_path: str
    ) -> CheckpointArchiveUrlResponse:
        return await self.get_checkpoint_archive_url_from_tinker_path(tinker_path)

    async def download_checkpoint_async(
        self,
        tinker_path: str,
        output_dir: str | PathLike[str],
        *,
        force: bool = False,
        progress: Progress | None = None,
        max_extracted_bytes: int | None = None,
    ) -> Path:
        return await self.download_checkpoint(
            tinker_path,
            output_dir,
            force=force,
            progress=progress,
            max_extracted_bytes=max_extracted_bytes,
        )

    async def list_sessions_async(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> ListSessionsResponse:
        return await self.list_sessions(limit, offset, access_scope)

    async def get_session_async(
        self, session_id: str, access_scope: AccessScope = "owned"
    ) -> GetSessionResponse:
        return await self.get_session(session_id, access_scope)

    async def get_sampler_async(self, sampler_id: str) -> GetSamplerResponse:
        return await self.get_sampler(sampler_id)

    async def assign_session_project_async(self, session_id: str, project_id: str) -> None:
        await self.assign_session_project(session_id, project_id)

    # lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse further calls (there is nothing to release: connections are shared)."""
        with self._lock:
            self._closed = True

    def __enter__(self) -> RestClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # plumbing ---------------------------------------------------------------------------

    def _checked_config(self) -> Config:
        with self._lock:
            if self._closed:
                raise RuntimeError("this RestClient is closed; create a new one")
        return self.config

    def _on_checkpoint(
        self, method: str, path: str, name: str, *, json: Any = None
    ) -> APIFuture[None]:
        return self._send(method, path, _ignore, name, json=json)

    def _send(
        self,
        method: str,
        path: str,
        decode: Decode[T],
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        json: Any = None,
        redirects: bool = True,
    ) -> APIFuture[T]:
        config = self._checked_config()

        async def call(ctx: LoopContext) -> T:
            transport = ctx.transport(config)
            response = await transport.request(
                method,
                path,
                params=params,
                json=json,
                sdk_method=f"RestClient.{name}",
                follow_redirects=None if redirects else False,
            )
            return decode(transport, response)

        return self._runtime.future(self._runtime.loop().call(call))


# decoding ---------------------------------------------------------------------------------


def _model(model: type[M]) -> Decode[M]:
    def decode(transport: Transport, response: httpx.Response) -> M:
        return _validated(model, transport.decode_json(response), response)

    return decode


def _validated(model: type[M], raw: Any, response: httpx.Response) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        info = RequestInfo(response.request.method, redact_url(str(response.request.url)))
        raise APIResponseValidationError(
            f"the answer to {info} is not a valid {model.__name__}: {exc.errors()[:3]}",
            info,
            body=raw,
            status_code=response.status_code,
        ) from None


def _ignore(transport: Transport, response: httpx.Response) -> None:
    return None


def _archive_url(transport: Transport, response: httpx.Response) -> CheckpointArchiveUrlResponse:
    """A redirect's ``Location`` and ``Expires``, or a JSON ``{url, expires}`` body."""
    if response.status_code not in _REDIRECTS:
        return _validated(CheckpointArchiveUrlResponse, transport.decode_json(response), response)
    location = response.headers.get("location")
    if not location:
        info = RequestInfo(response.request.method, redact_url(str(response.request.url)))
        raise APIResponseValidationError(
            f"{info} answered HTTP {response.status_code} without a Location header",
            info,
            status_code=response.status_code,
        )
    expires = datetime.now(UTC) + _ARCHIVE_URL_LIFETIME
    header = response.headers.get("expires")
    if header:
        # An unreadable Expires keeps the documented default.
        with contextlib.suppress(TypeError, ValueError):
            expires = email.utils.parsedate_to_datetime(header)
    return CheckpointArchiveUrlResponse(
        url=urljoin(str(response.request.url), location), expires=expires
    )


# argument checks --------------------------------------------------------------------------


def _parse_tinker_path(tinker_path: object) -> ParsedTinkerPath:
    """:meth:`ParsedTinkerPath.parse`, refusing non-strings with the same kind of message."""
    if not isinstance(tinker_path, str):
        raise ValueError(
            f"tinker_path must be a string like 'tinker://<training_run_id>/weights/<name>', "
            f"got {type(tinker_path).__name__}"
        )
    return ParsedTinkerPath.parse(tinker_path)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _segment(value: object, what: str) -> str:
    """``value`` as one URL path segment (no ``/``, and not a dot segment)."""
    text = _text(value, what)
    if "/" in text:
        raise ValueError(f"{what} {text!r} must not contain '/'; pass the bare id")
    if text in DOT_SEGMENTS:
        raise ValueError(
            f"{what} {text!r} is not an id: URLs drop '.' and '..' segments, so the request "
            "would reach another endpoint; pass the real id"
        )
    return quote(text, safe=":")


def _checkpoint_path(training_run_id: str, checkpoint_id: str) -> str:
    run = _segment(training_run_id, "training_run_id")
    text = _text(checkpoint_id, "checkpoint_id")
    kind, _, name = text.partition("/")
    if kind not in CHECKPOINT_KINDS or not name or "/" in name:
        raise ValueError(
            f"checkpoint_id {text!r} must be '<kind>/<name>' with kind one of "
            f"{', '.join(sorted(CHECKPOINT_KINDS))}, e.g. 'weights/step-10'"
        )
    checkpoint = _segment(name, f"checkpoint_id {text!r}: its name")
    return f"training_runs/{run}/checkpoints/{kind}/{checkpoint}"


def _tinker_checkpoint_path(tinker_path: str) -> str:
    parsed = _parse_tinker_path(tinker_path)
    return _checkpoint_path(parsed.training_run_id, parsed.checkpoint_id)


def _check_ttl(ttl_seconds: object) -> None:
    """The service's range, checked here so a mistake costs no round trip."""
    if ttl_seconds is None:
        return
    if (
        not isinstance(ttl_seconds, int)
        or isinstance(ttl_seconds, bool)
        or not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS
    ):
        raise ValueError(
            f"ttl_seconds must be a whole number of seconds from {MIN_TTL_SECONDS} (one hour) "
            f"to {MAX_TTL_SECONDS} (ten years), or None to never expire; got {ttl_seconds!r}"
        )


def _scope(access_scope: object) -> str:
    if access_scope not in _ACCESS_SCOPES:
        raise ValueError(f"access_scope must be 'owned' or 'accessible', got {access_scope!r}")
    return str(access_scope)


def _page(limit: object, offset: object) -> dict[str, int]:
    for name, value, low in (("limit", limit, 1), ("offset", offset, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    assert isinstance(limit, int) and isinstance(offset, int)
    if limit > _MAX_LIMIT:
        raise ValueError(f"limit must be at most {_MAX_LIMIT}, got {limit}; page with offset")
    return {"limit": limit, "offset": offset}


def _target_name(parsed: ParsedTinkerPath) -> str:
    """``<run>_<kind>_<name>``: the directory name the official CLI downloads into."""
    return parsed.tinker_path.removeprefix("tinker://").replace("/", "_")

"""Downloading a checkpoint archive: streamed to disk, unpacked safely, installed atomically.

Four promises, each because a half-done download is worse than none:

* **constant memory**: the archive is streamed in blocks to a file, never held whole;
* **the I/O loop never waits for the disk**: every write, the unpacking and the clean-up
  run in worker threads, because the loop that receives the archive also runs every other
  client's heartbeats and polls;
* **atomic**: everything happens in a hidden ``.<target>.*.partial`` directory next to the
  target, which is renamed into place only once the archive is fully unpacked; any failure
  (or cancellation) removes the staging directory, and the output directories the call
  created, and leaves the target untouched;
* **safe unpacking**: archives come from a URL, so every member is checked before anything
  is written: absolute paths, ``..`` components, links that could leave the target,
  devices, FIFOs, sparse members and archives that unpack to far more than they weigh are
  refused with :class:`UnsafeArchiveError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Final, TypeVar

import httpx

from tinkex import telemetry
from tinkex.errors import (
    APIConnectionError,
    APITimeoutError,
    RequestInfo,
    TinkexError,
    redact_url,
    status_error,
)
from tinkex.transport import Transport

__all__ = [
    "DOWNLOAD_EVENT",
    "EXPANSION_RATIO",
    "MIN_EXTRACTED_LIMIT",
    "Progress",
    "UnsafeArchiveError",
    "check_extracted_limit",
    "check_target",
    "download_archive",
    "extract_safely",
]

T = TypeVar("T")

Progress = Callable[[int, int | None], object]
"""``progress(bytes_received, bytes_total)``; ``bytes_total`` is ``None`` when unknown."""

DOWNLOAD_EVENT: Final = "tinkex.checkpoint.download"
"""Span prefix around a download; ``stop`` carries ``bytes`` (archive bytes received)."""

EXPANSION_RATIO: Final = 10
"""By default an archive may unpack to at most this many times its own size ..."""
MIN_EXTRACTED_LIMIT: Final = 16 * 1024 * 1024
"""... or this many bytes, whichever is more. (An uncompressed tar never unpacks to more
than its own size: only compression can make it bigger, and checkpoint weights hardly
compress.)"""

_ERROR_BODY_LIMIT: Final = 64 * 1024
_COPY_BUFFER: Final = 1024 * 1024
_WRITE_BLOCK: Final = 1024 * 1024
"""Received bytes are handed to a worker thread in blocks of about this size."""
_HERE: Final = PurePosixPath(".")


class UnsafeArchiveError(TinkexError, ValueError):
    """A checkpoint archive holds a member that could write outside the target directory,
    or would unpack to far more data than the archive holds."""


async def download_archive(
    transport: Transport,
    url: str,
    target: Path,
    *,
    force: bool,
    progress: Progress | None,
    max_extracted_bytes: int | None = None,
) -> None:
    """Stream the tar at ``url`` and unpack it as directory ``target``.

    Runs on the I/O loop, which only receives: the chunks are written by worker threads
    (``progress`` is called on the loop after each chunk, so it must be quick), and the
    unpacking and the final rename run in a worker thread too. ``url`` is signed, so no
    API key is sent with it.

    Raises:
        FileExistsError: ``target`` exists and is not empty, and ``force`` is false.
        UnsafeArchiveError: the archive tries to write outside ``target``, holds sparse
            members, or unpacks to more than ``max_extracted_bytes``.
        APIStatusError: the archive URL answered 4xx/5xx (e.g. it expired).
        APIConnectionError: the download broke off.
    """
    shown = redact_url(url)
    with telemetry.span(DOWNLOAD_EVENT, {"url": shown, "target": str(target)}) as span:
        staging = _Staging.next_to(target)
        handed_over = False
        try:
            await _in_thread(staging.prepare)
            archive = staging.directory / "archive.tar"
            span.measurements["bytes"] = await _fetch(transport, url, archive, progress)
            # From here on the worker thread owns the staging directory (and removes it),
            # so a cancelled caller cannot delete it under the thread's feet; it is told to
            # stop instead, and installs nothing unless it already had.
            handed_over = True
            abandoned = threading.Event()
            try:
                await asyncio.to_thread(
                    _unpack_and_install, archive, staging, force, abandoned, max_extracted_bytes
                )
            except asyncio.CancelledError:
                abandoned.set()
                raise
        finally:
            if not handed_over:
                await _in_thread(staging.discard)


@dataclass
class _Staging:
    """The hidden directory a download is assembled in, next to its target, and the
    output directories the call had to create for it (removed again if it fails)."""

    target: Path
    directory: Path
    created: list[Path] = field(default_factory=list)

    @classmethod
    def next_to(cls, target: Path) -> _Staging:
        return cls(target, target.parent / f".{target.name}.{secrets.token_hex(6)}.partial")

    def prepare(self) -> None:
        missing: list[Path] = []
        parent = self.target.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue  # made by somebody else meanwhile: theirs, not ours to remove
            self.created.append(directory)
        self.directory.mkdir(mode=0o700)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        for directory in reversed(self.created):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only while empty: never what somebody else put there


async def _in_thread(func: Callable[[], T]) -> T:
    """``func()`` in a worker thread, so the disk never stalls the shared I/O loop.

    A cancel waits for ``func`` to finish before it is re-raised: what ``func`` touches (an
    open file, the staging directory) must not be closed or removed under its feet, and
    what it made must be known to the clean-up.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        raise


async def _fetch(transport: Transport, url: str, archive: Path, progress: Progress | None) -> int:
    config = transport.config
    client = transport.pools.client_for(config)
    info = RequestInfo("GET", redact_url(url))
    timeout = httpx.Timeout(
        config.timeout, connect=min(transport.pools.connect_timeout, config.timeout)
    )
    out = await _in_thread(lambda: archive.open("wb"))
    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code >= 400:
                raise await _failed(response, info)
            total = _declared_length(response)
            received = 0
            block = bytearray()
            async for chunk in response.aiter_bytes():
                block += chunk
                received += len(chunk)
                if len(block) >= _WRITE_BLOCK:
                    full, block = block, bytearray()
                    await _in_thread(partial(out.write, full))
                if progress is not None:
                    progress(received, total)
            if block:
                await _in_thread(partial(out.write, block))
    except httpx.TimeoutException as exc:
        raise APITimeoutError(
            f"downloading the checkpoint archive ({info}) timed out", info
        ) from exc
    except httpx.HTTPError as exc:
        raise APIConnectionError(
            f"downloading the checkpoint archive ({info}) failed: {type(exc).__name__}: {exc}",
            info,
        ) from exc
    finally:
        await _in_thread(out.close)
    if total is not None and received != total:
        raise APIConnectionError(
            f"the checkpoint archive ({info}) ended after {received} of {total} bytes", info
        )
    return received


async def _failed(response: httpx.Response, info: RequestInfo) -> Exception:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    text = bytes(body[:_ERROR_BODY_LIMIT]).decode("utf-8", errors="replace")
    return status_error(
        response.status_code,
        f"HTTP {response.status_code} from {info} while downloading the checkpoint archive "
        "(an archive URL expires: ask for a new one)",
        info,
        text or None,
        response.headers,
    )


def _declared_length(response: httpx.Response) -> int | None:
    if response.headers.get("content-encoding", "identity") != "identity":
        return None  # the length is of the encoded body, the chunks are decoded
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


# unpacking and installing (worker thread) -------------------------------------------------


def _unpack_and_install(
    archive: Path,
    staging: _Staging,
    force: bool,
    abandoned: threading.Event,
    max_extracted_bytes: int | None,
) -> None:
    """Unpack, then install unless the caller gave up meanwhile (the rename is the commit:
    a cancel that comes after it is too late, as for any finished call)."""
    try:
        unpacked = staging.directory / "files"
        extract_safely(archive, unpacked, max_bytes=max_extracted_bytes)
        archive.unlink()
        if not abandoned.is_set():
            _install(unpacked, staging.directory, staging.target, force)
    finally:
        staging.discard()


def check_target(target: Path, *, force: bool) -> None:
    """Refuse an existing ``target`` that is not an empty directory, unless ``force``."""
    if force or not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return
    raise FileExistsError(
        f"{target} already exists and is not empty; pass force=True to replace it, "
        "or choose another output_dir"
    )


def check_extracted_limit(max_bytes: object) -> None:
    """Refuse a ``max_extracted_bytes`` that is neither ``None`` nor a positive int."""
    if max_bytes is None:
        return
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise ValueError(
            f"max_extracted_bytes must be a positive whole number of bytes, or None for "
            f"{EXPANSION_RATIO} times the archive's size (at least {MIN_EXTRACTED_LIMIT}); "
            f"got {max_bytes!r}"
        )


def _install(unpacked: Path, staging: Path, target: Path, force: bool) -> None:
    """Rename ``unpacked`` to ``target``, moving an existing target aside first."""
    replaced: Path | None = None
    if target.exists() or target.is_symlink():
        check_target(target, force=force)  # again: it may have been filled meanwhile
        replaced = staging / "replaced"
        os.rename(target, replaced)
    try:
        os.rename(unpacked, target)
    except BaseException:
        if replaced is not None:
            os.rename(replaced, target)
        raise


def extract_safely(archive: Path, destination: Path, *, max_bytes: int | None = None) -> None:
    """Unpack the tar ``archive`` into the new directory ``destination``, refusing escapes.

    Regular files and directories are written with default permissions (the archive's
    modes and owners are ignored). A hard link to an earlier file of the archive becomes a
    hard link (never a copy, so links cannot multiply the data); a symbolic link is kept
    only if it points down into its own directory (relative, no ``..``), which can never
    lead outside ``destination``. The archive's top directory (``.`` or ``./``, as
    ``tar -C dir .`` writes it) is ``destination`` itself.

    The regular files may add up to ``max_bytes``; by default :data:`EXPANSION_RATIO`
    times the archive's size, at least :data:`MIN_EXTRACTED_LIMIT`.

    Raises:
        UnsafeArchiveError: a member is absolute, has ``..`` components, is a link that
            could point outside, a device, a FIFO or a sparse file, or the files add up to
            more than the limit. Nothing is cleaned up here: the caller removes
            ``destination`` (it is a staging directory).
        tarfile.TarError: the archive is corrupt.
    """
    limit = max_bytes if max_bytes is not None else _default_limit(archive)
    destination.mkdir()
    extracted = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            relative = _member_path(member.name, archive)
            if relative == _HERE:
                if member.isdir():
                    continue  # the archive's top directory: destination itself
                raise UnsafeArchiveError(
                    f"archive {archive.name}: member {member.name!r} is not a directory but "
                    "has no name; refusing to extract it"
                )
            path = destination.joinpath(*relative.parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif member.issparse():
                raise UnsafeArchiveError(
                    f"archive {archive.name}: member {member.name!r} is a sparse file, which "
                    "could unpack to far more than the archive holds; checkpoint archives "
                    "hold plain files"
                )
            elif member.isfile():
                extracted += member.size
                if extracted > limit:
                    raise UnsafeArchiveError(
                        f"archive {archive.name} unpacks to more than {limit} bytes (member "
                        f"{member.name!r} brings it to {extracted}); refusing it as an archive "
                        "bomb. If the checkpoint really is that large, pass a larger "
                        "max_extracted_bytes to download_checkpoint"
                    )
                _write_file(tar, member, path)
            elif member.issym():
                _check_link_target(member, archive)
                _replace(path)
                os.symlink(member.linkname, path)
            elif member.islnk():
                _hard_link(member, path, destination, archive)
            else:
                raise UnsafeArchiveError(
                    f"archive {archive.name}: member {member.name!r} is a device or FIFO; "
                    "checkpoint archives hold only files, directories and links"
                )


def _default_limit(archive: Path) -> int:
    return max(EXPANSION_RATIO * archive.stat().st_size, MIN_EXTRACTED_LIMIT)


def _member_path(name: str, archive: Path) -> PurePosixPath:
    """``name`` without ``.`` parts (``.`` itself for the archive's top directory)."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or name.startswith("\\")
        or (path.parts and ":" in path.parts[0])
    ):
        raise UnsafeArchiveError(
            f"archive {archive.name}: member {name!r} has an empty, absolute or drive path; "
            "refusing to extract it (members must be relative)"
        )
    if ".." in path.parts:
        raise UnsafeArchiveError(
            f"archive {archive.name}: member {name!r} contains '..'; refusing to extract it "
            "(it could write outside the target directory)"
        )
    return PurePosixPath(*path.parts) if path.parts else _HERE


def _check_link_target(member: tarfile.TarInfo, archive: Path) -> None:
    link = member.linkname
    parts = PurePosixPath(link).parts
    if not link or PurePosixPath(link).is_absolute() or ".." in parts:
        raise UnsafeArchiveError(
            f"archive {archive.name}: symlink {member.name!r} points to {link!r}, which could "
            "lead outside the target directory; only relative links without '..' are allowed"
        )


def _hard_link(member: tarfile.TarInfo, path: Path, destination: Path, archive: Path) -> None:
    source = destination.joinpath(*_member_path(member.linkname, archive).parts)
    if not source.is_file() or source.is_symlink():
        raise UnsafeArchiveError(
            f"archive {archive.name}: hard link {member.name!r} points to "
            f"{member.linkname!r}, which is not a regular file extracted earlier"
        )
    if path == source:
        return  # a link to itself: the file is already there
    _replace(path)
    os.link(source, path)


def _replace(path: Path) -> None:
    """Make room for a member at ``path``: a later member replaces an earlier file or link
    (never writing through it: a link's target, or a hard link's twin, stays as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isfile() members always have data
        raise UnsafeArchiveError(f"member {member.name!r} has no data")
    _replace(path)
    with source, path.open("wb") as out:
        shutil.copyfileobj(source, out, _COPY_BUFFER)

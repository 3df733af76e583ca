"""Downloading a checkpoint archive: streamed to disk, unpacked safely, installed atomically.

Three promises, each because a half-done download is worse than none:

* **constant memory**: the archive is streamed in chunks to a file, never held whole;
* **atomic**: everything happens in a hidden ``.<target>.*.partial`` directory next to the
  target, which is renamed into place only once the archive is fully unpacked; any failure
  (or cancellation) removes the staging directory and leaves the target untouched;
* **safe unpacking**: archives come from a URL, so every member is checked before anything
  is written: absolute paths, ``..`` components, links that could leave the target,
  devices and FIFOs are refused with :class:`UnsafeArchiveError`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Final

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
    "Progress",
    "UnsafeArchiveError",
    "check_target",
    "download_archive",
    "extract_safely",
]

Progress = Callable[[int, int | None], object]
"""``progress(bytes_done, bytes_total)``; ``bytes_total`` is ``None`` when unknown."""

DOWNLOAD_EVENT: Final = "tinkex.checkpoint.download"
"""Span prefix around a download; ``stop`` carries ``bytes`` (archive bytes received)."""

_ERROR_BODY_LIMIT: Final = 64 * 1024
_COPY_BUFFER: Final = 1024 * 1024


class UnsafeArchiveError(TinkexError, ValueError):
    """A checkpoint archive holds a member that could write outside the target directory."""


async def download_archive(
    transport: Transport,
    url: str,
    target: Path,
    *,
    force: bool,
    progress: Progress | None,
) -> None:
    """Stream the tar at ``url`` and unpack it as directory ``target``.

    Runs on the I/O loop: the download is streamed there (chunks written as they arrive,
    ``progress`` called after each, so it must be quick), the unpacking and the final rename
    run in a worker thread. ``url`` is signed, so no API key is sent with it.

    Raises:
        FileExistsError: ``target`` exists and is not empty, and ``force`` is false.
        UnsafeArchiveError: the archive tries to write outside ``target``.
        APIStatusError: the archive URL answered 4xx/5xx (e.g. it expired).
        APIConnectionError: the download broke off.
    """
    shown = redact_url(url)
    with telemetry.span(DOWNLOAD_EVENT, {"url": shown, "target": str(target)}) as span:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
        handed_over = False
        abandoned = threading.Event()
        try:
            archive = staging / "archive.tar"
            span.measurements["bytes"] = await _fetch(transport, url, archive, progress)
            # From here on the worker thread owns the staging directory (and removes it),
            # so a cancelled caller cannot delete it under the thread's feet; it is told to
            # stop instead, and installs nothing unless it already had.
            handed_over = True
            try:
                await asyncio.to_thread(
                    _unpack_and_install, archive, staging, target, force, abandoned
                )
            except asyncio.CancelledError:
                abandoned.set()
                raise
        finally:
            if not handed_over:
                shutil.rmtree(staging, ignore_errors=True)


async def _fetch(transport: Transport, url: str, archive: Path, progress: Progress | None) -> int:
    config = transport.config
    client = transport.pools.client_for(config)
    info = RequestInfo("GET", redact_url(url))
    timeout = httpx.Timeout(
        config.timeout, connect=min(transport.pools.connect_timeout, config.timeout)
    )
    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code >= 400:
                raise await _failed(response, info)
            total = _declared_length(response)
            received = 0
            with archive.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
    except httpx.TimeoutException as exc:
        raise APITimeoutError(
            f"downloading the checkpoint archive ({info}) timed out", info
        ) from exc
    except httpx.HTTPError as exc:
        raise APIConnectionError(
            f"downloading the checkpoint archive ({info}) failed: {type(exc).__name__}: {exc}",
            info,
        ) from exc
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
    archive: Path, staging: Path, target: Path, force: bool, abandoned: threading.Event
) -> None:
    """Unpack, then install unless the caller gave up meanwhile (the rename is the commit:
    a cancel that comes after it is too late, as for any finished call)."""
    try:
        unpacked = staging / "files"
        extract_safely(archive, unpacked)
        archive.unlink()
        if not abandoned.is_set():
            _install(unpacked, staging, target, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def extract_safely(archive: Path, destination: Path) -> None:
    """Unpack the tar ``archive`` into the new directory ``destination``, refusing escapes.

    Regular files and directories are written with default permissions (the archive's
    modes and owners are ignored). A hard link to an earlier file of the archive becomes a
    copy of it; a symbolic link is kept only if it points down into its own directory
    (relative, no ``..``), which can never lead outside ``destination``.

    Raises:
        UnsafeArchiveError: a member is absolute, has ``..`` components, is a link that
            could point outside, or is a device or FIFO. Nothing is cleaned up here: the
            caller removes ``destination`` (it is a staging directory).
        tarfile.TarError: the archive is corrupt.
    """
    destination.mkdir()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            relative = _member_path(member.name, archive)
            path = destination.joinpath(*relative.parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                _write_file(tar, member, path)
            elif member.issym():
                _check_link_target(member, relative, archive)
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, path)
            elif member.islnk():
                source = destination.joinpath(*_member_path(member.linkname, archive).parts)
                if not source.is_file() or source.is_symlink():
                    raise UnsafeArchiveError(
                        f"archive {archive.name}: hard link {member.name!r} points to "
                        f"{member.linkname!r}, which is not a regular file extracted earlier"
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, path)
            else:
                raise UnsafeArchiveError(
                    f"archive {archive.name}: member {member.name!r} is a device or FIFO; "
                    "checkpoint archives hold only files, directories and links"
                )


def _member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith("\\") or ":" in path.parts[0]:
        raise UnsafeArchiveError(
            f"archive {archive.name}: member {name!r} has an empty, absolute or drive path; "
            "refusing to extract it (members must be relative)"
        )
    if ".." in path.parts:
        raise UnsafeArchiveError(
            f"archive {archive.name}: member {name!r} contains '..'; refusing to extract it "
            "(it could write outside the target directory)"
        )
    parts = [part for part in path.parts if part != "."]
    if not parts:
        return PurePosixPath(".")
    return PurePosixPath(*parts)


def _check_link_target(member: tarfile.TarInfo, relative: PurePosixPath, archive: Path) -> None:
    link = member.linkname
    parts = PurePosixPath(link).parts
    if not link or PurePosixPath(link).is_absolute() or ".." in parts:
        raise UnsafeArchiveError(
            f"archive {archive.name}: symlink {member.name!r} points to {link!r}, which could "
            "lead outside the target directory; only relative links without '..' are allowed"
        )
    if relative == PurePosixPath("."):
        raise UnsafeArchiveError(
            f"archive {archive.name}: symlink member {member.name!r} has no name"
        )


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isfile() members always have data
        raise UnsafeArchiveError(f"member {member.name!r} has no data")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()  # a later member replaces a link; never write through it
    with source, path.open("wb") as out:
        shutil.copyfileobj(source, out, _COPY_BUFFER)

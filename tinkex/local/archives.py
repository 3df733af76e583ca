"""Checkpoint archives of the local server: signed download URLs and streamed tar bodies.

``GET .../checkpoints/{kind}/{name}/archive`` answers (as the 0.25 protocol does) with a
``302`` whose ``Location`` is a URL carrying a signed token instead of the API key, so it
can be handed to a downloader that holds no credential. The token binds the tenant, the
checkpoint and an expiry time with an HMAC under a random per-process secret: it cannot be
guessed or altered, and every URL dies when the server restarts.

The archive itself is an uncompressed tar streamed file by file, with an exact
``Content-Length`` computed up front, so neither side holds a whole checkpoint in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .errors import ServerError

__all__ = ["ARCHIVE_URL_SECONDS", "ArchiveSigner", "ArchiveTicket", "TarStream"]

ARCHIVE_URL_SECONDS: Final = 15 * 60
"""How long an archive URL stays valid."""

_BLOCK: Final = tarfile.BLOCKSIZE
_READ_CHUNK: Final = 1024 * 1024


class ArchiveUrlInvalid(ServerError):
    status = 403


@dataclass(frozen=True)
class ArchiveTicket:
    """What a valid token grants: one checkpoint of one tenant, until ``expires``."""

    owner: str
    run_id: str
    checkpoint_id: str
    expires: int
    """Unix time in seconds."""


class ArchiveSigner:
    """Issues and checks archive tokens with a secret that lives as long as the process."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def issue(self, owner: str, run_id: str, checkpoint_id: str) -> tuple[str, ArchiveTicket]:
        ticket = ArchiveTicket(owner, run_id, checkpoint_id, int(time.time()) + ARCHIVE_URL_SECONDS)
        payload = json.dumps(
            [ticket.owner, ticket.run_id, ticket.checkpoint_id, ticket.expires],
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}", ticket

    def check(self, token: str) -> ArchiveTicket:
        """The ticket of a genuine, unexpired token; otherwise a 403 saying what to do."""
        encoded, _, signature = token.partition(".")
        try:
            payload, mac = _unb64(encoded), _unb64(signature)
        except ValueError:
            payload, mac = b"", b""
        if not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise ArchiveUrlInvalid(
                "this archive URL is not valid (altered, or issued before the server "
                "restarted); ask for a new one with get_checkpoint_archive_url"
            )
        owner, run_id, checkpoint_id, expires = json.loads(payload)  # signed by us: well-formed
        if expires < time.time():
            raise ArchiveUrlInvalid(
                "this archive URL has expired; ask for a new one with get_checkpoint_archive_url"
            )
        return ArchiveTicket(owner, run_id, checkpoint_id, expires)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


class TarStream:
    """A directory's regular files as tar bytes, produced lazily in bounded chunks."""

    def __init__(self, directory: Path) -> None:
        self._entries: list[tuple[bytes, Path, int]] = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = int(path.stat().st_mtime)
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            self._entries.append((header, path, info.size))

    @property
    def length(self) -> int:
        """The exact number of bytes :meth:`chunks` yields."""
        files = sum(len(header) + _padded(size) for header, _, size in self._entries)
        return files + 2 * _BLOCK

    def chunks(self) -> Iterator[bytes]:
        for header, path, size in self._entries:
            yield header
            with path.open("rb") as source:
                remaining = size
                while remaining > 0:
                    chunk = source.read(min(_READ_CHUNK, remaining))
                    if not chunk:
                        raise OSError(f"{path.name} shrank while being archived")
                    remaining -= len(chunk)
                    yield chunk
            yield b"\0" * (_padded(size) - size)
        yield b"\0" * (2 * _BLOCK)  # the end-of-archive marker


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

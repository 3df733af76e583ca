"""Request/response body compression (PROTOCOL §1.6).

The SDK zstd-compresses forward_backward bodies (``Content-Encoding: zstd``) when the server
sets ``proto_compress_fwdbwd``. A server must not trust a compressed body's size: every
decompressor here stops at ``max_size`` bytes of output (512 MiB unless told otherwise) and
raises ``ValueError`` naming the limit, so a small "zip bomb" cannot exhaust memory.
"""

from __future__ import annotations

import io
import zlib
from typing import Final

import zstandard

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "compress_zstd",
    "decode_content_encoding",
    "decompress_gzip",
    "decompress_zstd",
]

DEFAULT_MAX_DECOMPRESSED_SIZE: Final = 512 * 1024 * 1024
"""512 MiB: the largest decompressed body accepted by default."""

_READ_SIZE: Final = 1 << 20
_ZSTD_MAGIC: Final = 0xFD2FB528
_SKIPPABLE_MAGIC_MASK: Final = 0xFFFFFFF0
_SKIPPABLE_MAGIC: Final = 0x184D2A50
_DICT_ID_SIZES: Final = (0, 1, 2, 4)
_CONTENT_SIZE_SIZES: Final = (0, 2, 4, 8)


def _too_large(max_size: int) -> ValueError:
    return ValueError(
        f"decompressed body exceeds the limit of {max_size} bytes ({max_size / 2**20:g} MiB)"
    )


def _check_zstd_frames(body: bytes) -> None:
    """Walk the frame and block headers (RFC 8878) so that truncated or trailing bytes fail.

    The streaming decompressor stops quietly at the end of its input, so a cut-off body would
    otherwise decode as a shorter one.
    """
    view = memoryview(body)
    pos = 0
    end = len(view)

    def need(count: int, what: str) -> None:
        if pos + count > end:
            raise ValueError(f"invalid zstd body: truncated {what} at byte {pos}")

    if not end:
        raise ValueError("invalid zstd body: empty")
    while pos < end:
        need(4, "frame magic")
        magic = int.from_bytes(view[pos : pos + 4], "little")
        pos += 4
        if magic & _SKIPPABLE_MAGIC_MASK == _SKIPPABLE_MAGIC:
            need(4, "skippable frame size")
            size = int.from_bytes(view[pos : pos + 4], "little")
            pos += 4
            need(size, "skippable frame")
            pos += size
            continue
        if magic != _ZSTD_MAGIC:
            raise ValueError(f"invalid zstd body: no zstd frame at byte {pos - 4}")
        need(1, "frame header")
        descriptor = view[pos]
        pos += 1
        single_segment = bool(descriptor & 0x20)
        content_size_flag = descriptor >> 6
        header = (
            (0 if single_segment else 1)
            + _DICT_ID_SIZES[descriptor & 0x03]
            + (
                1
                if single_segment and content_size_flag == 0
                else _CONTENT_SIZE_SIZES[content_size_flag]
            )
        )
        need(header, "frame header")
        pos += header
        while True:
            need(3, "block header")
            block = int.from_bytes(view[pos : pos + 3], "little")
            pos += 3
            block_type = (block >> 1) & 0x03
            if block_type == 3:
                raise ValueError(f"invalid zstd body: reserved block type at byte {pos - 3}")
            content = 1 if block_type == 1 else block >> 3
            need(content, "block")
            pos += content
            if block & 0x01:
                break
        if descriptor & 0x04:
            need(4, "content checksum")
            pos += 4


def compress_zstd(body: bytes, *, level: int = 3) -> bytes:
    """One zstd frame holding ``body`` (with its content size in the frame header)."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(body)


def decompress_zstd(body: bytes, *, max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE) -> bytes:
    """The bytes of one or more concatenated zstd frames, at most ``max_size`` of them.

    Raises ``ValueError`` for corrupt input or when the output would exceed ``max_size``
    (checked against the declared frame size first, then while streaming).
    """
    _check_zstd_frames(body)
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError:
        declared = -1  # a leading skippable frame: rely on the streaming check
    if declared > max_size:
        raise _too_large(max_size)
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    parts: list[bytes] = []
    total = 0
    try:
        with reader:
            while True:
                part = reader.read(min(_READ_SIZE, max_size - total + 1))
                if not part:
                    break
                total += len(part)
                if total > max_size:
                    raise _too_large(max_size)
                parts.append(part)
    except zstandard.ZstdError as exc:
        raise ValueError(f"invalid zstd body: {exc}") from None
    return b"".join(parts)


def decompress_gzip(body: bytes, *, max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE) -> bytes:
    """The bytes of a gzip (or zlib) body, at most ``max_size`` of them."""
    decompressor = zlib.decompressobj(wbits=47)  # 32 + 15: accept gzip and zlib headers
    try:
        data = decompressor.decompress(body, max_size + 1)
        if len(data) > max_size or decompressor.unconsumed_tail:
            raise _too_large(max_size)
        data += decompressor.flush()
    except zlib.error as exc:
        raise ValueError(f"invalid gzip body: {exc}") from None
    if len(data) > max_size:
        raise _too_large(max_size)
    if not decompressor.eof:
        raise ValueError("invalid gzip body: truncated stream")
    return data


def decode_content_encoding(
    body: bytes,
    content_encoding: str | None,
    *,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> bytes:
    """Undo a ``Content-Encoding`` header (``zstd``, ``gzip``, ``identity``, or a list of them).

    Codings are undone last-applied first. An unknown coding raises ``ValueError`` (a server
    answers 415). An uncompressed body larger than ``max_size`` is rejected too.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = body
    for coding in reversed(codings):
        if coding == "zstd":
            data = decompress_zstd(data, max_size=max_size)
        elif coding in ("gzip", "x-gzip"):
            data = decompress_gzip(data, max_size=max_size)
        elif coding != "identity":
            raise ValueError(
                f"unsupported Content-Encoding {coding!r}; expected zstd, gzip or identity"
            )
    if len(data) > max_size:
        raise _too_large(max_size)
    return data

"""Small real images built in memory (no imaging library), for the vision tests."""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and the CRC of type + body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int = 2, height: int = 2) -> bytes:
    """A complete, decodable RGB PNG of ``width`` x ``height`` red pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def jpeg(fill: int = 0) -> bytes:
    """The start of a JFIF JPEG: SOI and a complete APP0 segment, then EOI.

    ``fill`` 0xFF fill bytes go before the APP0 marker, as encoders may put them (ITU T.81,
    B.1.1.2). Enough for a header check; not a picture anyone could decode.
    """
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    segment = b"\xff" * fill + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0
    return b"\xff\xd8" + segment + b"\xff\xd9"

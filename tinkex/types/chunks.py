"""Chunks of a model input: text tokens, images and image asset pointers.

The wire models accept whatever the other side sends (a server must be able to *read* a bad
image before it can say what is wrong with it). The builders users call,
:meth:`ImageChunk.from_bytes` and :meth:`ImageChunk.from_path`, check the bytes first, so a
wrong file fails on the caller's machine with a message naming it rather than after an
upload. The check is cheap on purpose: the magic bytes plus the first header (a PNG's
``IHDR`` with its CRC, a JPEG's first marker segment); no pixel is decoded and no imaging
library is needed. :func:`detect_image_format` is the same check for servers.
"""

from __future__ import annotations

import base64
import binascii
import operator
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import Field, field_serializer, field_validator

from tinkex.errors import TinkexError

from ._base import WireModel

__all__ = [
    "EncodedTextChunk",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "ImageFormat",
    "InvalidImageError",
    "ModelInputChunk",
    "detect_image_format",
]

ImageFormat = Literal["png", "jpeg"]

INVALID_IMAGE: Final = "asset is not a valid image"
"""What every :class:`InvalidImageError` message says (the server answers with it too)."""

_FORMAT_NAMES: Final[dict[str, ImageFormat]] = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg"}
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_HEADER_END: Final = 33  # signature 8 + length 4 + "IHDR" 4 + fields 13 + CRC 4
_PNG_BIT_DEPTHS: Final[dict[int, frozenset[int]]] = {
    0: frozenset({1, 2, 4, 8, 16}),  # greyscale
    2: frozenset({8, 16}),  # RGB
    3: frozenset({1, 2, 4, 8}),  # palette
    4: frozenset({8, 16}),  # greyscale + alpha
    6: frozenset({8, 16}),  # RGBA
}
_JPEG_SOI: Final = b"\xff\xd8"


class InvalidImageError(TinkexError, ValueError):
    """Bytes that are not a PNG or JPEG image (or not the format they claim to be).

    The message contains :data:`INVALID_IMAGE`, after the name of the source when there is
    one (``"image file 'cat.webp': asset is not a valid image: ..."``).
    """


class EncodedTextChunk(WireModel):
    """Already-tokenized text."""

    type: Literal["encoded_text"] = "encoded_text"
    tokens: list[int]

    @property
    def length(self) -> int:
        return len(self.tokens)


class _ByteCount:
    """Stands for image bytes in reprs: a tracebacks or log line should not hold a JPEG."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"<{self.size} bytes>"


class ImageChunk(WireModel):
    """Raw PNG or JPEG bytes; base64 in JSON, raw bytes in protobuf.

    Build one with :meth:`from_bytes` or :meth:`from_path`, which check the bytes and detect
    the format. ``expected_tokens`` is advisory: the server computes the real count (and may
    fail fast when it differs), but :attr:`ModelInput.length <tinkex.types.ModelInput.length>`
    needs it, since only the server knows how many tokens an image takes.
    """

    type: Literal["image"] = "image"
    data: bytes
    format: ImageFormat
    expected_tokens: int | None = None

    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview,
        format: str | None = None,
        expected_tokens: int | None = None,
    ) -> ImageChunk:
        """An image chunk of ``data``, after checking it is a PNG or JPEG image.

        ``format`` (``"png"``, ``"jpeg"`` or ``"jpg"``) is detected when left out; when given
        it must match the bytes. Raises :class:`InvalidImageError` for bytes that are not a
        PNG/JPEG image or not the requested format, ``TypeError``/``ValueError`` for bad
        arguments.
        """
        if isinstance(data, str):
            raise TypeError(
                "ImageChunk.from_bytes: data is a str; pass the raw image bytes (decode base64 "
                "text first), or use ImageChunk.from_path(path) for a file"
            )
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"ImageChunk.from_bytes: data must be bytes, not {type(data).__name__}")
        return cls._checked(bytes(data), format, expected_tokens, "ImageChunk.from_bytes")

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        format: str | None = None,
        expected_tokens: int | None = None,
    ) -> ImageChunk:
        """An image chunk of the file at ``path``, checked like :meth:`from_bytes`.

        Errors name the file; a missing or unreadable file raises the ``OSError`` of reading it.
        """
        file = Path(path)
        return cls._checked(file.read_bytes(), format, expected_tokens, f"image file {str(file)!r}")

    @classmethod
    def _checked(
        cls, data: bytes, format: str | None, expected_tokens: int | None, source: str
    ) -> ImageChunk:
        requested = _format_name(format, source)
        tokens = _expected_tokens(expected_tokens, source)
        try:
            detected = detect_image_format(data)
        except InvalidImageError as exc:
            raise InvalidImageError(f"{source}: {exc}") from None
        if requested is not None and requested != detected:
            raise InvalidImageError(
                f"{source}: {INVALID_IMAGE} of the requested format: format={format!r} was "
                f"requested, but the data is a {detected.upper()} image (by its signature); "
                f"pass format={detected!r} or leave format out to have it detected"
            )
        return cls(data=data, format=detected, expected_tokens=tokens)

    @field_validator("data", mode="before")
    @classmethod
    def _decode_base64_text(cls, value: object) -> object:
        # Python callers hand over raw bytes; JSON carries base64 text.
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"image data is not valid base64: {exc}") from None
        return value

    @field_serializer("data", when_used="json")
    def _data_as_base64(self, data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield (name, _ByteCount(len(value))) if name == "data" else (name, value)

    @property
    def length(self) -> int:
        if self.expected_tokens is None:
            raise ValueError(
                "ImageChunk.length needs expected_tokens; the token count of an image is only "
                "known to the server. Pass expected_tokens=... when building the chunk"
            )
        return self.expected_tokens


class ImageAssetPointerChunk(WireModel):
    """An image referenced by location; only usable in JSON sampling requests."""

    type: Literal["image_asset_pointer"] = "image_asset_pointer"
    format: ImageFormat
    location: str
    expected_tokens: int | None = None

    @property
    def length(self) -> int:
        if self.expected_tokens is None:
            raise ValueError(
                "ImageAssetPointerChunk.length needs expected_tokens; the token count of an "
                "image is only known to the server"
            )
        return self.expected_tokens


ModelInputChunk = Annotated[
    EncodedTextChunk | ImageChunk | ImageAssetPointerChunk, Field(discriminator="type")
]


def detect_image_format(data: bytes) -> ImageFormat:
    """``"png"`` or ``"jpeg"`` by the magic bytes and a plausible first header.

    Raises :class:`InvalidImageError` (message starting with ``asset is not a valid image``)
    for anything else, including a truncated or corrupt PNG header.
    """
    if not data:
        raise InvalidImageError(f"{INVALID_IMAGE}: the data is empty")
    if data.startswith(_PNG_SIGNATURE):
        _check_png_header(data)
        return "png"
    if data.startswith(_JPEG_SOI):
        _check_jpeg_header(data)
        return "jpeg"
    raise InvalidImageError(
        f"{INVALID_IMAGE}: it starts with {data[:8].hex(' ')}, which is neither the PNG nor "
        "the JPEG signature; images must be PNG or JPEG"
    )


def _check_png_header(data: bytes) -> None:
    if len(data) < _PNG_HEADER_END:
        raise InvalidImageError(
            f"{INVALID_IMAGE}: PNG data ends after {len(data)} bytes, before its IHDR header"
        )
    length, chunk_type = struct.unpack(">I4s", data[8:16])
    if length != 13 or chunk_type != b"IHDR":
        raise InvalidImageError(
            f"{INVALID_IMAGE}: the PNG signature is not followed by an IHDR header"
        )
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) != crc:
        raise InvalidImageError(f"{INVALID_IMAGE}: the PNG's IHDR header fails its CRC check")
    if width == 0 or height == 0:
        raise InvalidImageError(f"{INVALID_IMAGE}: the PNG header says {width}x{height} pixels")
    if depth not in _PNG_BIT_DEPTHS.get(color, frozenset()) or (
        compression,
        filtering,
        interlace,
    ) not in ((0, 0, 0), (0, 0, 1)):
        raise InvalidImageError(
            f"{INVALID_IMAGE}: the PNG header has an impossible color type {color} / bit depth "
            f"{depth} / compression {compression} / filter {filtering} / interlace {interlace}"
        )


def _check_jpeg_header(data: bytes) -> None:
    # SOI must be followed by a segment marker (APPn, DQT, SOF, DHT, COM, ...) with a length.
    # Any number of 0xFF fill bytes may come before a marker (ITU T.81, B.1.1.2).
    at = 2
    while at + 1 < len(data) and data[at] == 0xFF and data[at + 1] == 0xFF:
        at += 1
    marker = data[at + 1] if at + 1 < len(data) and data[at] == 0xFF else None
    if marker is None or not 0xC0 <= marker <= 0xFE or 0xD0 <= marker <= 0xD9:
        raise InvalidImageError(
            f"{INVALID_IMAGE}: the JPEG start-of-image marker is not followed by a segment marker"
        )
    if len(data) < at + 4 or int.from_bytes(data[at + 2 : at + 4], "big") < 2:
        raise InvalidImageError(
            f"{INVALID_IMAGE}: the first JPEG segment (marker ff {marker:02x}) is truncated"
        )


def _format_name(format: str | None, source: str) -> ImageFormat | None:
    if format is None:
        return None
    name = _FORMAT_NAMES.get(format.lower()) if isinstance(format, str) else None
    if name is None:
        raise ValueError(
            f"{source}: format={format!r} is not supported; use 'png' or 'jpeg' (or leave it "
            "out to detect it from the bytes)"
        )
    return name


def _expected_tokens(value: int | None, source: str) -> int | None:
    if value is None:
        return None
    try:
        tokens = operator.index(value)
    except TypeError:
        tokens = None
    if isinstance(value, bool) or tokens is None or tokens < 1:
        raise ValueError(
            f"{source}: expected_tokens={value!r} must be a positive int (the number of tokens "
            "the image takes, if you know it) or None"
        )
    return tokens

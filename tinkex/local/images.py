"""Image chunks that reach the local backend, whose models all read text only.

A vision model would turn the image into tokens; these models cannot, so an image prompt is
a user error. The bytes are checked first, with the same check the SDK's
:meth:`~tinkex.types.ImageChunk.from_bytes` makes, so a client that sends raw bytes (the
official SDK does no check of its own) learns that its asset is not an image at all before
it learns that the model would not have read it anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from tinkex.types import EncodedTextChunk, ImageChunk
from tinkex.types.chunks import (
    INVALID_IMAGE,
    InvalidImageError,
    ModelInputChunk,
    detect_image_format,
)

from .errors import BadRequest

__all__ = ["reject_non_text"]


def reject_non_text(chunks: Sequence[ModelInputChunk], *, model: str, where: str) -> None:
    """Raise :class:`BadRequest` if ``chunks`` hold anything but text.

    An image chunk whose bytes are not a PNG/JPEG of the declared format is reported as such
    (``asset is not a valid image``) in preference to the model not reading images.
    """
    non_text = [
        (index, chunk)
        for index, chunk in enumerate(chunks)
        if not isinstance(chunk, EncodedTextChunk)
    ]
    for index, chunk in non_text:
        if isinstance(chunk, ImageChunk):
            _check_image(chunk, f"{where} chunk {index}")
    if non_text:
        index, chunk = non_text[0]
        raise BadRequest(
            f"model {model} does not accept image input: the local backend's models are "
            f"text-only, and {where} chunk {index} is an {chunk.type!r} chunk. Send "
            "encoded_text chunks, or use a vision model on a service that serves one"
        )


def _check_image(chunk: ImageChunk, what: str) -> None:
    try:
        detected = detect_image_format(chunk.data)
    except InvalidImageError as exc:
        raise BadRequest(f"{what}: {exc}") from None
    if detected != chunk.format:
        raise BadRequest(
            f"{what}: {INVALID_IMAGE} of its declared format {chunk.format!r}: the data is a "
            f"{detected.upper()} image"
        )

"""Chunks of a model input: text tokens, images and image asset pointers."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import Field, field_serializer, field_validator

from ._base import WireModel

ImageFormat = Literal["png", "jpeg"]


class EncodedTextChunk(WireModel):
    """Already-tokenized text."""

    type: Literal["encoded_text"] = "encoded_text"
    tokens: list[int]

    @property
    def length(self) -> int:
        return len(self.tokens)


class ImageChunk(WireModel):
    """Raw PNG or JPEG bytes; base64 in JSON, raw bytes in protobuf.

    ``expected_tokens`` is advisory: the server computes the real count.
    """

    type: Literal["image"] = "image"
    data: bytes
    format: ImageFormat
    expected_tokens: int | None = None

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

    @property
    def length(self) -> int:
        if self.expected_tokens is None:
            raise ValueError(
                "ImageChunk.length needs expected_tokens; the token count of an image is only "
                "known to the server"
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
            raise ValueError("ImageAssetPointerChunk.length needs expected_tokens")
        return self.expected_tokens


ModelInputChunk = Annotated[
    EncodedTextChunk | ImageChunk | ImageAssetPointerChunk, Field(discriminator="type")
]

"""Model inputs on the wire: ``ModelInput`` chunks ⇄ repeated ``Chunk`` protos (PROTOCOL §3.1).

* ``encoded_text``: the tokens as packed little-endian int32.
* ``image``: the raw image bytes, ``format`` (``png`` / ``jpeg``) and the optional advisory
  ``expected_tokens``.
* ``image_asset_pointer`` chunks have no protobuf form; they only exist in JSON sampling
  requests.
* ``dmel`` (audio) chunks exist in the schema but not in tinkex's types; reading one fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tinkex.types import (
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
)

from . import tinker_public_pb2 as pb

__all__ = [
    "ProtoChunk",
    "decode_chunk",
    "decode_model_input",
    "encode_chunk",
    "encode_model_input",
    "text_tokens_from_bytes",
    "text_tokens_to_bytes",
]

ProtoChunk = EncodedTextChunk | ImageChunk
"""The chunk kinds that have a protobuf form."""

_TOKEN_LAYOUT: Final = np.dtype("<i4")
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


def text_tokens_to_bytes(tokens: npt.ArrayLike) -> bytes:
    """Token ids as packed little-endian int32; ids outside the int32 range are an error."""
    wide = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if wide.size and (wide.min() < _INT32_MIN or wide.max() > _INT32_MAX):
        raise ValueError("token ids must fit in int32 on the protobuf wire")
    return wide.astype(_TOKEN_LAYOUT).tobytes()


def text_tokens_from_bytes(raw: bytes) -> npt.NDArray[np.int64]:
    """Packed little-endian int32 token ids as an int64 array."""
    if len(raw) % _TOKEN_LAYOUT.itemsize:
        raise ValueError(
            f"encoded_text.tokens: {len(raw)} bytes is not a whole number of int32 ids"
        )
    return np.frombuffer(raw, dtype=_TOKEN_LAYOUT).astype(np.int64)


def _fill_chunk(msg: pb.Chunk, chunk: Any) -> None:
    if isinstance(chunk, EncodedTextChunk):
        msg.encoded_text.tokens = text_tokens_to_bytes(chunk.tokens)
    elif isinstance(chunk, ImageChunk):
        msg.image.data = chunk.data
        msg.image.format = chunk.format
        if chunk.expected_tokens is not None:
            msg.image.expected_tokens = chunk.expected_tokens
    elif isinstance(chunk, ImageAssetPointerChunk):
        raise ValueError(
            "image_asset_pointer chunks cannot be encoded as protobuf: they are only valid in "
            "JSON sampling requests. Load the image and pass an ImageChunk instead."
        )
    else:
        raise TypeError(f"not a model input chunk: {type(chunk).__name__}")


def encode_chunk(chunk: Any) -> pb.Chunk:
    """The ``Chunk`` proto of one model input chunk (text or image)."""
    msg = pb.Chunk()
    _fill_chunk(msg, chunk)
    return msg


def encode_model_input(model_input: ModelInput | Sequence[Any]) -> list[pb.Chunk]:
    """The ``Chunk`` protos of a model input, in order."""
    chunks = model_input.chunks if isinstance(model_input, ModelInput) else model_input
    return [encode_chunk(chunk) for chunk in chunks]


def _decode_chunk(msg: pb.Chunk, what: str) -> tuple[ProtoChunk, npt.NDArray[np.int64] | None]:
    kind = msg.WhichOneof("chunk")
    if kind == "encoded_text":
        tokens = text_tokens_from_bytes(msg.encoded_text.tokens)
        # The ids are known-good Python ints: skip pydantic's per-element validation.
        return EncodedTextChunk.model_construct(tokens=tokens.tolist()), tokens
    if kind == "image":
        image = msg.image
        return (
            ImageChunk(
                data=image.data,
                format=image.format,  # type: ignore[arg-type]  # validated by pydantic
                expected_tokens=image.expected_tokens
                if image.HasField("expected_tokens")
                else None,
            ),
            None,
        )
    if kind == "dmel":
        raise ValueError(f"{what}: dmel (audio) chunks are not supported by tinkex")
    raise ValueError(f"{what}: empty Chunk (no encoded_text, image or dmel)")


def decode_chunk(msg: pb.Chunk) -> ProtoChunk:
    """The pydantic chunk of a ``Chunk`` proto."""
    return _decode_chunk(msg, "Chunk")[0]


def decode_model_input(chunks: Iterable[pb.Chunk]) -> ModelInput:
    """A ``ModelInput`` from ``Chunk`` protos."""
    return ModelInput.model_construct(chunks=[decode_chunk(msg) for msg in chunks])


def decode_chunks_with_tokens(
    chunks: Iterable[pb.Chunk], what: str
) -> tuple[list[ProtoChunk], npt.NDArray[np.int64] | None]:
    """The chunks and, when every chunk is text, all their tokens as one int64 array."""
    decoded: list[ProtoChunk] = []
    token_parts: list[npt.NDArray[np.int64]] = []
    all_text = True
    for index, msg in enumerate(chunks):
        chunk, tokens = _decode_chunk(msg, f"{what}.model_input[{index}]")
        decoded.append(chunk)
        if tokens is None:
            all_text = False
        elif all_text:
            token_parts.append(tokens)
    if not all_text:
        return decoded, None
    if not token_parts:
        return decoded, np.zeros(0, dtype=np.int64)
    return decoded, token_parts[0] if len(token_parts) == 1 else np.concatenate(token_parts)

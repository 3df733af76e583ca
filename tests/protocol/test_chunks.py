"""Model input chunks on the wire (PROTOCOL §3.1, §2.5)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings

from tinkex.protocol import (
    decode_chunk,
    decode_model_input,
    encode_chunk,
    encode_model_input,
    text_tokens_from_bytes,
    text_tokens_to_bytes,
)
from tinkex.protocol import tinker_public_pb2 as pb
from tinkex.types import EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ModelInput

from .strategies import model_inputs


def test_text_tokens_are_int32_little_endian() -> None:
    msg = encode_chunk(EncodedTextChunk(tokens=[1, 256, 2**31 - 1]))
    assert msg.WhichOneof("chunk") == "encoded_text"
    assert msg.encoded_text.tokens == struct.pack("<3i", 1, 256, 2**31 - 1)
    assert text_tokens_from_bytes(msg.encoded_text.tokens).dtype == np.int64


def test_tokens_outside_int32_are_rejected() -> None:
    with pytest.raises(ValueError, match="int32"):
        text_tokens_to_bytes([2**31])


def test_image_carries_raw_bytes_format_and_expected_tokens() -> None:
    msg = encode_chunk(ImageChunk(data=b"\x89PNG\r\n", format="png", expected_tokens=17))
    assert msg.image.data == b"\x89PNG\r\n"
    assert msg.image.format == "png"
    assert msg.image.HasField("expected_tokens")
    assert msg.image.expected_tokens == 17
    without = encode_chunk(ImageChunk(data=b"x", format="jpeg"))
    assert not without.image.HasField("expected_tokens")
    assert decode_chunk(without) == ImageChunk(data=b"x", format="jpeg")


def test_image_asset_pointer_has_no_protobuf_form() -> None:
    pointer = ImageAssetPointerChunk(format="png", location="s3://bucket/cat.png")
    with pytest.raises(ValueError, match="only valid in JSON sampling requests"):
        encode_chunk(pointer)
    with pytest.raises(ValueError, match="image_asset_pointer"):
        encode_model_input(ModelInput(chunks=[EncodedTextChunk(tokens=[1]), pointer]))


def test_dmel_and_empty_chunks_are_rejected_on_read() -> None:
    with pytest.raises(ValueError, match="dmel"):
        decode_chunk(pb.Chunk(dmel=pb.DmelChunk(dmel=b"...")))
    with pytest.raises(ValueError, match="empty Chunk"):
        decode_chunk(pb.Chunk())


def test_unknown_image_format_is_rejected_on_read() -> None:
    with pytest.raises(ValueError, match="format"):
        decode_chunk(pb.Chunk(image=pb.ImageChunk(data=b"x", format="gif")))


def test_odd_token_bytes_are_rejected() -> None:
    with pytest.raises(ValueError, match="int32"):
        decode_chunk(pb.Chunk(encoded_text=pb.EncodedTextChunk(tokens=b"\x01\x00")))


@settings(max_examples=60, deadline=None)
@given(model_inputs)
def test_model_input_round_trip(model_input: ModelInput) -> None:
    msgs = encode_model_input(model_input)
    assert len(msgs) == len(model_input.chunks)
    assert decode_model_input(msgs) == model_input
    wire = [pb.Chunk.FromString(m.SerializeToString()) for m in msgs]
    assert decode_model_input(wire).model_dump() == model_input.model_dump()

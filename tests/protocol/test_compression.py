"""Compressed bodies and the decompressed-size guard (PROTOCOL §1.6)."""

from __future__ import annotations

import gzip

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex.protocol import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    compress_zstd,
    decode_content_encoding,
    decode_forward_backward_request,
    decompress_gzip,
    decompress_zstd,
    encode_forward_backward_request,
)
from tinkex.types import Datum, ModelInput, TensorData

MiB = 1 << 20


def zstd_without_size(payload_chunks: int, chunk: bytes) -> bytes:
    """A zstd frame whose header does not declare its size (as a streaming client writes it)."""
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=False).compressobj()
    return b"".join(
        [*(compressor.compress(chunk) for _ in range(payload_chunks)), compressor.flush()]
    )


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=4096))
def test_zstd_round_trip(body: bytes) -> None:
    assert decompress_zstd(compress_zstd(body)) == body
    assert decode_content_encoding(compress_zstd(body), "zstd") == body


def test_forward_backward_body_survives_zstd() -> None:
    body = encode_forward_backward_request(
        model_id="m",
        seq_id=1,
        data=[
            Datum(
                model_input=ModelInput.from_ints(range(1000)),
                loss_fn_inputs={"weights": TensorData(data=[1.0] * 1000, dtype="float32")},
            )
        ],
        loss_fn="cross_entropy",
    )
    compressed = zstandard.ZstdCompressor().compress(body)  # what the official SDK sends
    assert len(compressed) < len(body)
    decoded = decode_forward_backward_request(decode_content_encoding(compressed, "zstd"))
    assert decoded.data[0].tokens is not None
    assert decoded.data[0].tokens.tolist() == list(range(1000))


def test_concatenated_zstd_frames_are_one_body() -> None:
    assert decompress_zstd(compress_zstd(b"abc") + compress_zstd(b"def")) == b"abcdef"


def test_default_limit_is_512_mib_and_declared_sizes_are_checked_first() -> None:
    assert 512 * MiB == DEFAULT_MAX_DECOMPRESSED_SIZE
    size = DEFAULT_MAX_DECOMPRESSED_SIZE + 1
    compressor = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    zeros = bytes(16 * MiB)
    parts = [compressor.compress(zeros) for _ in range(size // len(zeros))]
    parts.append(compressor.compress(bytes(size % len(zeros))))
    bomb = b"".join([*parts, compressor.flush()])
    assert len(bomb) < 64 * 1024  # a 512 MiB body in a few KiB
    with pytest.raises(ValueError, match=r"limit of 536870912 bytes \(512 MiB\)"):
        decompress_zstd(bomb)


def test_undeclared_sizes_are_checked_while_streaming() -> None:
    bomb = zstd_without_size(8, bytes(MiB))
    assert zstandard.frame_content_size(bomb) == -1
    with pytest.raises(ValueError, match=r"limit of 2097152 bytes \(2 MiB\)"):
        decompress_zstd(bomb, max_size=2 * MiB)
    assert len(decompress_zstd(bomb, max_size=8 * MiB)) == 8 * MiB


def test_gzip_is_guarded_too() -> None:
    body = gzip.compress(bytes(4 * MiB))
    with pytest.raises(ValueError, match="limit of 1048576 bytes"):
        decompress_gzip(body, max_size=MiB)
    assert decompress_gzip(body, max_size=4 * MiB) == bytes(4 * MiB)
    assert decode_content_encoding(gzip.compress(b"hello"), "gzip") == b"hello"


@pytest.mark.parametrize("body", [b"not zstd at all", compress_zstd(b"x" * 100)[:-3]])
def test_corrupt_zstd_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="zstd"):
        decompress_zstd(body)


@pytest.mark.parametrize("body", [b"not gzip", gzip.compress(b"x" * 100)[:-6]])
def test_corrupt_gzip_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="gzip"):
        decompress_gzip(body)


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_identity_encodings(header: str | None) -> None:
    assert decode_content_encoding(b"raw", header) == b"raw"


def test_stacked_encodings_are_undone_last_first() -> None:
    body = gzip.compress(compress_zstd(b"payload"))
    assert decode_content_encoding(body, "zstd, gzip") == b"payload"


def test_unknown_encoding_and_oversized_plain_bodies() -> None:
    with pytest.raises(ValueError, match="unsupported Content-Encoding 'br'"):
        decode_content_encoding(b"x", "br")
    with pytest.raises(ValueError, match="limit of 2 bytes"):
        decode_content_encoding(b"abc", None, max_size=2)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=2000), st.booleans(), st.data())
def test_any_truncation_is_detected(body: bytes, checksum: bool, data: st.DataObject) -> None:
    frame = zstandard.ZstdCompressor(write_checksum=checksum).compress(body)
    cut = data.draw(st.integers(1, len(frame)))
    with pytest.raises(ValueError, match="invalid zstd body"):
        decompress_zstd(frame[:-cut])
    with pytest.raises(ValueError, match="invalid zstd body"):
        decompress_zstd(frame + b"\x00")


def test_skippable_frames_are_ignored() -> None:
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    assert decompress_zstd(skippable + compress_zstd(b"data")) == b"data"

"""Image chunks are checked where they are built, and ModelInput's builders keep their word."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.types.image_bytes import PNG_SIGNATURE, jpeg, png, png_chunk
from tinkex import (
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ImageChunk,
    InvalidImageError,
    ModelInput,
)
from tinkex.types import detect_image_format

# --- what counts as an image ---------------------------------------------------------------


def test_png_and_jpeg_are_detected_by_their_bytes() -> None:
    assert detect_image_format(png()) == "png"
    assert detect_image_format(jpeg()) == "jpeg"


@pytest.mark.parametrize("fill", [1, 7])
def test_fill_bytes_before_the_first_jpeg_marker_are_skipped(fill: int) -> None:
    data = jpeg(fill=fill)
    assert data[2 : 2 + fill + 2] == b"\xff" * (fill + 1) + b"\xe0"
    assert detect_image_format(data) == "jpeg"
    assert ImageChunk.from_bytes(data, format="jpeg").data == data


def _png_with_header(
    width: int = 1, height: int = 1, depth: int = 8, color: int = 2, crc_ok: bool = True
) -> bytes:
    good = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    ihdr = good if crc_ok else good[:-4] + bytes(4)
    return PNG_SIGNATURE + ihdr


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the data is empty"),
        (b"GIF89a\x01\x00\x01\x00", "47 49 46 38 39 61 01 00, which is neither the PNG nor"),
        (b"<html>not an image</html>", "neither the PNG nor the JPEG signature"),
        (PNG_SIGNATURE, "PNG data ends after 8 bytes, before its IHDR header"),
        (PNG_SIGNATURE + png_chunk(b"IDAT", bytes(13)), "not followed by an IHDR header"),
        (_png_with_header(crc_ok=False), "fails its CRC check"),
        (_png_with_header(width=0), "says 0x1 pixels"),
        (_png_with_header(depth=3), "impossible color type 2 / bit depth 3"),
        (b"\xff\xd8", "not followed by a segment marker"),
        (b"\xff\xd8\x00\x00\x00\x00", "not followed by a segment marker"),
        (b"\xff\xd8\xff\xd9", "not followed by a segment marker"),
        (b"\xff\xd8\xff\xe0\x00", "first JPEG segment (marker ff e0) is truncated"),
        (b"\xff\xd8\xff\xff\xff", "not followed by a segment marker"),
        (b"\xff\xd8\xff\xff\xd9", "not followed by a segment marker"),
        (b"\xff\xd8\xff\xff\xe0\x00", "first JPEG segment (marker ff e0) is truncated"),
    ],
    ids=[
        "empty",
        "gif",
        "html",
        "png-signature-only",
        "png-without-ihdr",
        "png-bad-crc",
        "png-zero-width",
        "png-bad-depth",
        "jpeg-soi-only",
        "jpeg-no-marker",
        "jpeg-soi-eoi",
        "jpeg-truncated-segment",
        "jpeg-only-fill-bytes",
        "jpeg-fill-then-eoi",
        "jpeg-fill-then-truncated-segment",
    ],
)
def test_anything_else_is_not_a_valid_image(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidImageError) as info:
        detect_image_format(data)
    message = str(info.value)
    assert message.startswith("asset is not a valid image: "), message
    assert reason in message, message
    with pytest.raises(InvalidImageError, match=r"ImageChunk\.from_bytes: asset is not a valid"):
        ImageChunk.from_bytes(data)


# --- building image chunks -------------------------------------------------------------------


def test_from_bytes_detects_the_format_and_keeps_the_bytes() -> None:
    chunk = ImageChunk.from_bytes(bytearray(png(3, 2)), expected_tokens=4)
    assert chunk == ImageChunk(data=png(3, 2), format="png", expected_tokens=4)
    assert ImageChunk.from_bytes(memoryview(jpeg())).format == "jpeg"


@pytest.mark.parametrize("format", ["png", "PNG"])
def test_an_explicit_format_that_matches_is_accepted(format: str) -> None:
    assert ImageChunk.from_bytes(png(), format=format).format == "png"


def test_jpg_is_another_name_for_jpeg() -> None:
    assert ImageChunk.from_bytes(jpeg(), format="jpg").format == "jpeg"


def test_an_explicit_format_that_does_not_match_names_both() -> None:
    with pytest.raises(InvalidImageError) as info:
        ImageChunk.from_bytes(png(), format="jpeg")
    message = str(info.value)
    assert message.startswith("ImageChunk.from_bytes: asset is not a valid image"), message
    assert "format='jpeg' was requested, but the data is a PNG image" in message, message
    assert "pass format='png'" in message


def test_an_unsupported_format_is_refused_before_looking_at_the_bytes() -> None:
    with pytest.raises(ValueError, match=r"format='gif' is not supported; use 'png' or 'jpeg'"):
        ImageChunk.from_bytes(png(), format="gif")


@pytest.mark.parametrize("expected_tokens", [0, -3, 2.5, True, "12"])
def test_expected_tokens_must_be_a_positive_int(expected_tokens: object) -> None:
    with pytest.raises(ValueError, match=r"expected_tokens=.* must be a positive int"):
        ImageChunk.from_bytes(png(), expected_tokens=expected_tokens)  # type: ignore[arg-type]


def test_text_is_not_image_data() -> None:
    with pytest.raises(TypeError, match="data is a str; pass the raw image bytes"):
        ImageChunk.from_bytes("iVBORw0KGgo=")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes, not list"):
        ImageChunk.from_bytes([1, 2, 3])  # type: ignore[arg-type]


def test_from_path_reads_the_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "red.png"
    good.write_bytes(png())
    assert ImageChunk.from_path(good, expected_tokens=9) == ImageChunk.from_bytes(
        png(), expected_tokens=9
    )
    assert ImageChunk.from_path(str(good)).format == "png"

    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(InvalidImageError) as info:
        ImageChunk.from_path(bad)
    assert str(info.value).startswith(f"image file {str(bad)!r}: asset is not a valid image")

    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        ImageChunk.from_path(tmp_path / "missing.png")


def test_the_wire_model_reads_what_it_is_sent() -> None:
    # A server must parse a bad image before it can say what is wrong with it.
    raw = ImageChunk(data=b"nope", format="png")
    assert raw.data == b"nope"
    assert ImageChunk.model_validate_json(raw.model_dump_json()) == raw
    assert raw.to_wire() == {"type": "image", "data": "bm9wZQ==", "format": "png"}


def test_a_repr_shows_the_size_of_the_image_not_its_bytes() -> None:
    data = png(40, 40)
    shown = repr(ImageChunk.from_bytes(data, expected_tokens=3))
    assert f"data=<{len(data)} bytes>" in shown
    assert "format='png'" in shown and "expected_tokens=3" in shown
    assert "\\x89PNG" not in shown
    assert repr(ModelInput(chunks=[ImageChunk.from_bytes(data)])).count("bytes>") == 1


# --- ModelInput builders ---------------------------------------------------------------------


def test_append_int_extends_text_and_starts_a_new_chunk_after_an_image() -> None:
    image = ImageChunk.from_bytes(png(), expected_tokens=5)
    built = (
        ModelInput.empty()
        .append_int(1)
        .append_int(2)
        .append(image)
        .append_int(3)
        .append_int(4)
        .append(EncodedTextChunk(tokens=[5]))
    )
    assert built.chunks == [
        EncodedTextChunk(tokens=[1, 2]),
        image,
        EncodedTextChunk(tokens=[3, 4]),
        EncodedTextChunk(tokens=[5]),
    ]
    assert built.length == 2 + 5 + 2 + 1


def test_builders_return_new_inputs() -> None:
    start = ModelInput.from_ints([1, 2])
    longer = start.append_int(3)
    assert start.to_ints() == [1, 2]
    assert longer.to_ints() == [1, 2, 3]
    assert ModelInput.empty().chunks == []
    assert ModelInput.empty().length == 0


def test_to_ints_refuses_images() -> None:
    model_input = ModelInput.from_ints([1]).append(ImageChunk.from_bytes(png()))
    with pytest.raises(ValueError, match="chunk 1 is 'image'; only encoded_text"):
        model_input.to_ints()


@pytest.mark.parametrize(
    "chunk",
    [
        ImageChunk.from_bytes(png()),
        ImageAssetPointerChunk(format="png", location="s3://bucket/cat.png"),
    ],
    ids=["image", "asset-pointer"],
)
def test_length_names_the_image_without_expected_tokens(
    chunk: ImageChunk | ImageAssetPointerChunk,
) -> None:
    model_input = ModelInput.from_ints([1, 2]).append(chunk)
    with pytest.raises(ValueError) as info:
        _ = model_input.length
    message = str(info.value)
    assert f"chunk 1 is an {chunk.type!r} chunk without expected_tokens" in message, message
    assert "expected_tokens=..." in message
    with pytest.raises(ValueError, match="needs expected_tokens"):
        _ = chunk.length


def test_asset_pointers_count_their_expected_tokens() -> None:
    pointer = ImageAssetPointerChunk(format="jpeg", location="cat.jpg", expected_tokens=7)
    assert ModelInput.from_ints([1]).append(pointer).length == 8


def test_append_refuses_what_is_not_a_chunk() -> None:
    with pytest.raises(TypeError, match=r"got int \(use append_int for a token id\)"):
        ModelInput.empty().append(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got bytes"):
        ModelInput.empty().append(png())  # type: ignore[arg-type]


@pytest.mark.parametrize("token", [1.5, "7", True, None])
def test_append_int_refuses_what_is_not_a_token_id(token: object) -> None:
    with pytest.raises(TypeError, match="token ids are ints"):
        ModelInput.from_ints([1]).append_int(token)  # type: ignore[arg-type]


def test_append_int_takes_numpy_integers() -> None:
    np = pytest.importorskip("numpy")
    assert ModelInput.empty().append_int(np.int64(9)).to_ints() == [9]

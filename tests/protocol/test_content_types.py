"""Media types and Accept negotiation (PROTOCOL §1.3, §1.6)."""

from __future__ import annotations

import pytest

from tinkex.protocol import (
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    ZSTD_ENCODING,
    is_protobuf,
    wants_protobuf,
)


def test_constants() -> None:
    assert PROTOBUF_CONTENT_TYPE == "application/x-protobuf"
    assert JSON_CONTENT_TYPE == "application/json"
    assert ZSTD_ENCODING == "zstd"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/x-protobuf", True),  # SDK >= 0.25 result polls
        ("application/x-protobuf, application/json", True),  # SDK 0.24
        ("Application/X-Protobuf", True),
        ("application/json", False),  # every other request
        ("application/json, application/x-protobuf;q=0.5", False),
        ("application/x-protobuf;q=0.9, application/json;q=0.8", True),
        ("application/x-protobuf;q=0", False),
        ("application/x-protobuf;q=oops", False),
        ("*/*", False),
        ("", False),
        (None, False),
    ],
)
def test_wants_protobuf(accept: str | None, expected: bool) -> None:
    assert wants_protobuf(accept) is expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/x-protobuf", True),
        ("application/x-protobuf; charset=binary", True),
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        (None, False),
    ],
)
def test_is_protobuf(content_type: str | None, expected: bool) -> None:
    assert is_protobuf(content_type) is expected

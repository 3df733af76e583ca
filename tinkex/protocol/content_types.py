"""Media types and content negotiation between the SDK and the server (PROTOCOL §1.6).

Only three things travel as protobuf: the forward_backward request body and the *results* of
sample / forward / forward_backward futures. Clients ask for a protobuf result with
``Accept: application/x-protobuf`` and tell the two apart by the response ``Content-Type``:
one containing ``application/x-protobuf`` is protobuf, anything else is JSON (try-again,
metadata-only and error bodies are always JSON).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "JSON_CONTENT_TYPE",
    "PROTOBUF_CONTENT_TYPE",
    "ZSTD_ENCODING",
    "is_protobuf",
    "wants_protobuf",
]

PROTOBUF_CONTENT_TYPE: Final = "application/x-protobuf"
JSON_CONTENT_TYPE: Final = "application/json"
ZSTD_ENCODING: Final = "zstd"
"""The ``Content-Encoding`` of a zstd-compressed forward_backward body."""


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    return ranges


def wants_protobuf(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for a protobuf body.

    True when ``application/x-protobuf`` is listed with a non-zero quality that is at least
    that of ``application/json`` (0.24 SDKs sent ``application/x-protobuf, application/json``;
    0.25+ send ``application/x-protobuf`` alone). Wildcards never select protobuf.
    """
    if not accept:
        return False
    ranges = _media_ranges(accept)
    proto_q = max((q for media, q in ranges if media == PROTOBUF_CONTENT_TYPE), default=0.0)
    json_q = max((q for media, q in ranges if media == JSON_CONTENT_TYPE), default=0.0)
    return proto_q > 0 and proto_q >= json_q


def is_protobuf(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` header announces a protobuf body (as the SDK decides)."""
    return content_type is not None and PROTOBUF_CONTENT_TYPE in content_type.lower()

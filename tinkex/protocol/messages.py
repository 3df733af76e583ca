"""Parsing protobuf bodies: malformed bytes become ``ValueError`` (a 400 for the server)."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

__all__ = ["parse_message"]

M = TypeVar("M", bound=Message)


def parse_message(message_type: type[M], body: bytes) -> M:
    """Parse ``body`` as ``message_type``; malformed bytes raise ``ValueError``."""
    msg = message_type()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise ValueError(f"malformed {message_type.DESCRIPTOR.name} protobuf: {exc}") from None
    return msg

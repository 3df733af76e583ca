"""Ready-made ``decode`` callables for :func:`~tinkex.futures.poll_future`.

A decoder gets the successful ``retrieve_future`` response and returns the typed result.
The decoders here are liberal: a protobuf body (``Content-Type`` containing
``application/x-protobuf``) is decoded as protobuf, anything else as JSON validated with the
pydantic model, so a server that answers a protobuf result type in JSON still works.

They raise ``ValueError`` (pydantic's ``ValidationError`` is one) on a malformed body; the
poller turns that into :class:`~tinkex.errors.APIResponseValidationError` naming the request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx
from pydantic import BaseModel

from tinkex.protocol import decode_forward_backward_output, decode_sample_response, is_protobuf
from tinkex.types import ForwardBackwardOutput, SampleResponse

__all__ = ["decode_forward_backward", "decode_json", "decode_sample"]

M = TypeVar("M", bound=BaseModel)


def _is_protobuf(response: httpx.Response) -> bool:
    return is_protobuf(response.headers.get("content-type"))


def _json_body(response: httpx.Response, what: str) -> object:
    if _is_protobuf(response):
        raise ValueError(f"expected a JSON {what}, got a protobuf body")
    try:
        return response.json()
    except ValueError as exc:
        raise ValueError(f"the {what} body is not valid JSON: {exc}") from exc


def decode_forward_backward(response: httpx.Response) -> ForwardBackwardOutput:
    """The ``ForwardBackwardOutput`` of a forward or forward_backward future (proto or JSON)."""
    if _is_protobuf(response):
        return decode_forward_backward_output(response.content)
    return ForwardBackwardOutput.model_validate(_json_body(response, "ForwardBackwardOutput"))


def decode_sample(
    sequence_ids: Sequence[str] | None = None,
) -> Callable[[httpx.Response], SampleResponse]:
    """A decoder of a sample future's ``SampleResponse`` (proto or JSON).

    ``sequence_ids`` (the promise's ``sample_sequence_ids``) become the sequences'
    ``sequence_id``; there must be one per sequence.
    """
    ids = None if sequence_ids is None else list(sequence_ids)

    def decode(response: httpx.Response) -> SampleResponse:
        if _is_protobuf(response):
            return decode_sample_response(response.content, ids)
        result = SampleResponse.model_validate(_json_body(response, "SampleResponse"))
        if ids is not None:
            if len(ids) != len(result.sequences):
                raise ValueError(
                    f"{len(ids)} sequence ids for {len(result.sequences)} sampled sequences"
                )
            for sequence, sequence_id in zip(result.sequences, ids, strict=True):
                if sequence.sequence_id is None:
                    sequence.sequence_id = sequence_id
        return result

    return decode


def decode_json(model_type: type[M]) -> Callable[[httpx.Response], M]:
    """A decoder validating a JSON result with ``model_type.model_validate``."""

    def decode(response: httpx.Response) -> M:
        return model_type.model_validate(_json_body(response, model_type.__name__))

    return decode

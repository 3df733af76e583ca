"""forward_backward on the wire: the protobuf request and its ``ForwardBackwardOutput`` result.

Request (PROTOCOL §2.5): ``ForwardBackwardRequest`` with the datums' chunks and
``loss_fn_inputs`` tensors. Config values are dual-written: numbers go to the legacy
``loss_fn_config`` map *and* to ``loss_fn_config_v2``; strings only to ``loss_fn_config_v2``.
Readers prefer v2 and fall back to v1 per key.

Result (PROTOCOL §3.4, §3.9): ``ForwardBackwardOutput`` whose per-datum outputs are packed in
``ArrayRecord`` s of ``BatchedTensor`` fields. A reader concatenates the datums of every record
in order; a record's ``num_datums`` is authoritative (fields may be missing), and only when it
is 0 is the first field's datum count used. ``loss_fn_output_type`` is reported without any
``prefix:`` (the part after the last colon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tinkex.types import Datum, ForwardBackwardOutput, ModelInput, TensorData, TensorDtype

from . import tinker_public_pb2 as pb
from .chunks import ProtoChunk, _fill_chunk, decode_chunks_with_tokens
from .messages import parse_message
from .tensors import (
    _fill_tensor,
    decode_tensor_array,
    pack_batched_tensor,
    public_dtype,
    unpack_batched_tensor,
    wire_dtype_for,
)

__all__ = [
    "DecodedDatum",
    "DecodedForwardBackward",
    "decode_forward_backward_output",
    "decode_forward_backward_request",
    "encode_forward_backward_output",
    "encode_forward_backward_request",
]

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

# --------------------------------------------------------------------------------------------
# Request


def encode_forward_backward_request(
    *,
    model_id: str,
    seq_id: int | None,
    data: Sequence[Datum],
    loss_fn: str,
    loss_fn_config: Mapping[str, float | str] | None = None,
    forward_only: bool = False,
) -> bytes:
    """The serialized ``ForwardBackwardRequest`` the SDK posts to ``/api/v1/forward_backward``.

    ``seq_id=None`` is sent as 0. Raises ``ValueError`` for a chunk without a protobuf form
    (``image_asset_pointer``), a token id or ``seq_id`` outside int32, or a config value that
    is neither a number nor a string.
    """
    msg = pb.ForwardBackwardRequest(model_id=model_id, loss_fn=loss_fn, forward_only=forward_only)
    seq = 0 if seq_id is None else int(seq_id)
    if not _INT32_MIN <= seq <= _INT32_MAX:
        raise ValueError(f"seq_id {seq} does not fit the int32 seq_id field")
    msg.seq_id = seq
    for key, value in (loss_fn_config or {}).items():
        if isinstance(value, str):
            msg.loss_fn_config_v2[key].text = value
        elif isinstance(value, int | float | np.integer | np.floating):
            number = float(value)
            msg.loss_fn_config[key] = number
            msg.loss_fn_config_v2[key].number = number
        else:
            raise ValueError(
                f"loss_fn_config[{key!r}] is {type(value).__name__}; values must be numbers or "
                "strings"
            )
    for datum in data:
        datum_msg = msg.data.add()
        for chunk in datum.model_input.chunks:
            _fill_chunk(datum_msg.model_input.add(), chunk)
        for name, tensor in datum.loss_fn_inputs.items():
            _fill_tensor(datum_msg.loss_fn_inputs[name], tensor)
    return msg.SerializeToString()


@dataclass(frozen=True, slots=True)
class DecodedDatum:
    """One datum of a decoded request, ready for a model.

    ``tokens`` holds all token ids as one int64 array when every chunk is text (an empty array
    for an empty input), else ``None``. ``inputs`` holds each loss input as a dense int64 or
    float32 array, CSR tensors expanded with 0.
    """

    chunks: list[ProtoChunk]
    tokens: npt.NDArray[np.int64] | None
    inputs: dict[str, npt.NDArray[Any]]

    @property
    def model_input(self) -> ModelInput:
        return ModelInput.model_construct(chunks=list(self.chunks))

    def to_datum(self) -> Datum:
        """The pydantic ``Datum`` (dense loss inputs)."""
        return Datum(
            model_input=self.model_input,
            loss_fn_inputs={
                name: TensorData.from_numpy(array) for name, array in self.inputs.items()
            },
        )


@dataclass(frozen=True, slots=True)
class DecodedForwardBackward:
    """A decoded ``ForwardBackwardRequest``; ``loss_fn_config`` merges v2 over v1."""

    model_id: str
    seq_id: int
    loss_fn: str
    loss_fn_config: dict[str, float | str]
    forward_only: bool
    data: list[DecodedDatum] = field(default_factory=list)


def decode_forward_backward_request(body: bytes) -> DecodedForwardBackward:
    """Decode a (decompressed) ``ForwardBackwardRequest`` body for the server.

    Raises ``ValueError`` for malformed protobuf, inconsistent tensors, ``dmel`` chunks and
    image chunks with an unknown format.
    """
    msg = parse_message(pb.ForwardBackwardRequest, body)
    config: dict[str, float | str] = {
        key: float(value) for key, value in msg.loss_fn_config.items()
    }
    for key, value in msg.loss_fn_config_v2.items():
        kind = value.WhichOneof("value")
        if kind == "text":
            config[key] = value.text
        elif kind == "number":
            config[key] = float(value.number)
    data: list[DecodedDatum] = []
    for index, datum_msg in enumerate(msg.data):
        what = f"data[{index}]"
        chunks, tokens = decode_chunks_with_tokens(datum_msg.model_input, what)
        inputs = {
            name: decode_tensor_array(tensor, what=f"{what}.loss_fn_inputs[{name!r}]")
            for name, tensor in datum_msg.loss_fn_inputs.items()
        }
        data.append(DecodedDatum(chunks=chunks, tokens=tokens, inputs=inputs))
    return DecodedForwardBackward(
        model_id=msg.model_id,
        seq_id=int(msg.seq_id),
        loss_fn=msg.loss_fn,
        loss_fn_config=config,
        forward_only=bool(msg.forward_only),
        data=data,
    )


# --------------------------------------------------------------------------------------------
# Result


def _record_signature(
    output: Mapping[str, npt.NDArray[Any]],
) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple(
        (name, wire_dtype_for(array), tuple(array.shape[1:]) if array.ndim else ())
        for name, array in output.items()
    )


def encode_forward_backward_output(
    outputs: Sequence[Mapping[str, npt.ArrayLike]],
    metrics: Mapping[str, float],
    loss_fn_output_type: str = "ArrayRecord",
) -> bytes:
    """The serialized ``ForwardBackwardOutput`` of per-datum arrays and metrics.

    Every datum must have the same output names. Arrays may differ in their first dimension
    (ragged per-datum outputs); runs of datums whose arrays share dtype and trailing shape go
    in one ``ArrayRecord`` (usually all of them, so one record), a change starts a new record.
    Integer arrays are written as int64, floating ones as float32.
    """
    arrays = [{name: np.asarray(value) for name, value in output.items()} for output in outputs]
    if arrays:
        names = list(arrays[0])
        for index, output in enumerate(arrays):
            if sorted(output) != sorted(names):
                raise ValueError(
                    f"loss_fn_outputs[{index}] has outputs {sorted(output)}, datum 0 has "
                    f"{sorted(names)}; every datum needs the same outputs"
                )
    msg = pb.ForwardBackwardOutput(loss_fn_output_type=loss_fn_output_type)
    for key, value in metrics.items():
        msg.metrics[key] = float(value)
    start = 0
    while start < len(arrays):
        signature = _record_signature(arrays[start])
        end = start + 1
        while end < len(arrays) and _record_signature(arrays[end]) == signature:
            end += 1
        record = msg.loss_fn_outputs.add(type_tag=loss_fn_output_type, num_datums=end - start)
        for name in arrays[start]:
            batch = pack_batched_tensor([output[name] for output in arrays[start:end]])
            record.fields[name].CopyFrom(batch)
        start = end
    return msg.SerializeToString()


def _output_type_name(raw: str) -> str:
    name = raw.rsplit(":", 1)[-1]
    return name or "ArrayRecord"


def decode_forward_backward_output(body: bytes) -> ForwardBackwardOutput:
    """The pydantic ``ForwardBackwardOutput`` of a serialized ``ForwardBackwardOutput``.

    Records are concatenated in order. A field missing from a record is missing from that
    record's datums.
    """
    msg = parse_message(pb.ForwardBackwardOutput, body)
    outputs: list[dict[str, TensorData]] = []
    for record_index, record in enumerate(msg.loss_fn_outputs):
        what = f"loss_fn_outputs[{record_index}]"
        fields: dict[str, tuple[TensorDtype, list[npt.NDArray[Any]]]] = {}
        for name, batch in record.fields.items():
            field_what = f"{what}.fields[{name!r}]"
            fields[name] = (
                public_dtype(batch.dtype, field_what),
                unpack_batched_tensor(batch, what=field_what),
            )
        count = int(record.num_datums)
        if count < 0:
            raise ValueError(f"{what}: negative num_datums {count}")
        if count == 0 and fields:
            count = len(next(iter(fields.values()))[1])
        for name, (_, per_datum) in fields.items():
            if len(per_datum) != count:
                raise ValueError(
                    f"{what}.fields[{name!r}] holds {len(per_datum)} datums, the record has {count}"
                )
        for datum_index in range(count):
            datum: dict[str, TensorData] = {}
            for name, (dtype, per_datum) in fields.items():
                array = per_datum[datum_index]
                flat = array.reshape(-1)  # a fresh array of the dtype: safe to adopt as is
                flat.flags.writeable = False
                datum[name] = TensorData.model_construct(
                    data=flat,
                    dtype=dtype,
                    shape=[int(n) for n in array.shape],
                    sparse_crow_indices=None,
                    sparse_col_indices=None,
                )
            outputs.append(datum)
    return ForwardBackwardOutput(
        loss_fn_output_type=_output_type_name(msg.loss_fn_output_type),
        loss_fn_outputs=outputs,
        metrics={key: float(value) for key, value in msg.metrics.items()},
    )

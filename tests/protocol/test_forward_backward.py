"""The forward_backward request and its ForwardBackwardOutput result (PROTOCOL §2.5, §3.4, §3.9)."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex.protocol import (
    DecodedForwardBackward,
    decode_forward_backward_output,
    decode_forward_backward_request,
    encode_forward_backward_output,
    encode_forward_backward_request,
    pack_batched_tensor,
)
from tinkex.protocol import tinker_public_pb2 as pb
from tinkex.types import (
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageChunk,
    ModelInput,
    TensorData,
)

from .strategies import datums, loss_fn_configs, ragged_outputs

# ---------------------------------------------------------------------------------------------
# Request


def cross_entropy_datum(tokens: list[int]) -> Datum:
    # Plain lists are coerced by key: target_tokens → int64, everything else → float32.
    return Datum.model_validate(
        {
            "model_input": ModelInput.from_ints(tokens[:-1]),
            "loss_fn_inputs": {"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
        }
    )


def test_request_fields() -> None:
    body = encode_forward_backward_request(
        model_id="run-1:train:0",
        seq_id=7,
        data=[cross_entropy_datum([1, 2, 3])],
        loss_fn="cross_entropy",
        forward_only=True,
    )
    msg = pb.ForwardBackwardRequest.FromString(body)
    assert (msg.model_id, msg.seq_id, msg.loss_fn, msg.forward_only) == (
        "run-1:train:0",
        7,
        "cross_entropy",
        True,
    )
    (datum,) = msg.data
    assert datum.model_input[0].encoded_text.tokens == struct.pack("<2i", 1, 2)
    targets = datum.loss_fn_inputs["target_tokens"]
    assert (targets.dtype, list(targets.shape), targets.dense) == (
        pb.DTYPE_INT64,
        [2],
        struct.pack("<2q", 2, 3),
    )
    assert datum.loss_fn_inputs["weights"].dtype == pb.DTYPE_FLOAT32


def test_seq_id_none_is_zero_and_must_fit_int32() -> None:
    body = encode_forward_backward_request(model_id="m", seq_id=None, data=[], loss_fn="ppo")
    assert pb.ForwardBackwardRequest.FromString(body).seq_id == 0
    with pytest.raises(ValueError, match="int32"):
        encode_forward_backward_request(model_id="m", seq_id=2**31, data=[], loss_fn="ppo")


def test_config_is_dual_written() -> None:
    body = encode_forward_backward_request(
        model_id="m",
        seq_id=1,
        data=[],
        loss_fn="ppo",
        loss_fn_config={"clip_low_threshold": 0.8, "steps": 3, "mode": "token"},
    )
    msg = pb.ForwardBackwardRequest.FromString(body)
    # Legacy map: numbers only, as doubles.
    assert dict(msg.loss_fn_config) == {"clip_low_threshold": 0.8, "steps": 3.0}
    # v2: every value, tagged.
    v2 = {
        key: (value.WhichOneof("value"), getattr(value, value.WhichOneof("value") or "text"))
        for key, value in msg.loss_fn_config_v2.items()
    }
    assert v2 == {
        "clip_low_threshold": ("number", 0.8),
        "steps": ("number", 3.0),
        "mode": ("text", "token"),
    }


def test_config_values_must_be_numbers_or_strings() -> None:
    with pytest.raises(ValueError, match=r"loss_fn_config\['bad'\]"):
        encode_forward_backward_request(
            model_id="m",
            seq_id=1,
            data=[],
            loss_fn="ppo",
            loss_fn_config={"bad": [1]},  # type: ignore[dict-item]
        )


def test_decoded_config_prefers_v2_and_falls_back_to_v1() -> None:
    msg = pb.ForwardBackwardRequest(model_id="m", loss_fn="custom")
    msg.loss_fn_config["both"] = 1.0
    msg.loss_fn_config["legacy_only"] = 2.0
    msg.loss_fn_config_v2["both"].number = 10.0
    msg.loss_fn_config_v2["loss_id"].text = "abc"
    decoded = decode_forward_backward_request(msg.SerializeToString())
    assert decoded.loss_fn_config == {"both": 10.0, "legacy_only": 2.0, "loss_id": "abc"}


def test_decoded_datum_exposes_tokens_and_dense_inputs() -> None:
    weights = TensorData(
        data=[1.0],
        dtype="float32",
        shape=[2, 2],
        sparse_crow_indices=[0, 0, 1],
        sparse_col_indices=[1],
    )
    datum = Datum(
        model_input=ModelInput(
            chunks=[EncodedTextChunk(tokens=[5, 6]), EncodedTextChunk(tokens=[7])]
        ),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(np.array([6, 7, 8])),
            "weights": weights,
        },
    )
    body = encode_forward_backward_request(
        model_id="m", seq_id=1, data=[datum], loss_fn="cross_entropy"
    )
    (decoded,) = decode_forward_backward_request(body).data
    assert decoded.tokens is not None
    assert decoded.tokens.dtype == np.int64
    assert decoded.tokens.tolist() == [5, 6, 7]
    assert decoded.inputs["target_tokens"].dtype == np.int64
    np.testing.assert_array_equal(decoded.inputs["weights"], np.array([[0, 0], [0, 1]], np.float32))
    assert decoded.model_input == datum.model_input


def test_tokens_are_none_when_an_image_is_present() -> None:
    datum = Datum(
        model_input=ModelInput(
            chunks=[EncodedTextChunk(tokens=[1]), ImageChunk(data=b"i", format="png")]
        ),
        loss_fn_inputs={},
    )
    body = encode_forward_backward_request(model_id="m", seq_id=1, data=[datum], loss_fn="x")
    (decoded,) = decode_forward_backward_request(body).data
    assert decoded.tokens is None
    assert decoded.chunks == datum.model_input.chunks


def test_empty_input_has_empty_tokens() -> None:
    body = encode_forward_backward_request(
        model_id="m",
        seq_id=1,
        data=[Datum(model_input=ModelInput.empty(), loss_fn_inputs={})],
        loss_fn="x",
    )
    (decoded,) = decode_forward_backward_request(body).data
    assert decoded.tokens is not None and decoded.tokens.size == 0


def test_malformed_request_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="malformed ForwardBackwardRequest"):
        decode_forward_backward_request(b"\xff\xff\xff")


def expected_config(config: Mapping[str, float | str] | None) -> dict[str, float | str]:
    return {k: v if isinstance(v, str) else float(v) for k, v in (config or {}).items()}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(datums, max_size=3),
    loss_fn_configs,
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_request_round_trip(
    data: list[Datum], config: dict[str, float | str] | None, seq_id: int, forward_only: bool
) -> None:
    body = encode_forward_backward_request(
        model_id="model",
        seq_id=seq_id,
        data=data,
        loss_fn="importance_sampling",
        loss_fn_config=config,
        forward_only=forward_only,
    )
    decoded = decode_forward_backward_request(body)
    assert isinstance(decoded, DecodedForwardBackward)
    assert (decoded.model_id, decoded.seq_id, decoded.loss_fn, decoded.forward_only) == (
        "model",
        seq_id,
        "importance_sampling",
        forward_only,
    )
    assert decoded.loss_fn_config == expected_config(config)
    assert len(decoded.data) == len(data)
    for got, want in zip(decoded.data, data, strict=True):
        assert got.chunks == want.model_input.chunks
        if all(isinstance(c, EncodedTextChunk) for c in want.model_input.chunks):
            assert got.tokens is not None
            assert got.tokens.tolist() == want.model_input.to_ints()
        else:
            assert got.tokens is None
        assert set(got.inputs) == set(want.loss_fn_inputs)
        for name, tensor in want.loss_fn_inputs.items():
            assert got.inputs[name].dtype == np.dtype(tensor.dtype)
            np.testing.assert_array_equal(got.inputs[name], tensor.to_numpy())
        assert got.to_datum().model_input == want.model_input


# ---------------------------------------------------------------------------------------------
# Result


def test_output_is_one_array_record_with_batched_fields() -> None:
    body = encode_forward_backward_output(
        [{"logprobs": np.array([-1.0, -2.0])}, {"logprobs": np.array([-3.0])}],
        {"loss:sum": 6.0},
    )
    msg = pb.ForwardBackwardOutput.FromString(body)
    assert msg.loss_fn_output_type == "ArrayRecord"
    assert dict(msg.metrics) == {"loss:sum": 6.0}
    (record,) = msg.loss_fn_outputs
    assert record.num_datums == 2
    batch = record.fields["logprobs"]
    assert batch.dtype == pb.DTYPE_FLOAT32
    assert np.frombuffer(batch.offsets, "<i8").tolist() == [0, 8, 12]

    out = decode_forward_backward_output(body)
    assert out == ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"logprobs": TensorData(data=[-1.0, -2.0], dtype="float32", shape=[2])},
            {"logprobs": TensorData(data=[-3.0], dtype="float32", shape=[1])},
        ],
        metrics={"loss:sum": 6.0},
    )


def test_changing_trailing_shapes_start_new_records() -> None:
    outputs = [
        {"topk": np.zeros((2, 3), np.float32)},
        {"topk": np.ones((1, 3), np.float32)},
        {"topk": np.ones((4, 5), np.float32)},
    ]
    body = encode_forward_backward_output(outputs, {})
    msg = pb.ForwardBackwardOutput.FromString(body)
    assert [r.num_datums for r in msg.loss_fn_outputs] == [2, 1]
    assert [list(r.fields["topk"].trailing_shape) for r in msg.loss_fn_outputs] == [[3], [5]]
    decoded = decode_forward_backward_output(body)
    assert [d["topk"].shape for d in decoded.loss_fn_outputs] == [[2, 3], [1, 3], [4, 5]]


def test_every_datum_needs_the_same_outputs() -> None:
    with pytest.raises(ValueError, match="same outputs"):
        encode_forward_backward_output([{"a": np.zeros(1)}, {"b": np.zeros(1)}], {})


def record(num_datums: int, **fields: list[npt.ArrayLike]) -> pb.ArrayRecord:
    msg = pb.ArrayRecord(type_tag="ArrayRecord", num_datums=num_datums)
    for name, arrays in fields.items():
        msg.fields[name].CopyFrom(pack_batched_tensor(arrays))
    return msg


def test_records_are_concatenated_in_order() -> None:
    msg = pb.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            record(1, logprobs=[np.array([1.0])]),
            record(2, logprobs=[np.array([2.0]), np.array([3.0, 4.0])]),
        ],
    )
    out = decode_forward_backward_output(msg.SerializeToString())
    assert [d["logprobs"].data for d in out.loss_fn_outputs] == [[1.0], [2.0], [3.0, 4.0]]


def test_num_datums_is_authoritative_even_without_fields() -> None:
    msg = pb.ForwardBackwardOutput(loss_fn_outputs=[record(3)])
    out = decode_forward_backward_output(msg.SerializeToString())
    assert out.loss_fn_outputs == [{}, {}, {}]


def test_zero_num_datums_falls_back_to_the_first_field() -> None:
    msg = pb.ForwardBackwardOutput(loss_fn_outputs=[record(0, x=[np.array([1]), np.array([2])])])
    out = decode_forward_backward_output(msg.SerializeToString())
    assert [d["x"].data for d in out.loss_fn_outputs] == [[1], [2]]


def test_field_and_num_datums_disagreeing_is_an_error() -> None:
    msg = pb.ForwardBackwardOutput(loss_fn_outputs=[record(3, x=[np.array([1])])])
    with pytest.raises(ValueError, match="holds 1 datums, the record has 3"):
        decode_forward_backward_output(msg.SerializeToString())


@pytest.mark.parametrize(
    ("wire", "reported"),
    [
        ("ArrayRecord", "ArrayRecord"),
        ("tinker.losses:ArrayRecord", "ArrayRecord"),
        ("a:b:CrossEntropyOutput", "CrossEntropyOutput"),
        ("", "ArrayRecord"),
    ],
)
def test_output_type_keeps_the_part_after_the_last_colon(wire: str, reported: str) -> None:
    body = encode_forward_backward_output([{"x": np.zeros(1)}], {}, loss_fn_output_type=wire)
    assert decode_forward_backward_output(body).loss_fn_output_type == reported
    empty = pb.ForwardBackwardOutput(loss_fn_output_type=wire).SerializeToString()
    assert decode_forward_backward_output(empty).loss_fn_output_type == reported


def test_narrow_output_dtypes_are_widened() -> None:
    rec = pb.ArrayRecord(num_datums=1)
    rec.fields["ids"].CopyFrom(
        pb.BatchedTensor(
            dtype=pb.DTYPE_INT32,
            data=struct.pack("<2i", 4, 5),
            offsets=np.array([0, 8], "<i8").tobytes(),
        )
    )
    rec.fields["lp"].CopyFrom(
        pb.BatchedTensor(
            dtype=pb.DTYPE_BFLOAT16,
            data=struct.pack("<H", 0xBF80),
            offsets=np.array([0, 2], "<i8").tobytes(),
        )
    )
    out = decode_forward_backward_output(
        pb.ForwardBackwardOutput(loss_fn_outputs=[rec]).SerializeToString()
    )
    (datum,) = out.loss_fn_outputs
    assert datum["ids"] == TensorData(data=[4, 5], dtype="int64", shape=[2])
    assert datum["lp"] == TensorData(data=[-1.0], dtype="float32", shape=[1])


@settings(max_examples=60, deadline=None)
@given(
    ragged_outputs(),
    st.dictionaries(st.sampled_from(["loss:sum", "n:mean", "x:max"]), st.floats(allow_nan=False)),
)
def test_output_round_trip(
    outputs: list[dict[str, npt.NDArray[Any]]], metrics: dict[str, float]
) -> None:
    decoded = decode_forward_backward_output(encode_forward_backward_output(outputs, metrics))
    assert decoded.metrics == metrics
    assert len(decoded.loss_fn_outputs) == len(outputs)
    for got, want in zip(decoded.loss_fn_outputs, outputs, strict=True):
        assert set(got) == set(want)
        for name, array in want.items():
            assert got[name].shape == list(array.shape)
            assert got[name].dtype == ("int64" if array.dtype == np.int64 else "float32")
            np.testing.assert_array_equal(got[name].to_numpy(), array)


def test_output_json_form_round_trips() -> None:
    out = decode_forward_backward_output(
        encode_forward_backward_output([{"logprobs": np.array([-0.5, -1.5])}], {"loss:sum": 2.0})
    )
    wire = out.to_wire()
    assert wire == {
        "loss_fn_output_type": "ArrayRecord",
        "loss_fn_outputs": [{"logprobs": {"data": [-0.5, -1.5], "dtype": "float32", "shape": [2]}}],
        "metrics": {"loss:sum": 2.0},
    }
    assert ForwardBackwardOutput.model_validate(wire) == out


def test_metrics_are_doubles() -> None:
    body = encode_forward_backward_output([], {"a:sum": 1 / 3, "b:max": math.inf})
    assert decode_forward_backward_output(body).metrics == {"a:sum": 1 / 3, "b:max": math.inf}

"""Wire compatibility with the official tinker SDK (0.38), both directions.

The official SDK's own encoder and decoders are used as oracles only:
* our forward_backward request bytes parse into the message the SDK builds for the same input,
  and the SDK's bytes decode with ours to the same tokens and tensors;
* our SampleResponse / ForwardBackwardOutput bytes decode with the SDK's deserializers to the
  same values;
* our metric combination agrees with the SDK's where both define it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex.protocol import (
    combine_metrics,
    decode_forward_backward_request,
    decode_sample_response,
    encode_forward_backward_output,
    encode_forward_backward_request,
    encode_sample_response_model,
)
from tinkex.types import Datum, EncodedTextChunk, ImageChunk, SampleResponse

from .strategies import datums, loss_fn_configs, ragged_outputs, sample_responses

tinker = pytest.importorskip("tinker")
T = tinker.types

from tinker.lib.chunked_fwdbwd_helpers import combine_fwd_bwd_output_results  # noqa: E402
from tinker.proto import tinker_public_pb2 as official_pb  # noqa: E402
from tinker.proto.request_conv import forward_backward_request_to_proto  # noqa: E402
from tinker.proto.response_conv import (  # noqa: E402
    deserialize_forward_backward_output,
    deserialize_sample_response,
)


def to_official_datum(datum: Datum) -> Any:
    chunks = []
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            chunks.append(T.EncodedTextChunk(tokens=chunk.tokens))
        else:
            assert isinstance(chunk, ImageChunk)
            chunks.append(
                T.ImageChunk(
                    data=chunk.data, format=chunk.format, expected_tokens=chunk.expected_tokens
                )
            )
    inputs = {
        name: T.TensorData(
            data=tensor.data,
            dtype=tensor.dtype,
            shape=tensor.shape,
            sparse_crow_indices=tensor.sparse_crow_indices,
            sparse_col_indices=tensor.sparse_col_indices,
        )
        for name, tensor in datum.loss_fn_inputs.items()
    }
    return T.Datum(model_input=T.ModelInput(chunks=chunks), loss_fn_inputs=inputs)


def official_request_bytes(
    data: list[Datum], config: dict[str, float | str] | None, seq_id: int, forward_only: bool
) -> bytes:
    request = T.ForwardBackwardRequest(
        forward_backward_input=T.ForwardBackwardInput(
            data=[to_official_datum(d) for d in data], loss_fn="ppo", loss_fn_config=config
        ),
        model_id="run:train:0",
        seq_id=seq_id,
    )
    msg = forward_backward_request_to_proto(request)
    msg.forward_only = forward_only  # set by the SDK's resource layer, as here
    return bytes(msg.SerializeToString())


@settings(max_examples=40, deadline=None)
@given(st.lists(datums, max_size=3), loss_fn_configs, st.integers(0, 2**31 - 1), st.booleans())
def test_forward_backward_request_both_directions(
    data: list[Datum], config: dict[str, float | str] | None, seq_id: int, forward_only: bool
) -> None:
    ours = encode_forward_backward_request(
        model_id="run:train:0",
        seq_id=seq_id,
        data=data,
        loss_fn="ppo",
        loss_fn_config=config,
        forward_only=forward_only,
    )
    theirs = official_request_bytes(data, config, seq_id, forward_only)
    # Ours parses with the official module into exactly the message the official SDK builds.
    assert official_pb.ForwardBackwardRequest.FromString(
        ours
    ) == official_pb.ForwardBackwardRequest.FromString(theirs)
    # The official SDK's bytes decode with ours to the same tokens and tensors.
    decoded = decode_forward_backward_request(theirs)
    assert (decoded.seq_id, decoded.loss_fn, decoded.forward_only) == (seq_id, "ppo", forward_only)
    assert decoded.loss_fn_config == {
        k: v if isinstance(v, str) else float(v) for k, v in (config or {}).items()
    }
    for got, want in zip(decoded.data, data, strict=True):
        assert got.chunks == want.model_input.chunks
        if got.tokens is not None:
            assert got.tokens.tolist() == want.model_input.to_ints()
        for name, tensor in want.loss_fn_inputs.items():
            np.testing.assert_array_equal(got.inputs[name], tensor.to_numpy())
            assert got.inputs[name].dtype == np.dtype(tensor.dtype)


def official_topk(rows: Any) -> Any:
    return (
        None
        if rows is None
        else [None if row is None else [tuple(cell) for cell in row] for row in rows]
    )


@settings(max_examples=40, deadline=None)
@given(sample_responses())
def test_sample_response_decodes_with_the_official_sdk(response: SampleResponse) -> None:
    body = encode_sample_response_model(response)
    theirs = deserialize_sample_response(body)
    assert theirs.prompt_cache_hit_tokens == response.prompt_cache_hit_tokens
    assert theirs.prompt_logprobs == response.prompt_logprobs
    assert official_topk(theirs.topk_prompt_logprobs) == response.topk_prompt_logprobs
    assert len(theirs.sequences) == len(response.sequences)
    for got, want in zip(theirs.sequences, response.sequences, strict=True):
        assert got.stop_reason == want.stop_reason
        assert got.tokens == want.tokens
        assert got.logprobs == want.logprobs
        assert official_topk(got.topk_logprobs) == want.topk_logprobs
    assert decode_sample_response(body) == response


def test_official_sample_proto_decodes_with_ours() -> None:
    msg = official_pb.SampleResponse(
        sequences=[
            official_pb.SampledSequence(
                stop_reason=official_pb.STOP_REASON_STOP,
                tokens=np.array([3, 4], "<i4").tobytes(),
                logprobs=np.array([-0.5, -0.25], "<f4").tobytes(),
            )
        ],
        prompt_logprobs=np.array([np.nan, -2.0], "<f4").tobytes(),
        topk_prompt_logprobs=official_pb.TopkLogprobs(
            token_ids=np.array([[0, 0], [9, 8]], "<i4").tobytes(),
            logprobs=np.array([[-99999.0, -99999.0], [-0.5, -1.0]], "<f4").tobytes(),
            k=2,
            length=2,
        ),
        prompt_cache_hit_tokens=1,
    )
    body = msg.SerializeToString()
    ours = decode_sample_response(body, ["seq-a"])
    theirs = deserialize_sample_response(body)
    assert ours.prompt_logprobs == theirs.prompt_logprobs == [None, -2.0]
    assert (
        ours.topk_prompt_logprobs
        == official_topk(theirs.topk_prompt_logprobs)
        == [None, [(9, -0.5), (8, -1.0)]]
    )
    assert ours.sequences[0].tokens == theirs.sequences[0].tokens == [3, 4]
    assert ours.sequences[0].sequence_id == "seq-a"


@settings(max_examples=40, deadline=None)
@given(ragged_outputs(), st.sampled_from(["ArrayRecord", "tinker.x:ArrayRecord"]))
def test_forward_backward_output_decodes_with_the_official_sdk(
    outputs: list[dict[str, npt.NDArray[Any]]], output_type: str
) -> None:
    metrics = {"loss:sum": 1.25, "tokens:sum": 7.0}
    theirs = deserialize_forward_backward_output(
        encode_forward_backward_output(outputs, metrics, output_type)
    )
    # With no records the official SDK reports the raw type; tinkex strips the prefix always.
    assert theirs.loss_fn_output_type == ("ArrayRecord" if outputs else output_type)
    assert theirs.metrics == metrics
    assert len(theirs.loss_fn_outputs) == len(outputs)
    for got, want in zip(theirs.loss_fn_outputs, outputs, strict=True):
        assert set(got) == set(want)
        for name, array in want.items():
            assert got[name].shape == list(array.shape)
            np.testing.assert_array_equal(got[name].to_numpy(), array)


REDUCTIONS = ["sum", "mean", "min", "max", "slack", "unique", "hash2"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 2**40), min_size=len(REDUCTIONS), max_size=len(REDUCTIONS)),
            st.integers(1, 5),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_metric_combination_matches_the_official_sdk(chunks: list[tuple[list[int], int]]) -> None:
    as_metrics = [
        ({f"m_{r}:{r}": float(v) for r, v in zip(REDUCTIONS, values, strict=True)}, n)
        for values, n in chunks
    ]
    theirs = combine_fwd_bwd_output_results(
        [
            T.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord", loss_fn_outputs=[{}] * n, metrics=metrics
            )
            for metrics, n in as_metrics
        ]
    ).metrics
    ours = combine_metrics(as_metrics)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(float(value), rel=1e-12)


def test_official_tensor_without_shape_reads_as_one_dimensional() -> None:
    datum = T.Datum(
        model_input=T.ModelInput(chunks=[T.EncodedTextChunk(tokens=[1])]),
        loss_fn_inputs={
            "target_tokens": T.TensorData(data=[2], dtype="int64"),
            "weights": T.TensorData(data=[1.0, 0.5], dtype="float32"),
        },
    )
    request = T.ForwardBackwardRequest(
        forward_backward_input=T.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"),
        model_id="m",
        seq_id=1,
    )
    msg = forward_backward_request_to_proto(request)
    assert list(msg.data[0].loss_fn_inputs["target_tokens"].shape) == []
    (decoded,) = decode_forward_backward_request(msg.SerializeToString()).data
    assert decoded.inputs["target_tokens"].tolist() == [2]
    assert decoded.inputs["weights"].tolist() == [1.0, 0.5]

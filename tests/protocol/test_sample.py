"""The SampleResponse result of a sample request (PROTOCOL §3.8)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings

from tinkex.protocol import (
    TOPK_SENTINEL_LOGPROB,
    TOPK_SENTINEL_TOKEN,
    SequenceArrays,
    decode_sample_response,
    decode_tensor_array,
    encode_sample_response,
    encode_sample_response_model,
    topk_from_arrays,
    topk_to_arrays,
)
from tinkex.protocol import tinker_public_pb2 as pb
from tinkex.types import SampledSequence, SampleResponse, TensorData

from .strategies import sample_responses

S = TOPK_SENTINEL_TOKEN, TOPK_SENTINEL_LOGPROB


def test_sequence_layout() -> None:
    body = encode_sample_response(
        [
            SequenceArrays(
                tokens=np.array([5, 6], np.int32), stop_reason="length", logprobs=[-0.5, -1.0]
            )
        ],
        prompt_cache_hit_tokens=12,
    )
    msg = pb.SampleResponse.FromString(body)
    (seq,) = msg.sequences
    assert seq.stop_reason == pb.STOP_REASON_LENGTH
    assert seq.tokens == struct.pack("<2i", 5, 6)
    assert seq.logprobs == struct.pack("<2f", -0.5, -1.0)
    assert not msg.HasField("prompt_logprobs")
    assert not msg.HasField("topk_prompt_logprobs")
    assert msg.prompt_cache_hit_tokens == 12


def test_decode_basic_response_with_sequence_ids() -> None:
    body = encode_sample_response(
        [
            SequenceArrays(
                tokens=[1, 2, 3], stop_reason="stop", logprobs=np.array([-1, -2, -3], np.float32)
            ),
            SequenceArrays(tokens=[4], stop_reason="length"),
        ],
        prompt_logprobs=np.array([np.nan, -0.25, -4.0], np.float32),
    )
    response = decode_sample_response(body, sequence_ids=["s-0", "s-1"])
    assert response == SampleResponse(
        sequences=[
            SampledSequence(
                stop_reason="stop", tokens=[1, 2, 3], logprobs=[-1.0, -2.0, -3.0], sequence_id="s-0"
            ),
            SampledSequence(stop_reason="length", tokens=[4], sequence_id="s-1"),
        ],
        prompt_logprobs=[None, -0.25, -4.0],
    )


def test_sequence_ids_must_match_the_sequences() -> None:
    body = encode_sample_response([SequenceArrays(tokens=[1], stop_reason="stop")])
    with pytest.raises(ValueError, match="2 sequence ids for 1 sampled sequences"):
        decode_sample_response(body, ["a", "b"])
    assert decode_sample_response(body).sequences[0].sequence_id is None


def test_unknown_stop_reasons_are_errors() -> None:
    raw = pb.SampleResponse(sequences=[pb.SampledSequence(stop_reason=5)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown stop_reason enum value 5"):
        decode_sample_response(raw.SerializeToString())
    with pytest.raises(ValueError, match="'stop' or 'length'"):
        encode_sample_response([SequenceArrays(tokens=[1], stop_reason="eos")])  # type: ignore[arg-type]


def test_logprobs_must_match_tokens() -> None:
    with pytest.raises(ValueError, match="1 logprobs for 2 tokens"):
        encode_sample_response([SequenceArrays(tokens=[1, 2], stop_reason="stop", logprobs=[-1.0])])


def test_empty_logprobs_read_as_absent() -> None:
    raw = pb.SampleResponse(
        sequences=[pb.SampledSequence(tokens=b"", logprobs=b"")], prompt_logprobs=b""
    )
    response = decode_sample_response(raw.SerializeToString())
    assert response.sequences[0].logprobs is None
    assert response.prompt_logprobs is None


def test_prompt_logprobs_nan_reads_as_none() -> None:
    body = encode_sample_response([], prompt_logprobs=[math.nan, -1.0, math.nan, -2.0])
    assert decode_sample_response(body).prompt_logprobs == [None, -1.0, None, -2.0]


# ---------------------------------------------------------------------------------------------
# Top-k


def test_topk_matrix_layout_and_sentinels() -> None:
    ids, lps = topk_to_arrays([None, [(7, -0.5), (9, -1.5)], [(3, -0.25)]])
    assert ids.tolist() == [[S[0], S[0]], [7, 9], [3, S[0]]]
    assert lps.tolist() == [[S[1], S[1]], [-0.5, -1.5], [-0.25, S[1]]]
    body = encode_sample_response([], topk_prompt_logprobs=(ids, lps))
    topk = pb.SampleResponse.FromString(body).topk_prompt_logprobs
    assert (topk.length, topk.k) == (3, 2)
    assert topk.token_ids == np.array(ids, "<i4").tobytes()
    assert topk.logprobs == np.array(lps, "<f4").tobytes()
    assert decode_sample_response(body).topk_prompt_logprobs == [
        None,
        [(7, -0.5), (9, -1.5)],
        [(3, -0.25)],
    ]


def test_rows_starting_with_the_sentinel_are_none_and_trailing_sentinels_dropped() -> None:
    ids = np.array([[0, 5], [4, 0], [0, 0]], np.int32)
    lps = np.array([[S[1], -1.0], [-2.0, S[1]], [-3.0, S[1]]], np.float32)
    # Row 0 starts with the sentinel; row 2's first cell is token 0 with a real logprob.
    assert topk_from_arrays(ids, lps) == [None, [(4, -2.0)], [(0, -3.0)]]


@pytest.mark.parametrize(("length", "k"), [(0, 3), (2, 0)])
def test_empty_topk_reads_as_absent(length: int, k: int) -> None:
    raw = pb.SampleResponse(
        topk_prompt_logprobs=pb.TopkLogprobs(
            token_ids=b"\x00" * 4 * length * k,
            logprobs=b"\x00" * 4 * length * k,
            length=length,
            k=k,
        )
    )
    assert decode_sample_response(raw.SerializeToString()).topk_prompt_logprobs is None


def test_topk_sizes_must_match() -> None:
    raw = pb.SampleResponse(
        topk_prompt_logprobs=pb.TopkLogprobs(token_ids=b"\x00" * 4, logprobs=b"", length=1, k=1)
    )
    with pytest.raises(ValueError, match="1x1 top-k"):
        decode_sample_response(raw.SerializeToString())
    with pytest.raises(ValueError, match="same shape"):
        encode_sample_response([], topk_prompt_logprobs=(np.zeros((2, 2)), np.zeros((2, 3))))


def test_sampled_topk_rows() -> None:
    ids, lps = topk_to_arrays([[(1, -0.1), (2, -2.0)], []], k=3)
    body = encode_sample_response(
        [SequenceArrays(tokens=[1, 5], stop_reason="stop", topk_logprobs=(ids, lps))]
    )
    (seq,) = decode_sample_response(body).sequences
    # SampledSequence.topk_logprobs has no None rows: an all-sentinel row reads as [].
    assert seq.topk_logprobs == [[(1, np.float32(-0.1).item()), (2, -2.0)], []]


def test_topk_to_arrays_checks_k() -> None:
    with pytest.raises(ValueError, match="more than k=1"):
        topk_to_arrays([[(1, -1.0), (2, -2.0)]], k=1)


# ---------------------------------------------------------------------------------------------
# 0.38 extras


def test_target_prompt_logprobs_and_alt_tokens_are_written() -> None:
    target = TensorData(
        data=[-0.5],
        dtype="float32",
        shape=[2, 2],
        sparse_crow_indices=[0, 1, 1],
        sparse_col_indices=[1],
    )
    body = encode_sample_response(
        [],
        target_prompt_logprobs=target,
        prompt_alt_tokens=(np.array([[3, 4]]), np.array([[-0.1, -0.2]])),
    )
    msg = pb.SampleResponse.FromString(body)
    assert msg.target_prompt_logprobs.WhichOneof("encoding") == "sparse_csr"
    np.testing.assert_array_equal(
        decode_tensor_array(msg.target_prompt_logprobs), [[0.0, -0.5], [0.0, 0.0]]
    )
    assert msg.prompt_alt_tokens.tokens.dtype == pb.DTYPE_INT64
    assert msg.prompt_alt_tokens.logprobs.dtype == pb.DTYPE_FLOAT32
    assert decode_tensor_array(msg.prompt_alt_tokens.tokens).tolist() == [[3, 4]]


# ---------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=80, deadline=None)
@given(sample_responses())
def test_proto_round_trip(response: SampleResponse) -> None:
    decoded = decode_sample_response(encode_sample_response_model(response))
    assert decoded == response


@settings(max_examples=40, deadline=None)
@given(sample_responses())
def test_json_round_trip(response: SampleResponse) -> None:
    wire = response.to_wire()
    assert wire["type"] == "sample"
    assert SampleResponse.model_validate(wire) == response


def test_legacy_json_validates() -> None:
    legacy = {
        "type": "sample",
        "sequences": [{"stop_reason": "stop", "tokens": [1, 2], "logprobs": [-0.5, -0.25]}],
        "prompt_logprobs": [None, -1.5],
        "topk_prompt_logprobs": [None, [[7, -0.5], [8, -1.0]]],
        "prompt_cache_hit_tokens": 0,
    }
    response = SampleResponse.model_validate(legacy)
    assert response.topk_prompt_logprobs == [None, [(7, -0.5), (8, -1.0)]]
    assert decode_sample_response(encode_sample_response_model(response)) == response

"""Hypothesis strategies for wire values: arrays, tensors, chunks, datums, sampling results."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

from tinkex.protocol import csr_from_dense
from tinkex.types import (
    Datum,
    EncodedTextChunk,
    ImageChunk,
    ModelInput,
    SampledSequence,
    SampleResponse,
    TensorData,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

token_ids = st.integers(min_value=0, max_value=INT32_MAX)
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
logprobs = st.floats(min_value=-1000.0, max_value=0.0, width=32)


def wire_arrays(
    min_dims: int = 1, max_dims: int = 3, max_side: int = 5
) -> st.SearchStrategy[npt.NDArray[Any]]:
    """int64 or float32 arrays of random shape (the two dtypes written on the wire)."""
    return st.sampled_from([np.int64, np.float32]).flatmap(
        lambda dtype: hnp.arrays(
            dtype=dtype,
            shape=hnp.array_shapes(
                min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side
            ),
            elements=float32s if dtype is np.float32 else st.integers(-(2**63), 2**63 - 1),
        )
    )


@st.composite
def sparse_matrices(draw: st.DrawFn) -> npt.NDArray[Any]:
    """2-D int64/float32 arrays that are mostly zero."""
    dtype = draw(st.sampled_from([np.int64, np.float32]))
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=6))
    values = draw(
        hnp.arrays(
            dtype=dtype,
            shape=shape,
            elements=float32s if dtype is np.float32 else st.integers(-1000, 1000),
        )
    )
    mask = draw(hnp.arrays(dtype=np.bool_, shape=shape))
    return np.where(mask, values, 0).astype(dtype)


@st.composite
def tensor_datas(draw: st.DrawFn) -> TensorData:
    """TensorData, dense with an explicit shape or CSR."""
    if draw(st.booleans()):
        return csr_from_dense(draw(sparse_matrices()))
    return TensorData.from_numpy(draw(wire_arrays()))


text_chunks = st.builds(EncodedTextChunk, tokens=st.lists(token_ids, max_size=12))
image_chunks = st.builds(
    ImageChunk,
    data=st.binary(max_size=24),
    format=st.sampled_from(["png", "jpeg"]),
    expected_tokens=st.none() | st.integers(0, 1000),
)
model_inputs = st.builds(
    ModelInput,
    chunks=st.lists(st.one_of(text_chunks, text_chunks, image_chunks), max_size=4),
)
datums = st.builds(
    Datum,
    model_input=model_inputs,
    loss_fn_inputs=st.dictionaries(
        st.sampled_from(["target_tokens", "weights", "advantages", "logprobs", "mask"]),
        tensor_datas(),
        max_size=3,
    ),
)
loss_fn_configs = st.none() | st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.floats(allow_nan=False) | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    max_size=4,
)


@st.composite
def ragged_outputs(draw: st.DrawFn) -> list[dict[str, npt.NDArray[Any]]]:
    """Per-datum output dicts: same names, per-name dtype and trailing shape, ragged first dim."""
    names = draw(
        st.lists(
            st.sampled_from(["logprobs", "elementwise_loss", "ids", "topk"]),
            unique=True,
            max_size=3,
        )
    )
    layouts = {
        name: (
            draw(st.sampled_from([np.int64, np.float32])),
            draw(st.lists(st.integers(1, 3), max_size=2)),
        )
        for name in names
    }
    outputs = []
    for _ in range(draw(st.integers(0, 5))):
        datum = {}
        for name, (dtype, trailing) in layouts.items():
            shape = (draw(st.integers(0, 6)), *trailing)
            datum[name] = draw(
                hnp.arrays(
                    dtype=np.dtype(dtype),
                    shape=shape,
                    elements=float32s if dtype is np.float32 else st.integers(-(2**63), 2**63 - 1),
                )
            )
        outputs.append(datum)
    return outputs


topk_rows = st.lists(st.tuples(st.integers(1, INT32_MAX), logprobs), min_size=1, max_size=4)
"""A non-empty top-k row of (token id, logprob); ids are never the sentinel token 0."""


@st.composite
def sampled_sequences(draw: st.DrawFn) -> SampledSequence:
    tokens = draw(st.lists(token_ids, max_size=8))
    with_logprobs = draw(st.booleans()) and bool(tokens)
    with_topk = draw(st.booleans()) and bool(tokens)
    return SampledSequence(
        stop_reason=draw(st.sampled_from(["stop", "length"])),
        tokens=tokens,
        logprobs=draw(st.lists(logprobs, min_size=len(tokens), max_size=len(tokens)))
        if with_logprobs
        else None,
        topk_logprobs=draw(st.lists(topk_rows, min_size=len(tokens), max_size=len(tokens)))
        if with_topk
        else None,
    )


@st.composite
def sample_responses(draw: st.DrawFn) -> SampleResponse:
    prompt_len = draw(st.integers(1, 8))
    prompt_logprobs = None
    if draw(st.booleans()):
        prompt_logprobs = [
            None,
            *draw(st.lists(st.none() | logprobs, min_size=prompt_len - 1, max_size=prompt_len - 1)),
        ]
    topk = None
    if draw(st.booleans()):
        topk = [
            None,
            *draw(
                st.lists(st.none() | topk_rows, min_size=prompt_len - 1, max_size=prompt_len - 1)
            ),
        ]
    return SampleResponse(
        sequences=draw(st.lists(sampled_sequences(), max_size=3)),
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=topk,
        prompt_cache_hit_tokens=draw(st.integers(0, INT32_MAX)),
    )

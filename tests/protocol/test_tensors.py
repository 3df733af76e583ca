"""Tensor, CSR and BatchedTensor encoding (PROTOCOL §3.2, §3.9)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinkex.protocol import (
    csr_from_dense,
    decode_tensor,
    decode_tensor_array,
    encode_tensor,
    pack_batched_tensor,
    unpack_batched_tensor,
    wire_dtype_for,
)
from tinkex.protocol import tinker_public_pb2 as pb
from tinkex.types import TensorData

from .strategies import sparse_matrices, tensor_datas, wire_arrays


def bf16_bytes(values: npt.ArrayLike) -> bytes:
    """bfloat16 wire bytes: the upper 16 bits of each float32."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32) >> 16
    return bits.astype("<u2").tobytes()


def bf16_truncated(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """What a bfloat16 round trip of ``values`` reads back: float32 with the low 16 bits cleared."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


# ---------------------------------------------------------------------------------------------
# Dense tensors


def test_dense_int64_is_little_endian_with_shape() -> None:
    msg = encode_tensor(np.array([[1, 2], [3, -1]], dtype=np.int64))
    assert msg.dtype == pb.DTYPE_INT64
    assert list(msg.shape) == [2, 2]
    assert msg.WhichOneof("encoding") == "dense"
    assert msg.dense == struct.pack("<4q", 1, 2, 3, -1)


def test_dense_float32_is_little_endian() -> None:
    msg = encode_tensor(TensorData(data=[1.5, -2.0], dtype="float32"))
    assert msg.dtype == pb.DTYPE_FLOAT32
    assert list(msg.shape) == [2]  # no shape = 1-D
    assert msg.dense == struct.pack("<2f", 1.5, -2.0)


@pytest.mark.parametrize(
    ("array", "wire"),
    [
        (np.array([1, 2], dtype=np.int32), "int64"),
        (np.array([1, 2], dtype=np.uint8), "int64"),
        (np.array([True, False]), "int64"),
        (np.array([1.0], dtype=np.float64), "float32"),
        (np.array([1.0], dtype=np.float16), "float32"),
    ],
)
def test_arrays_are_written_as_int64_or_float32(array: npt.NDArray[Any], wire: str) -> None:
    assert wire_dtype_for(array) == wire
    assert decode_tensor_array(encode_tensor(array)).dtype == np.dtype(wire)


def test_non_numeric_arrays_are_rejected() -> None:
    with pytest.raises(TypeError, match="integer, bool and float"):
        encode_tensor(np.array(["a"]))


@settings(max_examples=60, deadline=None)
@given(wire_arrays())
def test_dense_array_round_trip(array: npt.NDArray[Any]) -> None:
    back = decode_tensor_array(encode_tensor(array))
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


@settings(max_examples=60, deadline=None)
@given(tensor_datas())
def test_tensor_data_round_trip(tensor: TensorData) -> None:
    assert decode_tensor(encode_tensor(tensor)) == tensor


def test_nan_and_infinities_survive() -> None:
    values = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32)
    back = decode_tensor_array(encode_tensor(values))
    np.testing.assert_array_equal(back, values)
    assert np.signbit(back[3])


def test_empty_shape_reads_as_one_dimensional() -> None:
    # proto3 cannot tell an empty shape from an absent one; the official SDK omits the shape of
    # a TensorData without one, which means 1-D.
    one = pb.Tensor(dtype=pb.DTYPE_FLOAT32, dense=struct.pack("<f", 2.0))
    assert decode_tensor(one) == TensorData(data=[2.0], dtype="float32")
    assert decode_tensor_array(one).shape == (1,)
    flat = pb.Tensor(dtype=pb.DTYPE_INT64, dense=struct.pack("<3q", 1, 2, 3))
    assert decode_tensor(flat) == TensorData(data=[1, 2, 3], dtype="int64")
    assert decode_tensor_array(flat).shape == (3,)
    scalar = encode_tensor(np.float32(4.0))
    assert list(scalar.shape) == []
    assert decode_tensor_array(scalar).tolist() == [4.0]


# ---------------------------------------------------------------------------------------------
# Sparse CSR


def test_csr_layout() -> None:
    tensor = TensorData(
        data=[5.0, 7.0],
        dtype="float32",
        shape=[2, 3],
        sparse_crow_indices=[0, 1, 2],
        sparse_col_indices=[2, 0],
    )
    msg = encode_tensor(tensor)
    assert msg.WhichOneof("encoding") == "sparse_csr"
    assert msg.sparse_csr.values == struct.pack("<2f", 5.0, 7.0)
    assert msg.sparse_csr.crow_indices == struct.pack("<3q", 0, 1, 2)
    assert msg.sparse_csr.col_indices == struct.pack("<2q", 2, 0)
    assert list(msg.shape) == [2, 3]
    np.testing.assert_array_equal(
        decode_tensor_array(msg), np.array([[0, 0, 5], [7, 0, 0]], dtype=np.float32)
    )
    np.testing.assert_array_equal(
        decode_tensor_array(msg, pad_value=-1),
        np.array([[-1, -1, 5], [7, -1, -1]], dtype=np.float32),
    )


@settings(max_examples=60, deadline=None)
@given(sparse_matrices(), st.sampled_from([0, -1]))
def test_sparse_expands_with_the_pad_value(dense: npt.NDArray[Any], pad: int) -> None:
    tensor = csr_from_dense(dense, pad_value=pad)
    assert tensor.is_sparse
    np.testing.assert_array_equal(tensor.to_numpy(pad_value=pad), dense)
    back = decode_tensor_array(encode_tensor(tensor), pad_value=pad)
    assert back.dtype == dense.dtype
    np.testing.assert_array_equal(back, dense)


def test_csr_from_dense_needs_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        csr_from_dense(np.zeros(3))


@pytest.mark.parametrize(
    ("crow", "col", "match"),
    [
        ([0, 1], [0], "crow_indices for 2 rows"),
        ([0, 1, 1], [0, 1], "col_indices for 1 values"),
        ([0, 2, 1], [0], "rise from 0"),
        ([0, 1, 1], [5], "column index"),
    ],
)
def test_inconsistent_csr_is_rejected(crow: list[int], col: list[int], match: str) -> None:
    msg = pb.Tensor(
        dtype=pb.DTYPE_FLOAT32,
        shape=[2, 2],
        sparse_csr=pb.SparseCsr(
            values=struct.pack("<f", 1.0),
            crow_indices=np.array(crow, "<i8").tobytes(),
            col_indices=np.array(col, "<i8").tobytes(),
        ),
    )
    with pytest.raises(ValueError, match=match):
        decode_tensor_array(msg)


# ---------------------------------------------------------------------------------------------
# Narrow wire dtypes are widened on read


def test_int32_is_widened_to_int64() -> None:
    msg = pb.Tensor(dtype=pb.DTYPE_INT32, shape=[3], dense=struct.pack("<3i", 1, -2, 2**31 - 1))
    array = decode_tensor_array(msg)
    assert array.dtype == np.int64
    assert array.tolist() == [1, -2, 2**31 - 1]
    assert decode_tensor(msg) == TensorData(data=[1, -2, 2**31 - 1], dtype="int64", shape=[3])


def test_bfloat16_is_the_upper_half_of_float32() -> None:
    # 1.0f = 0x3F800000, -2.5f = 0xC0200000: bfloat16 keeps 0x3F80 and 0xC020.
    msg = pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=[2], dense=struct.pack("<2H", 0x3F80, 0xC020))
    array = decode_tensor_array(msg)
    assert array.dtype == np.float32
    assert array.tolist() == [1.0, -2.5]
    assert decode_tensor(msg).dtype == "float32"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), max_size=20))
def test_bfloat16_widening_matches_truncated_float32(values: list[float]) -> None:
    msg = pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=[len(values)], dense=bf16_bytes(values))
    np.testing.assert_array_equal(decode_tensor_array(msg), bf16_truncated(values))


def test_narrow_dtypes_in_csr_values() -> None:
    msg = pb.Tensor(
        dtype=pb.DTYPE_BFLOAT16,
        shape=[1, 2],
        sparse_csr=pb.SparseCsr(
            values=bf16_bytes([3.0]),
            crow_indices=np.array([0, 1], "<i8").tobytes(),
            col_indices=np.array([1], "<i8").tobytes(),
        ),
    )
    np.testing.assert_array_equal(decode_tensor_array(msg), np.array([[0.0, 3.0]], np.float32))


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (pb.Tensor(dtype=pb.DTYPE_UNSPECIFIED, dense=b""), "unsupported dtype DTYPE_UNSPECIFIED"),
        (pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1], dense=b"\x00\x00\x00"), "whole number"),
        (pb.Tensor(dtype=pb.DTYPE_INT64, shape=[2], dense=struct.pack("<q", 1)), "needs 2 values"),
        (pb.Tensor(dtype=pb.DTYPE_INT64, shape=[-1], dense=b""), "negative dimension"),
    ],
)
def test_malformed_tensors_are_rejected(msg: pb.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_tensor_array(msg)
    with pytest.raises(ValueError, match=match):
        decode_tensor(msg)


# ---------------------------------------------------------------------------------------------
# BatchedTensor


def test_batched_offsets_are_int64_byte_offsets_n_plus_one() -> None:
    arrays = [np.array([1.0, 2.0]), np.array([]), np.array([3.0, 4.0, 5.0])]
    msg = pack_batched_tensor(arrays)
    assert msg.dtype == pb.DTYPE_FLOAT32
    assert np.frombuffer(msg.offsets, "<i8").tolist() == [0, 8, 8, 20]
    assert msg.data == struct.pack("<5f", 1, 2, 3, 4, 5)
    assert list(msg.trailing_shape) == []
    back = unpack_batched_tensor(msg)
    assert [a.tolist() for a in back] == [[1.0, 2.0], [], [3.0, 4.0, 5.0]]


def test_batched_trailing_shape() -> None:
    arrays = [np.arange(6).reshape(3, 2), np.arange(2).reshape(1, 2)]
    msg = pack_batched_tensor(arrays)
    assert msg.dtype == pb.DTYPE_INT64
    assert list(msg.trailing_shape) == [2]
    assert np.frombuffer(msg.offsets, "<i8").tolist() == [0, 48, 64]
    back = unpack_batched_tensor(msg)
    assert [a.shape for a in back] == [(3, 2), (1, 2)]
    np.testing.assert_array_equal(back[0], arrays[0])


def test_batched_mixed_int_and_float_is_float32() -> None:
    msg = pack_batched_tensor([np.array([1]), np.array([0.5])])
    assert msg.dtype == pb.DTYPE_FLOAT32


def test_batched_needs_shared_trailing_shape() -> None:
    with pytest.raises(ValueError, match="trailing shape"):
        pack_batched_tensor([np.zeros((2, 3)), np.zeros((2, 4))])


def test_empty_batch() -> None:
    msg = pack_batched_tensor([], dtype="int64")
    assert np.frombuffer(msg.offsets, "<i8").tolist() == [0]
    assert unpack_batched_tensor(msg) == []
    assert unpack_batched_tensor(pb.BatchedTensor(dtype=pb.DTYPE_INT64)) == []


def test_batched_scalars_read_back_as_one_element() -> None:
    back = unpack_batched_tensor(pack_batched_tensor([np.float32(1.5), np.float32(2)]))
    assert [a.tolist() for a in back] == [[1.5], [2.0]]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([np.int64, np.float32]),
    st.lists(st.integers(1, 3), max_size=2),
    st.lists(st.integers(0, 5), max_size=6),
    st.data(),
)
def test_batched_round_trip(
    dtype: type[np.generic], trailing: list[int], leading: list[int], data: st.DataObject
) -> None:
    import hypothesis.extra.numpy as hnp

    arrays = [
        data.draw(
            hnp.arrays(dtype=np.dtype(dtype), shape=(n, *trailing), elements={"allow_nan": False})
        )
        for n in leading
    ]
    msg = pack_batched_tensor(arrays, dtype="int64" if dtype is np.int64 else "float32")
    offsets = np.frombuffer(msg.offsets, "<i8")
    assert len(offsets) == len(arrays) + 1
    assert offsets[-1] == len(msg.data)
    back = unpack_batched_tensor(msg)
    assert len(back) == len(arrays)
    for got, want in zip(back, arrays, strict=True):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_batched_int32_offsets_count_int32_bytes() -> None:
    msg = pb.BatchedTensor(
        dtype=pb.DTYPE_INT32,
        data=struct.pack("<3i", 7, 8, 9),
        offsets=np.array([0, 4, 12], "<i8").tobytes(),
    )
    back = unpack_batched_tensor(msg)
    assert [a.dtype for a in back] == [np.int64, np.int64]
    assert [a.tolist() for a in back] == [[7], [8, 9]]


def test_batched_bfloat16_is_widened() -> None:
    msg = pb.BatchedTensor(
        dtype=pb.DTYPE_BFLOAT16,
        data=bf16_bytes([1.0, -2.5, 0.5]),
        offsets=np.array([0, 2, 6], "<i8").tobytes(),
        trailing_shape=[],
    )
    assert [a.tolist() for a in unpack_batched_tensor(msg)] == [[1.0], [-2.5, 0.5]]


@pytest.mark.parametrize(
    ("offsets", "data", "trailing", "match"),
    [
        ([0, 12], b"\x00" * 8, [], "within data"),
        ([0, 8, 4], b"\x00" * 8, [], "non-decreasing"),
        ([0, 6], b"\x00" * 8, [], "not a multiple of the DTYPE_INT32 size"),
        ([0, 12], b"\x00" * 12, [2], "not a multiple of trailing_shape"),
        ([0, 4], b"\x00" * 4, [0], "holds none"),
    ],
)
def test_malformed_batches_are_rejected(
    offsets: list[int], data: bytes, trailing: list[int], match: str
) -> None:
    msg = pb.BatchedTensor(
        dtype=pb.DTYPE_INT32,
        data=data,
        offsets=np.array(offsets, "<i8").tobytes(),
        trailing_shape=trailing,
    )
    with pytest.raises(ValueError, match=match):
        unpack_batched_tensor(msg)

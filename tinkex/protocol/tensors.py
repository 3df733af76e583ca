"""Tensors on the wire: ``TensorData`` / numpy arrays ⇄ the ``Tensor`` and ``BatchedTensor`` protos.

Rules (PROTOCOL §3.2, §3.9):

* Writers only emit ``DTYPE_INT64`` and ``DTYPE_FLOAT32``, packed little-endian.
* Readers also accept ``DTYPE_INT32`` (widened to int64) and ``DTYPE_BFLOAT16`` (the upper
  16 bits of a float32, widened to float32).
* A sparse tensor is a 2-D CSR matrix: ``values`` in the tensor's dtype, ``crow_indices``
  (rows + 1 of them) and ``col_indices`` (one per value) as int64 bytes. Cells not listed take
  a pad value chosen by the consumer (0 unless the field says otherwise).
* A ``BatchedTensor`` holds one array per datum: the arrays' bytes concatenated in ``data``,
  ``num_datums + 1`` int64 *byte* offsets into ``data``, and a ``trailing_shape`` shared by all
  of them; each datum's shape is ``[elements // prod(trailing_shape), *trailing_shape]``.

Every array returned by a reader is a fresh, writable, native-endian array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tinkex.types import TensorData, TensorDtype

from . import tinker_public_pb2 as pb

__all__ = [
    "csr_from_dense",
    "decode_tensor",
    "decode_tensor_array",
    "encode_tensor",
    "pack_batched_tensor",
    "public_dtype",
    "unpack_batched_tensor",
    "wire_dtype_for",
]

# Little-endian layouts of the wire dtypes.
_WIRE_LAYOUT: Final[dict[int, np.dtype[Any]]] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_INT64: np.dtype("<i8"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_BFLOAT16: np.dtype("<u2"),
}
# The public dtype each wire dtype widens to.
_PUBLIC_DTYPE: Final[dict[int, TensorDtype]] = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_BFLOAT16: "float32",
    pb.DTYPE_INT64: "int64",
    pb.DTYPE_INT32: "int64",
}
_WRITE_DTYPE: Final[dict[TensorDtype, int]] = {
    "float32": pb.DTYPE_FLOAT32,
    "int64": pb.DTYPE_INT64,
}
_NUMPY_DTYPE: Final[dict[TensorDtype, np.dtype[Any]]] = {
    "float32": np.dtype(np.float32),
    "int64": np.dtype(np.int64),
}
_INDEX_LAYOUT: Final = np.dtype("<i8")


def wire_dtype_for(array: npt.ArrayLike) -> TensorDtype:
    """The public dtype an array is written as: ints and bools → int64, floats → float32."""
    dtype = np.asarray(array).dtype
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        return "int64"
    if np.issubdtype(dtype, np.floating):
        return "float32"
    raise TypeError(f"only integer, bool and float arrays go on the wire, not {dtype}")


def _dtype_name(code: int) -> str:
    try:
        return pb.DType.Name(code)  # type: ignore[arg-type]
    except ValueError:
        return str(code)


def public_dtype(code: int, what: str = "tensor") -> TensorDtype:
    """The public dtype a wire ``DType`` reads as (int32 → int64, bfloat16 → float32)."""
    public = _PUBLIC_DTYPE.get(code)
    if public is None:
        raise ValueError(
            f"{what}: unsupported dtype {_dtype_name(code)}; expected FLOAT32, INT64, INT32 or "
            "BFLOAT16"
        )
    return public


def _read_values(raw: bytes, code: int, what: str) -> npt.NDArray[Any]:
    """Decode a packed buffer of wire dtype ``code`` into int64 or float32 (widening)."""
    public = public_dtype(code, what)
    layout = _WIRE_LAYOUT[code]
    if len(raw) % layout.itemsize:
        raise ValueError(
            f"{what}: {len(raw)} bytes is not a whole number of {_dtype_name(code)} values "
            f"({layout.itemsize} bytes each)"
        )
    values = np.frombuffer(raw, dtype=layout)
    if code == pb.DTYPE_BFLOAT16:
        # bfloat16 is the upper half of a float32: shift the 16 bits into place and reinterpret.
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values.astype(_NUMPY_DTYPE[public])


def _read_indices(raw: bytes, what: str) -> npt.NDArray[np.int64]:
    if len(raw) % _INDEX_LAYOUT.itemsize:
        raise ValueError(f"{what}: {len(raw)} bytes is not a whole number of int64 values")
    return np.frombuffer(raw, dtype=_INDEX_LAYOUT).astype(np.int64)


def _to_wire_bytes(values: npt.ArrayLike, dtype: TensorDtype) -> bytes:
    layout = _WIRE_LAYOUT[_WRITE_DTYPE[dtype]]
    return np.ascontiguousarray(
        np.asarray(values, dtype=_NUMPY_DTYPE[dtype]), dtype=layout
    ).tobytes()


def _fill_tensor(msg: pb.Tensor, value: TensorData | npt.ArrayLike) -> None:
    """Write ``value`` into ``msg`` (avoids a copy when ``msg`` is a map entry)."""
    if isinstance(value, TensorData):
        msg.dtype = _WRITE_DTYPE[value.dtype]  # type: ignore[assignment]
        if value.is_sparse:
            assert value.shape is not None
            msg.shape.extend(value.shape)
            msg.sparse_csr.values = _to_wire_bytes(value.array, value.dtype)
            msg.sparse_csr.crow_indices = _to_wire_bytes(value.sparse_crow_indices or [], "int64")
            msg.sparse_csr.col_indices = _to_wire_bytes(value.sparse_col_indices or [], "int64")
        else:
            shape = value.shape if value.shape is not None else [len(value.array)]
            msg.shape.extend(shape)
            msg.dense = _to_wire_bytes(value.array, value.dtype)
        return
    array = np.asarray(value)
    dtype = wire_dtype_for(array)
    msg.dtype = _WRITE_DTYPE[dtype]  # type: ignore[assignment]
    msg.shape.extend(int(n) for n in array.shape)
    msg.dense = _to_wire_bytes(array, dtype)


def encode_tensor(value: TensorData | npt.ArrayLike) -> pb.Tensor:
    """A ``Tensor`` proto for a TensorData (dense or CSR, in its declared dtype) or an array.

    Arrays are written dense, integers as int64 and floats as float32; a ``TensorData`` without
    a shape is written as 1-D.
    """
    msg = pb.Tensor()
    _fill_tensor(msg, value)
    return msg


def _shape_and_size(msg: pb.Tensor, what: str) -> tuple[list[int], int]:
    shape = [int(n) for n in msg.shape]
    if any(n < 0 for n in shape):
        raise ValueError(f"{what}: negative dimension in shape {shape}")
    return shape, math.prod(shape)


def decode_tensor(msg: pb.Tensor, *, what: str = "Tensor") -> TensorData:
    """A ``TensorData`` for a ``Tensor`` proto; CSR stays CSR, int32/bfloat16 are widened.

    A dense tensor with an empty ``shape`` is read as a flat 1-D ``TensorData`` (``shape=None``):
    proto3 cannot tell an empty shape from an absent one, and the official SDK omits the shape
    of a ``TensorData`` that has none, which means 1-D. (A 0-d array therefore reads back as a
    1-element 1-D array.)
    """
    dtype = public_dtype(msg.dtype, what)
    shape, size = _shape_and_size(msg, what)
    if msg.WhichOneof("encoding") == "sparse_csr":
        values, crow, col = _decode_csr(msg, shape, what)
        return TensorData(
            data=values,
            dtype=dtype,
            shape=shape,
            sparse_crow_indices=crow.tolist(),
            sparse_col_indices=col.tolist(),
        )
    values = _read_values(msg.dense, msg.dtype, what)
    if not shape:
        return TensorData(data=values, dtype=dtype)
    if values.size != size:
        raise ValueError(
            f"{what}: shape {shape} needs {size} values but the tensor holds {values.size}"
        )
    return TensorData(data=values, dtype=dtype, shape=shape)


def _decode_csr(
    msg: pb.Tensor, shape: list[int], what: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if len(shape) != 2:
        raise ValueError(f"{what}: a CSR tensor needs a 2-D shape, got {shape}")
    values = _read_values(msg.sparse_csr.values, msg.dtype, what)
    crow = _read_indices(msg.sparse_csr.crow_indices, f"{what}.crow_indices")
    col = _read_indices(msg.sparse_csr.col_indices, f"{what}.col_indices")
    rows, cols = shape
    if crow.size != rows + 1:
        raise ValueError(f"{what}: {crow.size} crow_indices for {rows} rows (needs {rows + 1})")
    if col.size != values.size:
        raise ValueError(f"{what}: {col.size} col_indices for {values.size} values")
    if crow[0] != 0 or crow[-1] != values.size or np.any(np.diff(crow) < 0):
        raise ValueError(
            f"{what}: crow_indices must rise from 0 to the number of values ({values.size})"
        )
    if col.size and (col.min() < 0 or col.max() >= cols):
        raise ValueError(f"{what}: a column index is outside 0..{cols - 1}")
    return values, crow, col


def decode_tensor_array(
    msg: pb.Tensor, *, pad_value: float = 0, what: str = "Tensor"
) -> npt.NDArray[Any]:
    """The dense numpy array (int64 or float32) of a ``Tensor`` proto.

    CSR tensors are expanded with ``pad_value`` in the cells they do not list. An empty
    ``shape`` reads as 1-D, as in :func:`decode_tensor`.
    """
    shape, size = _shape_and_size(msg, what)
    if msg.WhichOneof("encoding") == "sparse_csr":
        values, crow, col = _decode_csr(msg, shape, what)
        dense = np.full(shape, pad_value, dtype=values.dtype)
        rows = np.repeat(np.arange(shape[0]), np.diff(crow))
        dense[rows, col] = values
        return dense
    values = _read_values(msg.dense, msg.dtype, what)
    if not shape:
        return values
    if values.size != size:
        raise ValueError(
            f"{what}: shape {shape} needs {size} values but the tensor holds {values.size}"
        )
    return values.reshape(shape)


def csr_from_dense(array: npt.ArrayLike, *, pad_value: float = 0) -> TensorData:
    """A CSR ``TensorData`` of a 2-D array, listing every cell that differs from ``pad_value``."""
    dense = np.asarray(array)
    if dense.ndim != 2:
        raise ValueError(f"csr_from_dense needs a 2-D array, got shape {list(dense.shape)}")
    dtype = wire_dtype_for(dense)
    dense = dense.astype(_NUMPY_DTYPE[dtype])
    mask = dense != pad_value
    if dtype == "float32":
        # NaN != pad is True, so NaN cells are kept; a NaN pad keeps every non-NaN cell.
        mask = mask if not math.isnan(pad_value) else ~np.isnan(dense)
    rows, cols = np.nonzero(mask)
    crow = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=crow[1:])
    return TensorData(
        data=dense[rows, cols],
        dtype=dtype,
        shape=[int(n) for n in dense.shape],
        sparse_crow_indices=crow.tolist(),
        sparse_col_indices=cols.astype(np.int64).tolist(),
    )


def pack_batched_tensor(
    arrays: Sequence[npt.ArrayLike], *, dtype: TensorDtype | None = None
) -> pb.BatchedTensor:
    """One ``BatchedTensor`` holding one array per datum.

    The arrays may differ in their first dimension but must share their trailing shape
    (``shape[1:]``). ``dtype`` defaults to float32 if any array is floating point, else int64.
    A 0-d array is stored as a 1-element 1-D array (it reads back with shape ``[1]``).
    """
    items = [np.asarray(a) for a in arrays]
    items = [a.reshape(1) if a.ndim == 0 else a for a in items]
    if dtype is None:
        kinds = {wire_dtype_for(a) for a in items}
        dtype = "float32" if "float32" in kinds else "int64"
    trailing = tuple(items[0].shape[1:]) if items else ()
    for index, item in enumerate(items):
        wire_dtype_for(item)  # rejects strings, objects, complex numbers
        if tuple(item.shape[1:]) != trailing:
            raise ValueError(
                f"BatchedTensor: datum {index} has trailing shape {list(item.shape[1:])}, datum 0 "
                f"has {list(trailing)}; arrays with different trailing shapes need separate "
                "records"
            )
    layout = _WIRE_LAYOUT[_WRITE_DTYPE[dtype]]
    offsets = np.zeros(len(items) + 1, dtype=_INDEX_LAYOUT)
    np.cumsum([item.size * layout.itemsize for item in items], out=offsets[1:])
    data = b"".join(_to_wire_bytes(item, dtype) for item in items)
    return pb.BatchedTensor(
        data=data,
        offsets=offsets.tobytes(),
        dtype=_WRITE_DTYPE[dtype],  # type: ignore[arg-type]
        trailing_shape=[int(n) for n in trailing],
    )


def unpack_batched_tensor(
    msg: pb.BatchedTensor, *, what: str = "BatchedTensor"
) -> list[npt.NDArray[Any]]:
    """The per-datum arrays of a ``BatchedTensor``, widened, shaped ``[n, *trailing_shape]``."""
    public = public_dtype(msg.dtype, what)
    layout = _WIRE_LAYOUT[msg.dtype]
    trailing = [int(n) for n in msg.trailing_shape]
    if any(n < 0 for n in trailing):
        raise ValueError(f"{what}: negative dimension in trailing_shape {trailing}")
    row_size = math.prod(trailing)
    offsets = _read_indices(msg.offsets, f"{what}.offsets")
    if offsets.size == 0:
        if msg.data:
            raise ValueError(f"{what}: data without offsets")
        return []
    if np.any(np.diff(offsets) < 0) or offsets[0] < 0 or offsets[-1] > len(msg.data):
        raise ValueError(
            f"{what}: offsets must be non-decreasing byte positions within data "
            f"({len(msg.data)} bytes)"
        )
    if np.any(offsets % layout.itemsize):
        raise ValueError(
            f"{what}: an offset is not a multiple of the {_dtype_name(msg.dtype)} size "
            f"({layout.itemsize} bytes)"
        )
    values = _read_values(msg.data, msg.dtype, what)
    bounds = (offsets // layout.itemsize).tolist()
    result: list[npt.NDArray[Any]] = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        count = end - start
        if row_size == 0:
            if count:
                raise ValueError(
                    f"{what}: datum {index} has values but trailing_shape {trailing} holds none"
                )
            result.append(np.zeros([0, *trailing], dtype=_NUMPY_DTYPE[public]))
            continue
        if count % row_size:
            raise ValueError(
                f"{what}: datum {index} has {count} values, not a multiple of trailing_shape "
                f"{trailing}"
            )
        result.append(values[start:end].reshape([count // row_size, *trailing]).copy())
    return result

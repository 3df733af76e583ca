"""TensorData: a dense or CSR-sparse int64/float32 array on the wire."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from ._base import WireModel

TensorDtype = Literal["int64", "float32"]

_NUMPY_DTYPES: dict[str, type[np.generic]] = {"int64": np.int64, "float32": np.float32}

# Inputs whose raw Python lists become int64; everything else becomes float32 (PROTOCOL §3.2).
_INT_KEYS = frozenset({"target_tokens"})


class TensorData(WireModel):
    """A flat array of numbers with a dtype and optional shape, or a 2-D CSR matrix.

    The values passed as ``data`` are held in :attr:`array`, a flat, read-only numpy array of
    the declared dtype (a private copy): batches of hundreds of thousands of values then cost
    a memcpy instead of a Python list, and nothing the caller mutates later can change a
    request already submitted. :attr:`data` gives them back as a Python list, as the official
    SDK does; :meth:`to_numpy` (shaped, no copy) is the fast way to read them.

    A sparse tensor stores only ``data`` (the non-zero values) with ``sparse_crow_indices``
    (rows + 1 pointers) and ``sparse_col_indices``; the consumer fills missing cells with a
    pad value (0 unless the field says otherwise).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, serialize_by_alias=True)

    dtype: TensorDtype
    array: npt.NDArray[Any] = Field(alias="data")
    shape: list[int] | None = None
    sparse_crow_indices: list[int] | None = None
    sparse_col_indices: list[int] | None = None

    @field_validator("array", mode="plain")
    @classmethod
    def _as_flat_array(cls, value: Any, info: ValidationInfo) -> npt.NDArray[Any]:
        dtype = info.data.get("dtype")
        if dtype is None:  # the dtype itself failed validation and is reported already
            raise ValueError("data cannot be read without a valid dtype")
        if isinstance(value, (str, bytes, dict)):
            raise ValueError(
                f"data must be a flat list or array of numbers, not {type(value).__name__}"
            )
        try:
            source = np.asarray(value)
        except ValueError as exc:  # ragged nesting
            raise ValueError(f"data must be a flat list or array of numbers: {exc}") from None
        if source.ndim != 1:
            raise ValueError(
                f"data must be flat (1-D), got {source.ndim}-D; pass the dimensions in "
                "shape=..., or build it with TensorData.from_numpy(array)"
            )
        if source.size and not (source.dtype == np.bool_ or np.issubdtype(source.dtype, np.number)):
            raise ValueError(f"data must hold numbers, got {source.dtype} values")
        if (
            dtype == "int64"
            and np.issubdtype(source.dtype, np.floating)
            and not (np.all(np.isfinite(source)) and np.array_equal(source, np.trunc(source)))
        ):
            raise ValueError("dtype is int64 but data holds non-integer values")
        array = np.array(source, dtype=_NUMPY_DTYPES[dtype])
        array.flags.writeable = False
        return array

    @field_serializer("array")
    def _array_as_list(self, array: npt.NDArray[Any]) -> list[Any]:
        values: list[Any] = array.tolist()
        return values

    @property
    def data(self) -> list[Any]:
        """The values as a flat Python list (a new list on every call)."""
        return self._array_as_list(self.array)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorData):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.shape == other.shape
            and self.sparse_crow_indices == other.sparse_crow_indices
            and self.sparse_col_indices == other.sparse_col_indices
            and np.array_equal(self.array, other.array, equal_nan=self.dtype == "float32")
        )

    __hash__ = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _check_layout(self) -> TensorData:
        sparse = (self.sparse_crow_indices, self.sparse_col_indices)
        if (sparse[0] is None) != (sparse[1] is None):
            raise ValueError("sparse_crow_indices and sparse_col_indices must be given together")
        if self.is_sparse:
            assert self.sparse_crow_indices is not None and self.sparse_col_indices is not None
            if self.shape is None or len(self.shape) != 2:
                raise ValueError("a sparse TensorData needs a 2-D shape")
            if len(self.sparse_crow_indices) != self.shape[0] + 1:
                raise ValueError(
                    f"sparse_crow_indices has {len(self.sparse_crow_indices)} entries; a "
                    f"{self.shape[0]}-row matrix needs {self.shape[0] + 1}"
                )
            if len(self.sparse_col_indices) != len(self.array):
                raise ValueError("sparse_col_indices must have one entry per value in data")
        elif self.shape is not None:
            expected = int(np.prod(self.shape)) if self.shape else 1
            if expected != len(self.array):
                raise ValueError(
                    f"TensorData shape {self.shape} holds {expected} elements but data has "
                    f"{len(self.array)}"
                )
        return self

    @property
    def is_sparse(self) -> bool:
        return self.sparse_crow_indices is not None

    @classmethod
    def from_numpy(cls, array: npt.ArrayLike) -> TensorData:
        arr = np.asarray(array)
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            dtype: TensorDtype = "int64"
        elif np.issubdtype(arr.dtype, np.floating):
            dtype = "float32"
        else:
            raise TypeError(f"TensorData supports integer and float arrays, not {arr.dtype}")
        return cls(data=arr.reshape(-1), dtype=dtype, shape=list(arr.shape))

    @classmethod
    def from_torch(cls, tensor: Any) -> TensorData:
        return cls.from_numpy(tensor.detach().cpu().numpy())

    @classmethod
    def coerce(cls, key: str, value: Any) -> TensorData:
        """Turn a loss_fn_inputs value (TensorData, array, tensor, list) into TensorData."""
        if isinstance(value, TensorData):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        if hasattr(value, "detach") and hasattr(value, "numpy"):
            return cls.from_torch(value)
        if isinstance(value, np.ndarray):
            return cls.from_numpy(value)
        dtype: TensorDtype = "int64" if key in _INT_KEYS else "float32"
        arr = np.asarray(value, dtype=_NUMPY_DTYPES[dtype])
        return cls(data=arr.reshape(-1), dtype=dtype, shape=list(arr.shape))

    def to_numpy(self, pad_value: float = 0) -> npt.NDArray[Any]:
        """The dense array (sparse cells filled with ``pad_value``).

        A dense tensor comes back as a read-only view of ``data`` (no copy); call ``.copy()``
        to modify it.
        """
        np_dtype = _NUMPY_DTYPES[self.dtype]
        values = self.array
        if not self.is_sparse:
            return values.reshape(self.shape) if self.shape is not None else values
        assert self.shape is not None and self.sparse_crow_indices is not None
        assert self.sparse_col_indices is not None
        dense = np.full(self.shape, pad_value, dtype=np_dtype)
        crow = np.asarray(self.sparse_crow_indices, dtype=np.int64)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(crow))
        dense[rows, np.asarray(self.sparse_col_indices, dtype=np.int64)] = values
        return dense

    def to_torch(self, pad_value: float = 0) -> Any:
        import torch

        return torch.from_numpy(self.to_numpy(pad_value).copy())

    def tolist(self) -> list[Any]:
        result: list[Any] = self.to_numpy().tolist()
        return result

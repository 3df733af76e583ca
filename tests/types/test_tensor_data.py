"""TensorData holds a private, read-only numpy array and speaks lists on the wire."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tinkex.types import Datum, ModelInput, TensorData


def test_values_are_copied_so_later_mutation_cannot_change_a_request() -> None:
    source = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    tensor = TensorData.from_numpy(source)
    source[0] = 99.0
    assert tensor.data == [1.0, 2.0, 3.0]


def test_to_numpy_is_a_read_only_view_with_the_shape() -> None:
    tensor = TensorData.from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3))
    array = tensor.to_numpy()
    assert array.shape == (2, 3) and array.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        array[0, 0] = 5
    assert np.shares_memory(array, tensor.array)


def test_wire_form_is_a_json_list_under_data() -> None:
    tensor = TensorData(data=[1, 2, 3], dtype="int64", shape=[3])
    assert tensor.to_wire() == {"data": [1, 2, 3], "dtype": "int64", "shape": [3]}
    assert TensorData.model_validate(tensor.to_wire()) == tensor


def test_data_is_a_plain_list_of_python_numbers() -> None:
    values = TensorData(data=np.array([1, 2]), dtype="int64").data
    assert values == [1, 2] and all(type(v) is int for v in values)


@pytest.mark.parametrize(
    ("data", "dtype", "message"),
    [
        ([1.5, 2.0], "int64", "dtype is int64 but data holds non-integer values"),
        ([[1, 2], [3, 4]], "int64", r"data must be flat \(1-D\), got 2-D"),
        ("abc", "float32", "data must be a flat list or array of numbers, not str"),
        ([1, [2, 3]], "float32", "data must be a flat list or array of numbers"),
        (["a", "b"], "float32", "data must hold numbers"),
    ],
)
def test_bad_data_is_refused_with_the_reason(data: object, dtype: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TensorData.model_validate({"data": data, "dtype": dtype})


def test_integral_floats_are_accepted_as_int64() -> None:
    assert TensorData(data=[1.0, 2.0], dtype="int64").array.dtype == np.int64


def test_equality_compares_values_dtype_and_shape() -> None:
    a = TensorData(data=[1.0, float("nan")], dtype="float32")
    assert a == TensorData(data=[1.0, float("nan")], dtype="float32")
    assert a != TensorData(data=[1.0, 2.0], dtype="float32")
    assert a != TensorData(data=[1.0, float("nan")], dtype="float32", shape=[2])


def test_datum_takes_arrays_without_copying_them_into_lists() -> None:
    tokens = np.arange(5, dtype=np.int64)
    datum = Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": tokens + 1, "weights": np.ones(5, dtype=np.float64)},
    )
    assert datum.model_input.to_ints() == [0, 1, 2, 3, 4]
    assert datum.loss_fn_inputs["weights"].array.dtype == np.float32
    assert datum.loss_fn_inputs["target_tokens"].data == [1, 2, 3, 4, 5]


def test_from_ints_refuses_non_integer_ids() -> None:
    with pytest.raises(ValidationError):
        ModelInput.from_ints([1, 2.5])

"""Datum: one training example, a model input plus the loss function's inputs."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from ._base import WireModel
from .model_input import ModelInput
from .tensor_data import TensorData


class Datum(WireModel):
    """A model input and named loss inputs (``target_tokens``, ``weights``, ...).

    Values of ``loss_fn_inputs`` may be given as TensorData, numpy arrays, torch tensors or
    plain lists; lists take int64 for ``target_tokens`` and float32 otherwise.
    """

    model_input: ModelInput
    loss_fn_inputs: dict[str, TensorData]

    @field_validator("loss_fn_inputs", mode="before")
    @classmethod
    def _coerce_inputs(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {str(key): TensorData.coerce(str(key), item) for key, item in value.items()}

"""Datum: one training example, a model input plus the loss function's inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy.typing as npt
from pydantic import field_validator

from ._base import WireModel
from .model_input import ModelInput
from .tensor_data import TensorData

LossFnInput: TypeAlias = "TensorData | npt.ArrayLike | Sequence[float]"
"""What a ``loss_fn_inputs`` value may be given as (torch tensors are accepted too)."""


class Datum(WireModel):
    """A model input and named loss inputs (``target_tokens``, ``weights``, ...).

    Values of ``loss_fn_inputs`` may be given as TensorData, numpy arrays, torch tensors or
    plain lists; lists take int64 for ``target_tokens`` and float32 otherwise.
    """

    model_input: ModelInput
    loss_fn_inputs: dict[str, TensorData]

    def __init__(
        self, *, model_input: ModelInput, loss_fn_inputs: Mapping[str, LossFnInput], **extra: Any
    ) -> None:
        # Spelled out so that type checkers accept the arrays and lists the validator turns
        # into TensorData (the field itself is typed as what it holds after validation).
        fields: dict[str, Any] = {"model_input": model_input, "loss_fn_inputs": loss_fn_inputs}
        super().__init__(**fields, **extra)

    @field_validator("loss_fn_inputs", mode="before")
    @classmethod
    def _coerce_inputs(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {str(key): TensorData.coerce(str(key), item) for key, item in value.items()}

"""Finished results of forward/backward and sampling, encodable as protobuf or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinkex.protocol import (
    SequenceArrays,
    encode_forward_backward_output,
    encode_sample_response,
    topk_from_arrays,
)
from tinkex.types import SampledSequence, SampleResponse, TensorData

from .model import ForwardBackwardResult, SampleOutput


@dataclass(frozen=True)
class ForwardBackwardPayload:
    result: ForwardBackwardResult

    def to_json(self) -> dict[str, Any]:
        return {
            "loss_fn_output_type": "ArrayRecord",
            "loss_fn_outputs": [
                {name: TensorData.from_numpy(array).to_wire() for name, array in output.items()}
                for output in self.result.outputs
            ],
            "metrics": dict(self.result.metrics),
        }

    def to_protobuf(self) -> bytes | None:
        return encode_forward_backward_output(self.result.outputs, self.result.metrics)


@dataclass(frozen=True)
class SamplePayload:
    output: SampleOutput
    sequence_ids: Sequence[str]

    def to_json(self) -> dict[str, Any]:
        prompt_logprobs = self.output.prompt_logprobs
        topk = self.output.topk_prompt_logprobs
        response = SampleResponse(
            sequences=[
                SampledSequence(
                    stop_reason=seq.stop_reason,
                    tokens=seq.tokens.tolist(),
                    logprobs=seq.logprobs.tolist(),
                    sequence_id=sequence_id,
                )
                for seq, sequence_id in zip(self.output.sequences, self.sequence_ids, strict=True)
            ],
            prompt_logprobs=None if prompt_logprobs is None else _nan_to_none(prompt_logprobs),
            topk_prompt_logprobs=None if topk is None else topk_from_arrays(*topk),
        )
        return response.to_wire()

    def to_protobuf(self) -> bytes | None:
        return encode_sample_response(
            [
                SequenceArrays(tokens=s.tokens, stop_reason=s.stop_reason, logprobs=s.logprobs)
                for s in self.output.sequences
            ],
            prompt_logprobs=self.output.prompt_logprobs,
            topk_prompt_logprobs=self.output.topk_prompt_logprobs,
        )


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values.tolist()]

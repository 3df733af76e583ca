"""Helpers shared by the compute-core tests (imported as a top-level module by pytest)."""

from __future__ import annotations

import numpy as np
import torch

from tinkex.local.model import (
    BaseModel,
    DatumArrays,
    LoraSpec,
    LoraWeights,
)
from tinkex.local.model.lora import adapter_shapes

SENTENCES = (
    "The cat sat on the mat.",
    "A dog ran in the park.",
    "Birds sing at dawn, every day.",
    "Fish swim in the sea.",
)


def sft_datum(base: BaseModel, text: str) -> DatumArrays:
    """``<|bos|> text <|eos|>`` as input/target pairs with unit weights."""
    assert base.bos_token_id is not None
    ids = np.array([base.bos_token_id, *base.tokenizer.encode(text).ids, base.eos_token_ids[0]])
    return DatumArrays(
        tokens=ids[:-1],
        inputs={"target_tokens": ids[1:], "weights": np.ones(ids.size - 1, dtype=np.float32)},
    )


def random_lora(base: BaseModel, spec: LoraSpec, seed: int = 0, std: float = 0.05) -> LoraWeights:
    """Adapters with non-zero ``B`` so they visibly change the model's output."""
    generator = torch.Generator().manual_seed(seed)
    state = {
        key: torch.randn(shape, generator=generator) * std
        for key, shape in adapter_shapes(base, spec).items()
    }
    return LoraWeights.from_state_dict(base, spec, state)

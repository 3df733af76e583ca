"""Shared fixtures: the built-in base model (loaded once) and a small SFT batch over it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tinkex.local.model import BUILTIN_MODEL, BaseModel, DatumArrays, load_base_model

from .helpers import SENTENCES, sft_datum


@pytest.fixture(scope="session")
def base() -> BaseModel:
    return load_base_model(BUILTIN_MODEL)


@pytest.fixture(scope="session")
def sft_batch(base: BaseModel) -> list[DatumArrays]:
    return [sft_datum(base, s) for s in SENTENCES]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model runs best (and steadiest on a busy 2-core machine) on one thread;
    restore whatever the session had afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

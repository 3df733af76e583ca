"""Fixtures of the client tests: ``tinkex serve`` instances with a chosen fault profile."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tinkex import Datum, ModelInput

BASE_MODEL = "tinkex/tiny-llama"


def new_key() -> str:
    """A fresh API key: in open mode, a tenant of its own."""
    return f"tml-test-{uuid.uuid4().hex[:12]}"


def datum(text: str) -> Datum:
    tokens = list(text.encode())
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``serve(faults="k=v,...", **server_settings)`` starts a local server for this test.

    Without ``api_keys`` the server is in open mode: every ``tml-`` key is its own tenant.
    Each server gets its own data directory and port; all stop when the test ends.
    """
    pytest.importorskip("torch")
    from tinkex.local import FaultProfile, LocalServer, ServerConfig

    counter = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(faults: str = "", **settings: Any) -> LocalServer:
            config = ServerConfig(
                port=0,
                data_dir=tmp_path / f"server-{next(counter)}",
                faults=FaultProfile.load(faults) if faults else FaultProfile(),
                **settings,
            )
            return stack.enter_context(LocalServer(config))

        yield start

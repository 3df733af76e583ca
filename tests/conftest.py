"""Fixtures shared by the whole suite: a real local server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TINKER_TELEMETRY", "0")

API_KEY = "tml-tinkex-test-key"


@pytest.fixture(scope="session")
def server_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tinkex-serve")


@pytest.fixture(scope="session")
def local_server(server_data_dir: Path) -> Iterator[object]:
    """One ``tinkex serve`` for the session, accepting only :data:`API_KEY`."""
    pytest.importorskip("torch")
    from tinkex.local import LocalServer, ServerConfig

    config = ServerConfig(port=0, data_dir=server_data_dir, api_keys=frozenset({API_KEY}))
    with LocalServer(config) as server:
        yield server


@pytest.fixture(scope="session")
def base_url(local_server: object) -> str:
    url: str = local_server.url  # type: ignore[attr-defined]
    return url

"""Fixtures of the reporter tests: local servers and what they recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.conftest import serve

__all__ = ["batches_of", "events_of", "open_server", "serve"]


@pytest.fixture(scope="package")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``tinkex serve`` in open mode for these tests: every ``tml-`` key is a tenant."""
    pytest.importorskip("torch")
    from tinkex.local import LocalServer, ServerConfig

    data_dir: Path = tmp_path_factory.mktemp("reporting-serve")
    with LocalServer(ServerConfig(port=0, data_dir=data_dir)) as server:
        yield server


def batches_of(server: Any, api_key: str, session_id: str | None = None) -> list[dict[str, Any]]:
    """The telemetry batches ``server`` accepted from ``api_key``'s tenant, oldest first."""
    params = {} if session_id is None else {"session_id": session_id}
    response = httpx.get(
        f"{server.url}/api/v1/local/telemetry_events",
        headers={"X-API-Key": api_key},
        params=params,
        timeout=10,
    )
    response.raise_for_status()
    batches: list[dict[str, Any]] = response.json()["batches"]
    return batches


def events_of(server: Any, api_key: str, session_id: str | None = None) -> list[dict[str, Any]]:
    """Every accepted event of the tenant (or session), in the order they were received."""
    return [event for batch in batches_of(server, api_key, session_id) for event in batch["events"]]

"""Fixtures for the transport tests: a pool registry per test, faulty servers, recorders."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY
from tinkex import telemetry
from tinkex.config import Config
from tinkex.transport import RETRY_ATTEMPT_EVENT, PoolRegistry, RetryPolicy, Transport

NO_WAIT = RetryPolicy(initial_delay=0.0, max_delay=0.0, max_retry_after=0.0)
"""Retries without waiting, so retry-heavy tests stay fast (delays are tested separately)."""

Events = list[tuple[str, dict[str, Any], dict[str, Any]]]


@pytest.fixture(autouse=True)
def _no_leaked_handlers() -> Iterator[None]:
    before = {info.id for info in telemetry.list_handlers()}
    yield
    leaked = [info.id for info in telemetry.list_handlers() if info.id not in before]
    for handler_id in leaked:
        telemetry.detach(handler_id)
    assert not leaked, f"telemetry handlers left attached: {leaked}"


@pytest.fixture
async def pools() -> AsyncIterator[PoolRegistry]:
    registry = PoolRegistry()
    yield registry
    await registry.aclose()


@pytest.fixture
def retries() -> Iterator[Events]:
    """Every ``tinkex.retry.attempt`` event emitted during the test."""
    with telemetry.capture(RETRY_ATTEMPT_EVENT) as events:
        yield events


@pytest.fixture
def faulty(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh ``tinkex serve`` with the fault profile given as the indirect parameter."""
    pytest.importorskip("torch")
    from tinkex.local import FaultProfile, LocalServer, ServerConfig

    config = ServerConfig(port=0, data_dir=tmp_path, faults=FaultProfile.load(request.param))
    with LocalServer(config) as server:
        yield server


@dataclass
class Sent:
    """Requests as they left the client (an httpx ``request`` event hook)."""

    requests: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def header(self, name: str) -> list[str | None]:
        return [r.headers.get(name) for r in self.requests]


def record_requests(pools: PoolRegistry, config: Config) -> Sent:
    """Hook a recorder onto the pooled client ``config`` will use."""
    sent = Sent()
    pools.client_for(config).event_hooks["request"].append(sent)
    return sent


def make_transport(
    pools: PoolRegistry, base_url: str, *, api_key: str = API_KEY, **overrides: Any
) -> Transport:
    config = Config(api_key=api_key, base_url=base_url, **overrides)
    return Transport(config, pools, retry_policy=NO_WAIT)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def mock_client(handler: Callable[[httpx.Request], Any]) -> httpx.AsyncClient:
    """An injected client for protocol corners the real server cannot produce."""
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))

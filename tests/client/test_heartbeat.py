"""Session heartbeats: a warning after a silence, and an end when the server says 410."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from tests.client.conftest import new_key
from tinkex import Config, telemetry
from tinkex.actors.io_loop import LoopContext
from tinkex.actors.session_manager import HeartbeatJob
from tinkex.transport import PoolRegistry


def _run_heartbeats(url: str, key: str, session_id: str, until: threading.Event) -> HeartbeatJob:
    """Run one heartbeat job (every 10 ms, warning after 50 ms) until ``until`` or its end."""
    job = HeartbeatJob(
        config=Config(api_key=key, base_url=url, max_retries=0),
        session_id=session_id,
        interval=0.01,
        warn_after=0.05,
    )

    async def main() -> None:
        pools = PoolRegistry()
        task = asyncio.create_task(job.run(LoopContext(pools)))
        deadline = asyncio.get_running_loop().time() + 20.0
        while not task.done() and not until.is_set():
            assert asyncio.get_running_loop().time() < deadline, "heartbeats never settled"
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pools.aclose()

    asyncio.run(main())
    return job


def _session(url: str, key: str) -> str:
    import httpx

    response = httpx.post(
        f"{url}/api/v1/create_session", json={"sdk_version": "0.38.0"}, headers={"X-API-Key": key}
    )
    session_id: str = response.json()["session_id"]
    return session_id


def test_failing_heartbeats_warn_once(serve: Callable[..., Any]) -> None:
    server = serve("heartbeat_fail_rate=1")
    key = new_key()
    warned = threading.Event()
    warnings: list[dict[str, Any]] = []

    def on_warning(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        warnings.append(metadata)
        warned.set()

    telemetry.attach("test-heartbeat-warning", "tinkex.session.heartbeat_warning", on_warning)
    try:
        session_id = _session(server.url, key)
        job = _run_heartbeats(server.url, key, session_id, warned)
    finally:
        telemetry.detach("test-heartbeat-warning")
    assert warned.is_set()
    assert warnings == [{"session_id": session_id}]
    assert job.warned


def test_heartbeats_stop_when_the_session_has_ended(serve: Callable[..., Any]) -> None:
    import httpx

    server = serve()
    key = new_key()
    session_id = _session(server.url, key)
    httpx.post(
        f"{server.url}/api/v1/sessions/{session_id}/finish",
        json={"reason": {"type": "success"}},
        headers={"X-API-Key": key},
    )
    job = _run_heartbeats(server.url, key, session_id, threading.Event())
    assert job.result.done(), "a 410 ends the heartbeat job"

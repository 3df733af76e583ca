"""Session heartbeats: a warning after a silence, and an end when the server says 410."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.client.conftest import new_key
from tinkex import Config, telemetry
from tinkex.actors.io_loop import LoopContext
from tinkex.actors.session_manager import HeartbeatJob
from tinkex.transport import PoolRegistry


def _run_heartbeats(url: str, key: str, session_id: str, stop_on: str | None) -> HeartbeatJob:
    """Run one heartbeat job (every 10 ms, warning after 50 ms) until it ends by itself or,
    when ``stop_on`` names a telemetry event, until that event is emitted."""
    job = HeartbeatJob(
        config=Config(api_key=key, base_url=url, max_retries=0),
        session_id=session_id,
        interval=0.01,
        warn_after=0.05,
    )

    async def main() -> None:
        pools = PoolRegistry()
        seen = asyncio.Event()  # the job emits on this loop's thread, so set() is safe here
        if stop_on is not None:
            telemetry.attach("test-heartbeat-stop", stop_on, lambda *_: seen.set())
        task = asyncio.create_task(job.run(LoopContext(pools)))
        waiter = asyncio.create_task(seen.wait())
        try:
            await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop_on is not None:
                telemetry.detach("test-heartbeat-stop")
            for pending in (task, waiter):
                pending.cancel()
            await asyncio.gather(task, waiter, return_exceptions=True)
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
    warnings: list[dict[str, Any]] = []
    telemetry.attach(
        "test-heartbeat-warning",
        "tinkex.session.heartbeat_warning",
        lambda event, measurements, metadata: warnings.append(metadata),
    )
    try:
        session_id = _session(server.url, key)
        job = _run_heartbeats(server.url, key, session_id, "tinkex.session.heartbeat_warning")
    finally:
        telemetry.detach("test-heartbeat-warning")
    assert warnings == [{"session_id": session_id}]
    assert job.warned and not job.result.done()


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
    job = _run_heartbeats(server.url, key, session_id, None)
    assert job.result.done(), "a 410 ends the heartbeat job"


def test_a_session_finished_between_heartbeats_gets_no_more(serve: Callable[..., Any]) -> None:
    # close() completes the job while it sleeps, then finishes the session: a heartbeat sent
    # after that would get a 410 and a "session has ended on the server" warning.
    import httpx

    server = serve()
    key = new_key()
    session_id = _session(server.url, key)
    config = Config(api_key=key, base_url=server.url, max_retries=0)
    job = HeartbeatJob(config=config, session_id=session_id, interval=1.0)
    expired: list[object] = []
    telemetry.attach(
        "test-heartbeat-expired", "tinkex.session.expired", lambda *e: expired.append(e)
    )

    async def main() -> None:
        pools = PoolRegistry()
        task = asyncio.create_task(job.run(LoopContext(pools)))
        await asyncio.sleep(0)  # the job is in its first sleep
        job.result.set_result(None)
        finish = f"{server.url}/api/v1/sessions/{session_id}/finish"
        body = {"reason": {"type": "success"}}
        await asyncio.to_thread(httpx.post, finish, json=body, headers={"X-API-Key": key})
        await asyncio.wait_for(task, timeout=20)
        await pools.aclose()

    try:
        asyncio.run(main())
    finally:
        telemetry.detach("test-heartbeat-expired")
    assert expired == [], "a heartbeat went out after the session was finished"

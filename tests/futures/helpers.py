"""Helpers for the futures tests: senders, a scripted poll server, a sleep recorder."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.conftest import API_KEY
from tinkex.errors import APIConnectionError, APITimeoutError
from tinkex.futures import RetrieveSender

MOCK_BASE = "http://tinker.test/api/v1/"


def http_sender(client: httpx.AsyncClient) -> RetrieveSender:
    """The smallest honest sender: one POST, no retries, transport failures mapped."""

    async def send(
        body: dict[str, Any], headers: Mapping[str, str], timeout: float
    ) -> httpx.Response:
        try:
            return await client.post(
                "retrieve_future", json=body, headers=dict(headers), timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"retrieve_future timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"retrieve_future failed: {exc!r}") from exc

    return send


def real_client(base_url: str) -> httpx.AsyncClient:
    """An AsyncClient for ``tinkex serve`` with the test API key and TCP_NODELAY."""
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    return httpx.AsyncClient(
        base_url=base_url + "/api/v1/",
        headers={"X-API-Key": API_KEY},
        transport=transport,
        timeout=60,
    )


class Recorder:
    """Wraps a sender and keeps every poll's body, headers and answer."""

    def __init__(self, send: RetrieveSender) -> None:
        self._send = send
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.responses: list[httpx.Response] = []

    async def __call__(
        self, body: dict[str, Any], headers: Mapping[str, str], timeout: float
    ) -> httpx.Response:
        self.bodies.append(dict(body))
        self.headers.append(dict(headers))
        response = await self._send(body, headers, timeout)
        self.responses.append(response)
        return response

    @property
    def statuses(self) -> list[int]:
        return [r.status_code for r in self.responses]


Answer = httpx.Response | Exception | Callable[[], Any]


class ScriptedServer:
    """Answers ``retrieve_future`` polls from a script, over ``httpx.MockTransport``.

    Each answer is a response, an exception to raise (``httpx.ConnectError`` ...), or a
    coroutine function awaited to produce the response. After the script the last answer
    repeats.
    """

    def __init__(self, *answers: Answer) -> None:
        self.answers: deque[Answer] = deque(answers)
        self.requests: list[httpx.Request] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.popleft() if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )
        result = await answer()
        assert isinstance(result, httpx.Response)
        return result

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    @asynccontextmanager
    async def sender(self) -> AsyncIterator[RetrieveSender]:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(self.handle), base_url=MOCK_BASE
        ) as client:
            yield http_sender(client)


class SleepRecorder:
    """An injectable ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def try_again(state: str | None = "active", reason: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"type": "try_again", "request_id": "req-1"}
    if state is not None:
        body["queue_state"] = state
    if reason is not None:
        body["queue_state_reason"] = reason
    return httpx.Response(200, json=body)


def metadata_only(size: int) -> httpx.Response:
    return httpx.Response(200, json={"status": "complete_metadata", "response_payload_size": size})


def optim_result(value: float = 1.5) -> httpx.Response:
    return httpx.Response(200, json={"metrics": {"grad_norm:mean": value}})

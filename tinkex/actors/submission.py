"""Submitting a request that answers with a promise, and polling that promise to its end.

Shared by the training and sampling jobs: one :class:`Submission` is one POST of a
long-running operation; :func:`await_result` polls its ``request_id`` with the transport
that sent it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tinkex.errors import RateLimitError
from tinkex.futures import poll_future
from tinkex.protocol import PROTOBUF_CONTENT_TYPE
from tinkex.transport import Transport
from tinkex.types import UntypedAPIFuture

from .rate_limiter import RateWindows

T = TypeVar("T")

MAX_WINDOW_ROUNDS = 30
"""How many 429 windows one submission sits out before its caller sees the RateLimitError."""


@dataclass
class Submission:
    """One POST answered by a promise; ``request_id`` is set once it was accepted."""

    path: str
    request_type: str
    seq_id: int | None
    json: dict[str, Any] | None = None
    content: bytes | None = None
    sdk_method: str | None = None
    request_id: str | None = None
    roundtrip: float | None = None

    async def submit(
        self,
        transport: Transport,
        headers: Mapping[str, str] | None = None,
        *,
        max_retries: int | None = None,
    ) -> UntypedAPIFuture:
        """POST once (with ``max_retries`` HTTP-layer retries, default the config's)."""
        started = time.monotonic()
        raw = await transport.request_json(
            "POST",
            self.path,
            json=self.json,
            content=self.content,
            content_type=PROTOBUF_CONTENT_TYPE if self.content is not None else None,
            headers=headers,
            max_retries=max_retries,
            sdk_method=self.sdk_method,
        )
        promise = UntypedAPIFuture.model_validate(raw)
        self.request_id = promise.request_id
        self.roundtrip = time.monotonic() - started
        return promise

    async def submit_in_window(
        self,
        transport: Transport,
        windows: RateWindows,
        *,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> UntypedAPIFuture:
        """Submit once the tenant's 429 window is closed; a 429 that outlives the HTTP-layer
        retries opens the window, and the same request is sent again after it."""
        tenant = transport.config.tenant
        for round_ in range(MAX_WINDOW_ROUNDS):
            await windows.wait(tenant)
            try:
                return await self.submit(transport, headers, max_retries=max_retries)
            except RateLimitError as exc:
                if round_ == MAX_WINDOW_ROUNDS - 1:
                    raise
                seconds = exc.retry_after if exc.retry_after and exc.retry_after <= 60 else 1.0
                windows.backoff(tenant, seconds, reason=f"{self.path} 429")
        raise AssertionError("unreachable")


def retrieve_sender(
    transport: Transport,
) -> Callable[[dict[str, Any], Mapping[str, str], float], Any]:
    async def send(
        body: dict[str, Any], headers: Mapping[str, str], timeout: float
    ) -> httpx.Response:
        return await transport.send_raw(
            "POST", "retrieve_future", json=body, headers=headers, timeout=timeout
        )

    return send


async def await_result(
    transport: Transport,
    submission: Submission,
    decode: Callable[[httpx.Response], T],
    *,
    expects_protobuf: bool,
    metadata: Mapping[str, Any],
) -> T:
    assert submission.request_id is not None, "poll only what was submitted"
    return await poll_future(
        retrieve_sender(transport),
        request_id=submission.request_id,
        request_type=submission.request_type,
        decode=decode,
        expects_protobuf=expects_protobuf,
        metadata=metadata,
        roundtrip_seconds=submission.roundtrip,
    )

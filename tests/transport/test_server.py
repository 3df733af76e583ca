"""Transport against a real ``tinkex serve`` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import platform
import socket
from typing import Any

import httpx
import pytest

import tinkex
from tests.conftest import API_KEY
from tinkex import telemetry
from tinkex.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
)
from tinkex.transport import HTTP_REQUEST_EVENT, PoolRegistry

from .conftest import Events, closed_port, make_transport, record_requests

BASE_MODEL = "tinkex/tiny-llama"
TELEMETRY_BATCH = (
    b'{"events": [], "platform": "p", "sdk_version": "v", "session_id": "s", "process_uuid": "u"}'
)


async def _create_model(transport: Any) -> Any:
    session = await transport.request_json(
        "POST",
        "create_session",
        json={"tags": [], "user_metadata": {}, "sdk_version": "0.38.0"},
    )
    return await transport.request_json(
        "POST",
        "create_model",
        json={"session_id": session["session_id"], "model_seq_id": 0, "base_model": BASE_MODEL},
    )


def _injected(server: Any, name: str) -> int:
    count: int = server.service.faults.injected[name]
    return count


# --- a successful call and its headers -------------------------------------------------------


async def test_json_call_sends_the_protocol_headers(base_url: str, pools: PoolRegistry) -> None:
    transport = make_transport(
        pools,
        base_url,
        cf_access_client_id="cf-id",
        cf_access_client_secret="cf-secret-value",
        default_headers={"X-Custom": "yes", "x-api-key": "tml-must-not-win"},
    )
    sent = record_requests(pools, transport.config)

    body = await transport.request_json(
        "POST",
        "client/config",
        json={"sdk_version": "0.38.0"},
        sdk_method="ServiceClient.create_lora_training_client",
    )

    assert isinstance(body, dict) and body["pjwt_auth_enabled"] is False
    (request,) = sent.requests
    headers = request.headers
    assert str(request.url) == base_url + "/api/v1/client/config"
    assert request.content == b'{"sdk_version":"0.38.0"}'
    assert headers["x-api-key"] == API_KEY
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"tinkex/{tinkex.__version__} (tinker-compatible 0.38.0)"
    assert headers["x-stainless-package-version"] == "0.38.0"
    assert headers["x-stainless-os"] in ("Linux", "MacOS", "Windows", "FreeBSD", "OpenBSD")
    assert headers["x-stainless-arch"] in ("x64", "arm64", "arm", "x32")
    assert headers["x-stainless-runtime"] == platform.python_implementation()
    assert headers["x-stainless-runtime-version"] == platform.python_version()
    assert headers["x-stainless-async"] == "async:asyncio"
    assert headers["x-stainless-retry-count"] == "0"
    assert headers["x-stainless-read-timeout"] == "60"
    assert headers["x-idempotency-key"].startswith("tinkex-retry-")
    assert headers["x-sdk-version"] == "0.38.0"
    assert headers["x-sdk-method"] == "ServiceClient.create_lora_training_client"
    assert headers["cf-access-client-id"] == "cf-id"
    assert headers["cf-access-client-secret"] == "cf-secret-value"
    assert headers["x-custom"] == "yes"
    assert headers.get_list("x-api-key") == [API_KEY]


async def test_get_has_no_idempotency_key_and_call_headers_override(
    base_url: str, pools: PoolRegistry
) -> None:
    transport = make_transport(pools, base_url, sdk_version="0.39.1")
    sent = record_requests(pools, transport.config)

    await transport.request_json("GET", "get_server_capabilities", timeout=12.5)
    await transport.request(
        "POST", "telemetry", content=TELEMETRY_BATCH, content_type="application/json",
        headers={"Accept": "application/x-protobuf", "X-Idempotency-Key": "mine"},
    )  # fmt: skip

    get, post = sent.requests
    assert "x-idempotency-key" not in get.headers and "content-type" not in get.headers
    assert "x-sdk-method" not in get.headers
    assert get.headers["x-stainless-read-timeout"] == "12.5"
    assert get.headers["x-stainless-package-version"] == "0.39.1"
    assert post.headers["accept"] == "application/x-protobuf"
    assert post.headers["x-idempotency-key"] == "mine"


async def test_path_parameters_are_sent_raw(base_url: str, pools: PoolRegistry) -> None:
    transport = make_transport(pools, base_url)
    sent = record_requests(pools, transport.config)
    with pytest.raises(NotFoundError):
        await transport.request("GET", "training_runs/abc:train:0/checkpoints", max_retries=0)
    assert sent.requests[0].url.raw_path == b"/api/v1/training_runs/abc:train:0/checkpoints"


async def test_pooled_connections_set_tcp_nodelay(base_url: str, pools: PoolRegistry) -> None:
    transport = make_transport(pools, base_url)
    flags: list[int] = []

    async def inspect(response: httpx.Response) -> None:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    pools.client_for(transport.config).event_hooks["response"].append(inspect)
    await transport.request("GET", "healthz")
    assert flags and flags[0] != 0


# --- errors from the server ------------------------------------------------------------------


async def test_wrong_key_is_an_authentication_error_without_the_key(
    base_url: str, pools: PoolRegistry, retries: Events
) -> None:
    wrong = "tml-wrong-secret-key-0123456789"
    transport = make_transport(pools, base_url, api_key=wrong)
    with pytest.raises(AuthenticationError) as caught:
        await transport.request("POST", "client/config", json={"sdk_version": "0.38.0"})
    error = caught.value
    assert error.status_code == 401
    assert "invalid API key" in str(error)
    assert "TINKER_API_KEY" in str(error)
    assert error.request is not None and error.request.method == "POST"
    for text in (
        str(error),
        repr(error),
        repr(error.body),
        repr(error.headers),
        repr(error.request),
    ):
        assert wrong not in text
    assert retries == [], "a 401 is not retried"


async def test_unknown_endpoint_is_not_found(base_url: str, pools: PoolRegistry) -> None:
    transport = make_transport(pools, base_url)
    with pytest.raises(NotFoundError) as caught:
        await transport.request("POST", "no_such_endpoint", json={})
    assert caught.value.status_code == 404
    assert "no endpoint POST /api/v1/no_such_endpoint" in str(caught.value)
    assert caught.value.body == {"detail": "no endpoint POST /api/v1/no_such_endpoint"}


# --- retries against a faulty server ---------------------------------------------------------


@pytest.mark.parametrize("faulty", ["submit_5xx_rate=1"], indirect=True)
async def test_persistent_5xx_exhausts_the_budget_with_one_idempotency_key(
    faulty: Any, pools: PoolRegistry, retries: Events
) -> None:
    transport = make_transport(pools, faulty.url, max_retries=4)
    sent = record_requests(pools, transport.config)

    with pytest.raises(InternalServerError) as caught:
        await transport.request("POST", "unload_model", json={"model_id": "m"})

    assert caught.value.status_code == 503
    assert "fault injection: service unavailable" in str(caught.value)
    assert "after 5 attempts" in str(caught.value)
    assert [m["attempt"] for _, _, m in retries] == [1, 2, 3, 4]
    assert {(m["reason"], m["status"]) for _, _, m in retries} == {("status", 503)}
    keys = sent.header("x-idempotency-key")
    assert len(keys) == 5 and len(set(keys)) == 1 and keys[0] is not None
    assert sent.header("x-stainless-retry-count") == ["0", "1", "2", "3", "4"]
    assert _injected(faulty, "submit_5xx_rate") == 5


@pytest.mark.parametrize("faulty", ["submit_5xx_rate=0.5,seed=1"], indirect=True)
async def test_intermittent_5xx_eventually_succeeds(
    faulty: Any, pools: PoolRegistry, retries: Events
) -> None:
    transport = make_transport(pools, faulty.url)
    promise = await _create_model(transport)
    assert "request_id" in promise
    assert len(retries) == _injected(faulty, "submit_5xx_rate") >= 1


@pytest.mark.parametrize("faulty", ["submit_drop_rate=0.5,seed=1"], indirect=True)
async def test_dropped_answer_is_retried_as_a_connection_error(
    faulty: Any, pools: PoolRegistry, retries: Events
) -> None:
    transport = make_transport(pools, faulty.url)
    promise = await _create_model(transport)
    assert "request_id" in promise
    assert len(retries) == _injected(faulty, "submit_drop_rate") >= 1
    assert {m["reason"] for _, _, m in retries} == {"connection"}


@pytest.mark.parametrize("faulty", ["submit_drop_rate=1"], indirect=True)
async def test_always_dropped_answer_ends_in_connection_error(
    faulty: Any, pools: PoolRegistry, retries: Events
) -> None:
    transport = make_transport(pools, faulty.url, max_retries=2)
    with pytest.raises(APIConnectionError) as caught:
        await _create_model(transport)
    assert not isinstance(caught.value, APITimeoutError)
    assert "after 3 attempts" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    assert [m["reason"] for _, _, m in retries] == ["connection", "connection"]


async def test_unreachable_server_fails_fast_with_advice(
    pools: PoolRegistry, retries: Events
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    transport = make_transport(pools, url, max_retries=2)
    with (
        telemetry.capture(HTTP_REQUEST_EVENT + ".exception") as failures,
        pytest.raises(APIConnectionError) as caught,
    ):
        await transport.request("POST", "client/config", json={})
    message = str(caught.value)
    assert url in message and "server is running" in message and "TINKER_BASE_URL" in message
    assert [m["reason"] for _, _, m in retries] == ["connection", "connection"]
    assert [m["attempt"] for _, _, m in failures] == [0, 1, 2]
    assert all(isinstance(m["reason"], APIConnectionError) for _, _, m in failures)


# --- telemetry -------------------------------------------------------------------------------


async def test_http_span_events_carry_measurements_and_no_secret(
    base_url: str, pools: PoolRegistry
) -> None:
    transport = make_transport(
        pools, base_url, cf_access_client_secret="cf-very-secret", default_headers={"A": "b"}
    )
    prefix = HTTP_REQUEST_EVENT
    with telemetry.capture(prefix + ".start", prefix + ".stop", prefix + ".exception") as events:
        await transport.request("POST", "client/config", json={"sdk_version": "0.38.0"})

    assert [name for name, _, _ in events] == [prefix + ".start", prefix + ".stop"]
    (_, start_m, start_md), (_, stop_m, stop_md) = events
    assert "system_time" in start_m
    expected = {"method": "POST", "path": "/api/v1/client/config", "attempt": 0}
    assert expected.items() <= start_md.items()
    assert start_md["base_url"] == base_url
    assert isinstance(stop_m["duration"], int) and stop_m["duration"] > 0
    assert stop_m["status"] == 200
    assert stop_md["status"] == 200
    for text in (repr(events),):
        assert API_KEY not in text and "cf-very-secret" not in text
    assert not any("header" in key for _, _, md in events for key in md)


# --- pools -----------------------------------------------------------------------------------


async def test_pools_are_shared_per_base_url(base_url: str, pools: PoolRegistry) -> None:
    first = make_transport(pools, base_url)
    second = make_transport(pools, base_url + "/", api_key="tml-another-tenant-key")
    other = make_transport(pools, f"http://127.0.0.1:{closed_port()}")
    named = make_transport(pools, base_url, pool_name="sampling")

    await first.request("GET", "healthz")
    await second.request("GET", "healthz")
    shared = pools.client_for(first.config)
    assert pools.client_for(second.config) is shared
    assert pools.client_for(other.config) is not shared
    assert pools.client_for(named.config) not in (shared, pools.client_for(other.config))
    assert len(pools) == 3

    await pools.aclose()
    assert shared.is_closed and pools.closed
    with pytest.raises(RuntimeError, match="closed"):
        pools.client_for(first.config)


async def test_injected_client_is_used_and_never_closed(base_url: str) -> None:
    sent: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as injected:
        registry = PoolRegistry()
        transport = make_transport(registry, base_url, http_client=injected)
        await transport.request("GET", "healthz")
        assert len(sent) == 1 and len(registry) == 0
        await registry.aclose()
        assert not injected.is_closed
        await transport.request("GET", "healthz")  # the injected client outlives the registry
        assert len(sent) == 2


async def test_registry_refuses_a_second_event_loop(base_url: str, pools: PoolRegistry) -> None:
    transport = make_transport(pools, base_url)
    await transport.request("GET", "healthz")

    async def from_another_loop() -> None:
        pools.client_for(transport.config)

    with pytest.raises(RuntimeError, match="another event loop"):
        await asyncio.to_thread(asyncio.run, from_another_loop())


# --- send_raw: one attempt, any status -------------------------------------------------------


@pytest.mark.parametrize("faulty", ["submit_5xx_rate=1"], indirect=True)
async def test_send_raw_returns_error_statuses_without_retrying(
    faulty: Any, pools: PoolRegistry, retries: Events
) -> None:
    transport = make_transport(pools, faulty.url, max_retries=5)
    sent = record_requests(pools, transport.config)

    response = await transport.send_raw("POST", "unload_model", json={"model_id": "m"}, timeout=7)

    assert response.status_code == 503 and response.json()["detail"].startswith("fault")
    assert len(sent.requests) == 1 and retries == []
    assert sent.requests[0].headers["x-stainless-read-timeout"] == "7"
    error = transport.status_error(response)
    assert isinstance(error, InternalServerError) and "fault injection" in str(error)
    assert "attempts" not in str(error)


async def test_send_raw_raises_connection_errors_at_once(
    pools: PoolRegistry, retries: Events
) -> None:
    transport = make_transport(pools, f"http://127.0.0.1:{closed_port()}", max_retries=5)
    with pytest.raises(APIConnectionError, match="server is running"):
        await transport.send_raw("POST", "retrieve_future", json={"request_id": "r"})
    assert retries == []

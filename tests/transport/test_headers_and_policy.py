"""Pure parts of the transport: platform header values, header merging, the retry policy."""

from __future__ import annotations

import random

import pytest

from tinkex.config import Config
from tinkex.transport import RetryPolicy, build_headers, should_retry_status
from tinkex.transport import headers as headers_module

KEY = "tml-header-test-key-000"


@pytest.mark.parametrize(
    ("system", "full", "expected"),
    [
        ("Linux", "Linux-6.1-x86_64-with-glibc2.36", "Linux"),
        ("Darwin", "macOS-14.1-arm64-arm-64bit", "MacOS"),
        ("Darwin", "Darwin-21.6.0-iPhone12,1-64bit", "iOS"),
        ("Windows", "Windows-10-10.0.19041-SP0", "Windows"),
        ("Linux", "Linux-5.10-android12-aarch64", "Android"),
        ("FreeBSD", "FreeBSD-14.0-RELEASE-amd64", "FreeBSD"),
        ("OpenBSD", "OpenBSD-7.4-amd64", "OpenBSD"),
        ("Haiku", "Haiku-R1", "Other:haiku-r1"),
        ("", "", "Unknown"),
    ],
)
def test_os_names(monkeypatch: pytest.MonkeyPatch, system: str, full: str, expected: str) -> None:
    monkeypatch.setattr(headers_module.platform, "system", lambda: system)
    monkeypatch.setattr(headers_module.platform, "platform", lambda: full)
    assert headers_module.os_name() == expected


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "x64"),
        ("AMD64", "x64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("armv7l", "arm"),
        ("riscv64", "other:riscv64"),
        ("", "unknown"),
    ],
)
def test_architectures(monkeypatch: pytest.MonkeyPatch, machine: str, expected: str) -> None:
    monkeypatch.setattr(headers_module.platform, "machine", lambda: machine)
    assert headers_module.architecture() == expected


def test_merge_order_keeps_the_config_key_unless_the_call_sets_one() -> None:
    config = Config(
        api_key=KEY, default_headers={"X-API-KEY": "tml-default", "Accept": "text/plain"}
    )
    built = build_headers(
        config,
        method="POST",
        attempt=2,
        read_timeout=45,
        idempotency_key="tinkex-retry-1",
        content_type="application/x-protobuf",
    )
    assert built.get_list("x-api-key") == [KEY]
    assert built["accept"] == "text/plain"  # default headers beat tinkex's own
    assert built["content-type"] == "application/x-protobuf"
    assert (built["x-stainless-retry-count"], built["x-stainless-read-timeout"]) == ("2", "45")
    assert "x-sdk-method" not in built and "cf-access-client-id" not in built

    jwt = build_headers(
        config,
        method="GET",
        attempt=0,
        read_timeout=5.5,
        idempotency_key="ignored-on-get",
        content_type=None,
        extra={"x-api-key": "eyJ.jwt"},
    )
    assert jwt.get_list("x-api-key") == ["eyJ.jwt"]
    assert "x-idempotency-key" not in jwt and jwt["x-stainless-read-timeout"] == "5.5"


@pytest.mark.parametrize(
    ("status", "headers", "retry"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (503, {}, True),
        (400, {}, False),
        (401, {}, False),
        (404, {}, False),
        (422, {}, False),
        (404, {"x-should-retry": "true"}, True),
        (503, {"x-should-retry": "false"}, False),
        (503, {"x-should-retry": "maybe"}, True),
    ],
)
def test_should_retry_status(status: int, headers: dict[str, str], retry: bool) -> None:
    assert should_retry_status(status, headers) is retry


def test_policy_delays() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    waits = [policy.backoff(k, rng) for k in range(8)]
    caps = [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert all(cap * 0.75 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))
    assert policy.delay(0, rng, {"retry-after": "60"}) == 60.0
    assert policy.delay(0, rng, {"retry-after": "0"}) <= 0.5
    assert policy.delay(0, rng, {"retry-after": "-3"}) <= 0.5
    assert policy.backoff(10_000, rng) <= 10.0
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)

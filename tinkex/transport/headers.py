"""The headers every request carries (PROTOCOL §1.3), built in one place.

Merge order, later wins (names compare case-insensitively): tinkex's own headers, the
Cloudflare Access pair, ``Config.default_headers`` (which may not set ``X-API-Key``), the
call's ``headers``, and finally ``X-API-Key`` from the config unless the call set it (a JWT
exchange passes its token that way).
"""

from __future__ import annotations

import functools
import platform
import sys
import uuid
from collections.abc import Mapping
from typing import Final

import httpx

import tinkex

from ..config import Config

__all__ = [
    "API_KEY_HEADER",
    "IDEMPOTENCY_HEADER",
    "JSON_CONTENT_TYPE",
    "architecture",
    "build_headers",
    "new_idempotency_key",
    "os_name",
    "platform_headers",
    "user_agent",
]

API_KEY_HEADER: Final = "X-API-Key"
IDEMPOTENCY_HEADER: Final = "X-Idempotency-Key"
JSON_CONTENT_TYPE: Final = "application/json"


def new_idempotency_key() -> str:
    """A fresh ``X-Idempotency-Key`` value: one per call, kept across its HTTP retries."""
    return f"tinkex-retry-{uuid.uuid4()}"


def os_name() -> str:
    """``X-Stainless-OS``: ``Linux``, ``MacOS``, ``Windows``, ..., or ``Other:<platform>``."""
    try:
        system = platform.system().lower()
        full = platform.platform().lower()
    except Exception:
        return "Unknown"
    if "iphone" in full or "ipad" in full:
        return "iOS"
    if system == "darwin":
        return "MacOS"
    if system == "windows":
        return "Windows"
    if "android" in full:
        return "Android"
    if system == "linux":
        return "Linux"
    if system == "freebsd":
        return "FreeBSD"
    if system == "openbsd":
        return "OpenBSD"
    return f"Other:{full}" if full else "Unknown"


def architecture() -> str:
    """``X-Stainless-Arch``: ``x64``, ``arm64``, ``arm``, ``x32``, or ``other:<machine>``."""
    try:
        machine = platform.machine().lower()
    except Exception:
        return "unknown"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine.startswith("arm"):
        return "arm"
    if machine in ("x86_64", "amd64"):
        return "x64"
    if sys.maxsize <= 2**32:
        return "x32"
    return f"other:{machine}" if machine else "unknown"


def user_agent(sdk_version: str) -> str:
    return f"tinkex/{tinkex.__version__} (tinker-compatible {sdk_version})"


@functools.cache
def platform_headers(sdk_version: str) -> Mapping[str, str]:
    """The per-process constant headers (computed once per ``sdk_version``)."""
    return {
        "User-Agent": user_agent(sdk_version),
        "X-Stainless-Package-Version": sdk_version,
        "X-Stainless-OS": os_name(),
        "X-Stainless-Arch": architecture(),
        "X-Stainless-Runtime": platform.python_implementation(),
        "X-Stainless-Runtime-Version": platform.python_version(),
        "X-Stainless-Async": "async:asyncio",
    }


def format_seconds(value: float) -> str:
    """``60`` for 60.0, ``2.5`` for 2.5: how the official SDK writes timeouts."""
    return str(int(value)) if float(value).is_integer() else str(value)


def build_headers(
    config: Config,
    *,
    method: str,
    attempt: int,
    read_timeout: float,
    idempotency_key: str | None,
    content_type: str | None,
    sdk_method: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> httpx.Headers:
    """All headers of one attempt of one request."""
    headers = httpx.Headers({"Accept": JSON_CONTENT_TYPE})
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(platform_headers(config.sdk_version))
    headers["x-stainless-retry-count"] = str(attempt)
    headers["x-stainless-read-timeout"] = format_seconds(read_timeout)
    if idempotency_key is not None and method.upper() != "GET":
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    if sdk_method:
        headers["x-sdk-version"] = config.sdk_version
        headers["x-sdk-method"] = sdk_method
    if config.cf_access_client_id:
        headers["CF-Access-Client-Id"] = config.cf_access_client_id
    if config.cf_access_client_secret:
        headers["CF-Access-Client-Secret"] = config.cf_access_client_secret
    for name, value in config.default_headers.items():
        if name.lower() != API_KEY_HEADER.lower():
            headers[name] = value
    if extra:
        for name, value in extra.items():
            headers[name] = value
    if API_KEY_HEADER not in headers:
        headers[API_KEY_HEADER] = config.api_key
    return headers

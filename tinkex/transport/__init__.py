"""The client's lowest layer: shared httpx pools, request headers, HTTP-layer retries.

* :class:`PoolRegistry` -- shared, tuned ``httpx.AsyncClient`` s keyed by
  ``(base_url, pool_name, proxy)``; one registry per I/O loop.
* :class:`Transport` -- ``await transport.request(method, path, ...)`` /
  ``request_json(...)``: one API call with the official SDK's headers and retries, errors
  mapped to :mod:`tinkex.errors`, telemetry spans ``tinkex.http.request.*`` and
  ``tinkex.retry.attempt`` events.
* :class:`RetryPolicy` -- backoff between retries.

See ``docs/configuration.md``.
"""

from .client import DEFAULT_MAX_RESPONSE_BYTES, HTTP_REQUEST_EVENT, RETRY_ATTEMPT_EVENT, Transport
from .headers import build_headers, new_idempotency_key, platform_headers, user_agent
from .pools import DEFAULT_CONNECT_TIMEOUT, PoolKey, PoolRegistry
from .retry import RETRYABLE_STATUSES, RetryPolicy, should_retry_status

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HTTP_REQUEST_EVENT",
    "RETRYABLE_STATUSES",
    "RETRY_ATTEMPT_EVENT",
    "PoolKey",
    "PoolRegistry",
    "RetryPolicy",
    "Transport",
    "build_headers",
    "new_idempotency_key",
    "platform_headers",
    "should_retry_status",
    "user_agent",
]

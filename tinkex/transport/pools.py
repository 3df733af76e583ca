"""Shared, tuned ``httpx.AsyncClient`` pools.

One pool per ``(base_url, pool_name, proxy)``: every :class:`~tinkex.transport.Transport`
talking to the same deployment shares connections, another deployment gets its own pool.
The pools are tuned like the official SDK's (1000 connections, 20 kept alive, 5 s connect
timeout, redirects followed) plus ``TCP_NODELAY``: without it a request on loopback can wait
~40 ms for the peer's delayed ACK.

A registry belongs to ONE asyncio event loop -- the client's I/O loop thread. httpx clients
cannot be shared between loops, so :meth:`PoolRegistry.client_for` refuses to be used from
another running loop, and the registry is not thread-safe: call it from that loop only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Final

import httpx

from ..config import DEFAULT_TIMEOUT, Config

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "PoolKey", "PoolRegistry"]

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_KEEPALIVE: Final = 20

PoolKey = tuple[str, str | None, str | None]
"""``(base_url, pool_name, proxy)``."""

_SOCKET_OPTIONS: Final = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class PoolRegistry:
    """Creates, shares and closes the ``httpx.AsyncClient`` s of one I/O loop.

    A client injected through ``Config.http_client`` is returned as is and never closed
    here; everything the registry created is closed by :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_keepalive_connections: int = DEFAULT_MAX_KEEPALIVE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if max_connections < 1 or max_keepalive_connections < 0 or connect_timeout <= 0:
            raise ValueError(
                "PoolRegistry needs max_connections >= 1, max_keepalive_connections >= 0 "
                "and connect_timeout > 0"
            )
        self.limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
        )
        self.connect_timeout = connect_timeout
        self._clients: dict[PoolKey, httpx.AsyncClient] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @staticmethod
    def key_for(config: Config) -> PoolKey:
        return (config.base_url, config.pool_name, config.proxy)

    def client_for(self, config: Config) -> httpx.AsyncClient:
        """The client to use for ``config``: its injected one, or the shared pool for its key.

        Raises:
            RuntimeError: the registry is closed, or called from a loop other than its own.
        """
        if config.http_client is not None:
            return config.http_client
        if self._closed:
            raise RuntimeError("this PoolRegistry is closed; create a new one")
        self._check_loop()
        key = self.key_for(config)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._create(config)
        return client

    def _check_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not in a loop (setup code): nothing to check yet
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "this PoolRegistry belongs to another event loop: httpx clients cannot be "
                "shared between loops; use one registry per I/O loop"
            )

    def _create(self, config: Config) -> httpx.AsyncClient:
        if self._ssl_context is None:
            # Loading the CA bundle costs ~50 ms; every pool of the registry shares one.
            self._ssl_context = httpx.create_ssl_context()
        transport = httpx.AsyncHTTPTransport(
            verify=self._ssl_context,
            limits=self.limits,
            socket_options=_SOCKET_OPTIONS,
            proxy=config.proxy,
        )
        return httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(DEFAULT_TIMEOUT, connect=self.connect_timeout),
            follow_redirects=True,
        )

    def __len__(self) -> int:
        """How many pools the registry created and still holds."""
        return len(self._clients)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close every client the registry created (idempotent); injected ones stay open."""
        self._closed = True
        clients = list(self._clients.values())
        self._clients.clear()
        results = await asyncio.gather(
            *(client.aclose() for client in clients), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result

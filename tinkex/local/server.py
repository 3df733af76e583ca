"""Run a local server in a background thread (for tests and ``--local``) or in the foreground."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType

import uvicorn

from .app import build_app
from .config import ServerConfig
from .service import LocalService

log = logging.getLogger("tinkex.local.server")

SWEEP_INTERVAL_SECONDS = 1.0
STARTUP_TIMEOUT_SECONDS = 30.0


class LocalServer:
    """A Tinker-compatible server on ``config.host``; ``port=0`` picks a free port.

    >>> with LocalServer(ServerConfig(port=0, data_dir=tmp)) as server:
    ...     client = tinker.ServiceClient(base_url=server.url, api_key="tml-local")
    """

    def __init__(self, config: ServerConfig, *, access_log: bool = False) -> None:
        self.config = config
        self._access_log = access_log
        self._socket: socket.socket | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.service: LocalService | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the server is not running; call start() first")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def _prepare(self) -> uvicorn.Server:
        if self.config.torch_threads is not None:
            import torch

            torch.set_num_threads(self.config.torch_threads)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it, responses written in two parts
        # (headers, body) wait ~40 ms for the client's delayed ACK on every request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror}; "
                "choose another --port (0 picks a free one)"
            ) from exc
        self._socket = sock
        self.service = LocalService(self.config)
        config = uvicorn.Config(
            build_app(self.service),
            log_level="warning",
            access_log=self._access_log,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._uvicorn = uvicorn.Server(config)
        sweeper = threading.Thread(target=self._sweep, name="tinkex-local-sweeper", daemon=True)
        self._threads.append(sweeper)
        sweeper.start()
        return self._uvicorn

    def start(self) -> LocalServer:
        """Start serving in a background thread; returns once requests are accepted."""
        server = self._prepare()
        assert self._socket is not None
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [self._socket]},
            name="tinkex-local-http",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()
        ready = threading.Event()

        def watch() -> None:
            while not server.started and thread.is_alive():
                self._stopping.wait(0.01)
            ready.set()

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(STARTUP_TIMEOUT_SECONDS) or not server.started:
            self.stop()
            raise RuntimeError(f"the local server did not start within {STARTUP_TIMEOUT_SECONDS} s")
        return self

    def serve_forever(self, on_ready: Callable[[LocalServer], None] | None = None) -> None:
        """Serve in this thread until interrupted (``tinkex serve``).

        ``on_ready`` runs once the port is bound, e.g. to print the URL of ``port=0``.
        """
        server = self._prepare()
        assert self._socket is not None
        if on_ready is not None:
            on_ready(self)
        try:
            server.run(sockets=[self._socket])
        finally:
            self._shutdown_service()

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        for thread in self._threads:
            if thread is not threading.current_thread():
                self._stopping.set()
                thread.join(timeout=10)
        self._threads.clear()
        self._shutdown_service()

    def _shutdown_service(self) -> None:
        self._stopping.set()
        if self.service is not None:
            self.service.close()
            self.service = None
        if self._socket is not None:
            self._socket.close()

    def _sweep(self) -> None:
        while not self._stopping.wait(SWEEP_INTERVAL_SECONDS):
            service = self.service
            if service is None:
                return
            try:
                service.sweep()
            except Exception:
                log.exception("housekeeping failed; trying again in %s s", SWEEP_INTERVAL_SECONDS)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

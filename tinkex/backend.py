"""Pick the backend a script talks to: the hosted service, or an embedded ``tinkex serve``.

Examples and ``tinkex train`` share one rule: with no API key and no base URL (neither passed
nor in ``TINKER_API_KEY`` / ``TINKER_BASE_URL``), or when ``local=True``, they start the local
backend in-process on a free loopback port and talk to it over real HTTP, exactly as they
would to the hosted service. The local backend needs the ``local`` extra (torch, starlette).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

from .clients import ServiceClient
from .config import ENV_VARS
from .errors import ConfigError

__all__ = ["LOCAL_API_KEY", "open_service", "wants_local_backend"]

LOCAL_API_KEY: Final = "tml-local-backend"
"""The key scripts use against an embedded backend (it runs in open mode: any key works)."""


def wants_local_backend(api_key: str | None = None, base_url: str | None = None) -> bool:
    """True when neither an API key nor a base URL is given, as an argument or in the env."""
    key = api_key or os.environ.get(ENV_VARS["api_key"])
    url = base_url or os.environ.get(ENV_VARS["base_url"])
    return not key and not url


@contextmanager
def open_service(
    *,
    local: bool | None = None,
    data_dir: Path | None = None,
    models: Sequence[str] = (),
    announce: Callable[[str], None] | None = None,
    faults: str | None = None,
    **config_fields: Any,
) -> Iterator[ServiceClient]:
    """Yield a :class:`ServiceClient` for the hosted service or an embedded local backend.

    ``local=None`` decides by :func:`wants_local_backend`. For a local backend, ``data_dir``
    holds its checkpoints (a temporary directory, removed at exit, when ``None``), ``models``
    are extra ``--model`` sources, ``faults`` a fault profile (``tinkex serve --faults``
    syntax, e.g. ``"paused_polls=3"``), and ``announce`` is told the URL it listens on. The
    session is finished when the block exits (``success``, ``errored`` or ``interrupted``).
    """
    if local is None:
        local = wants_local_backend(config_fields.get("api_key"), config_fields.get("base_url"))
    if faults and not local:
        raise ValueError(
            "open_service(faults=...) injects faults into the embedded local backend only; "
            "drop it when talking to a remote service"
        )
    with ExitStack() as stack:
        if local:
            try:
                from .local import FaultProfile, LocalServer, ModelSource, ServerConfig
            except ImportError as exc:
                raise ConfigError(
                    f"the embedded local backend needs the 'local' extra ({exc}); install it "
                    "with: pip install torch==2.13.0 && pip install 'tinkex[local]', or set "
                    "TINKER_API_KEY (and TINKER_BASE_URL) to use a remote Tinker service",
                    field="base_url",
                ) from exc
            if data_dir is None:
                data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            config = ServerConfig(
                port=0,
                data_dir=data_dir,
                models=tuple(ModelSource.parse(m) for m in models),
                faults=FaultProfile.load(faults) if faults else FaultProfile(),
            )
            server = stack.enter_context(LocalServer(config))
            if announce is not None:
                announce(f"started the embedded local Tinker backend at {server.url}")
            config_fields = {**config_fields, "base_url": server.url, "api_key": LOCAL_API_KEY}
        service = stack.enter_context(ServiceClient(**config_fields))
        yield service

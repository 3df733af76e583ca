"""Settings of a local server: where it listens, who may call it, what it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .faults import FaultProfile


@dataclass(frozen=True)
class ModelSource:
    """A base model to serve: ``name`` as clients ask for it, ``source`` as the loader takes it.

    ``source`` is a built-in model name or a directory holding ``config.json``,
    ``*.safetensors`` and ``tokenizer.json``.
    """

    name: str
    source: str

    @classmethod
    def parse(cls, spec: str) -> ModelSource:
        """``NAME=DIR``, a directory (named after itself) or a built-in model name."""
        name, sep, source = spec.partition("=")
        if sep:
            if not name or not source:
                raise ValueError(f"model spec {spec!r}: expected NAME=DIR with both parts")
            return cls(name=name, source=source)
        return cls(name=spec, source=spec)


@dataclass(frozen=True)
class ServerConfig:
    """Everything a :class:`~tinkex.local.server.LocalServer` needs.

    With ``api_keys`` empty the server is in open mode: any non-empty ``X-API-Key`` is
    accepted (each key is its own tenant), which is what a laptop without an account wants.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: Path.home() / ".tinkex" / "local")
    api_keys: frozenset[str] = frozenset()
    models: tuple[ModelSource, ...] = ()
    faults: FaultProfile = field(default_factory=FaultProfile)
    long_poll_seconds: float = 10.0
    """How long ``retrieve_future`` holds a poll open; well under the SDK's 45 s timeout."""
    capacity_limit: int = 256
    """Queued jobs beyond which try-again answers report ``paused_capacity``."""
    max_training_clients_per_key: int = 16
    max_samplers_per_key: int = 64
    promise_ttl_seconds: float = 3600.0
    """How long a finished result stays retrievable before ``retrieve_future`` answers 410."""
    seq_gap_timeout_seconds: float = 120.0
    """How long a model waits for a missing ``seq_id`` before running the requests after it."""
    session_timeout_seconds: float = 600.0
    """Sessions with no heartbeat for this long are expired and their models unloaded."""
    metadata_only_threshold_bytes: int | None = None
    """Results at least this large are first announced with a metadata-only answer when the
    poll allows it (``allow_metadata_only``), as the hosted service does for big payloads."""
    torch_threads: int | None = None

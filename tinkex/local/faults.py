"""Seeded fault injection for reliability tests of clients (off by default).

A profile is a JSON file or an inline ``key=value,key=value`` string, e.g.
``sample_429_rate=0.5,seed=7``. Each rate is the probability that one eligible request
gets the fault; decisions come from one seeded generator so a test run is repeatable.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class FaultProfile:
    seed: int = 0
    sample_429_rate: float = 0.0
    """``/asample`` answers 429 (with ``Retry-After``) instead of accepting the request."""
    submit_429_rate: float = 0.0
    """Submissions (training ops, model creation, sampling) answer 429 with ``Retry-After: 1``."""
    submit_5xx_rate: float = 0.0
    """Submissions (training ops, sampling) answer 503 before doing anything."""
    submit_drop_rate: float = 0.0
    """Submissions are accepted and run, then the connection drops before the answer."""
    paused_polls: int = 0
    """The first N polls of every promise answer try-again with ``paused_state``."""
    paused_state: Literal["paused_capacity", "paused_rate_limit"] = "paused_capacity"
    expire_rate: float = 0.0
    """A poll answers 410 and forgets the promise, as if it had expired."""
    slow_poll_seconds: float = 0.0
    """Extra delay before every ``retrieve_future`` answer."""
    heartbeat_fail_rate: float = 0.0
    """``session_heartbeat`` answers 503."""
    telemetry_5xx_rate: float = 0.0
    """``telemetry`` answers 503 without recording the batch."""
    telemetry_drop_rate: float = 0.0
    """``telemetry`` records the batch, then the connection drops before the answer."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.endswith("_rate"):
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"fault {f.name}={value}: a rate must be between 0 and 1")
        if self.paused_state not in ("paused_capacity", "paused_rate_limit"):
            raise ValueError(
                f"fault paused_state={self.paused_state!r}: use paused_capacity or "
                "paused_rate_limit"
            )
        if self.paused_polls < 0 or self.slow_poll_seconds < 0:
            raise ValueError("fault paused_polls and slow_poll_seconds must not be negative")

    @property
    def enabled(self) -> bool:
        return self != FaultProfile(seed=self.seed)

    @classmethod
    def load(cls, spec: str) -> FaultProfile:
        """Read a profile from a JSON file path or an inline ``k=v,k=v`` string."""
        path = Path(spec)
        if spec.endswith(".json") or path.is_file():
            try:
                raw = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"fault profile {spec!r} could not be read: {exc}") from None
            if not isinstance(raw, dict):
                raise ValueError(f"fault profile {spec!r} must hold a JSON object")
            return cls.from_mapping(raw)
        items: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"fault profile entry {part!r}: expected key=value")
            items[key.strip()] = value.strip()
        return cls.from_mapping(items)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> FaultProfile:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(
                f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for key, value in raw.items():
            kind = known[key].type
            try:
                if kind == "int":
                    values[key] = int(value)
                elif kind == "float":
                    values[key] = float(value)
                else:
                    values[key] = str(value)
            except ValueError:
                raise ValueError(f"fault setting {key}={value!r} is not a valid {kind}") from None
        return cls(**values)


class FaultInjector:
    """Draws fault decisions from a profile with one seeded, thread-safe generator."""

    def __init__(self, profile: FaultProfile) -> None:
        self.profile = profile
        self.injected: Counter[str] = Counter()
        """How many times each fault fired, by profile field name."""
        self._random = random.Random(profile.seed)
        self._lock = threading.Lock()

    def roll(self, name: str) -> bool:
        """Draw whether the fault ``name`` (a ``*_rate`` field) fires now, and count it."""
        rate: float = getattr(self.profile, name)
        if rate <= 0.0:
            return False
        with self._lock:
            fired = self._random.random() < rate
            if fired:
                self.injected[name] += 1
            return fired

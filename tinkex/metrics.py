"""In-process metrics: counters, gauges and histograms, fed by tinkex's own signals.

``import tinkex`` attaches the default registry to the HTTP, retry and future signals, so
every request made by any client of the process is counted::

    from tinkex import metrics

    metrics.snapshot()["histograms"]["http.request.duration_ms{endpoint=asample,method=POST,status=200}"]
    # {"count": 12, "sum": ..., "min": ..., "max": ..., "mean": ..., "p50": ..., "p90": ..., ...}
    metrics.counter("http.requests", endpoint="asample")   # every status
    metrics.increment("my_app.batches", dataset="train")    # your own counters
    metrics.set_gauge("my_app.queue_depth", 7)
    metrics.observe("my_app.reward", 0.83)

A series is a name plus tags; tag values are kept as strings. Histograms keep exact count,
sum, min and max, and answer quantiles from logarithmic buckets (:class:`Histogram`): each
reported quantile is within 1 % (relative) of the exact one, in bounded memory.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections.abc import Mapping
from typing import Any, Final

from . import telemetry

__all__ = [
    "DEFAULT_RELATIVE_ACCURACY",
    "HANDLER_ID",
    "QUANTILES",
    "Histogram",
    "Metrics",
    "counter",
    "endpoint_of",
    "gauge",
    "histogram",
    "increment",
    "install",
    "observe",
    "registry",
    "reset",
    "set_gauge",
    "snapshot",
    "uninstall",
]

log = logging.getLogger("tinkex.metrics")

DEFAULT_RELATIVE_ACCURACY: Final = 0.01
QUANTILES: Final[tuple[tuple[str, float], ...]] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
)
HANDLER_ID: Final = "tinkex.metrics"
DEFAULT_MAX_SERIES: Final = 2000
"""Series per kind (counters, gauges, histograms); new ones beyond are dropped and counted."""

MIN_TRACKED: Final = 1e-9
MAX_TRACKED: Final = 1e12
"""Histogram values are clamped into this range before bucketing (zero is kept exact)."""

_ID_SEGMENT: Final = re.compile(r"[0-9:.\-]|^.{33,}$")
_API_PREFIX: Final = "/api/v1/"

Tags = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Tags]


class Histogram:
    """Non-negative values in logarithmic buckets: quantiles within a relative error bound.

    Bucket ``i`` holds the values in ``(g**(i-1), g**i]`` with
    ``g = (1 + a) / (1 - a)`` for the relative accuracy ``a``; a quantile is answered with
    its bucket's representative ``2 g**i / (g + 1)``, which is within ``a`` (relative) of
    every value in the bucket. So for the exact nearest-rank quantile ``x`` of the observed
    values, the answer ``y`` satisfies ``|y - x| <= a * x`` (and lies within [min, max]);
    the lowest and highest ranks answer the exact ``min`` and ``max``.
    Values are clamped into [``MIN_TRACKED``, ``MAX_TRACKED``] (zero is counted exactly),
    which bounds the buckets to ``log(MAX/MIN) / log(g)``: about 2 400 at 1 %, and far fewer
    in practice since only non-empty buckets are stored (latencies from 1 ms to 1 min fill
    at most 550). ``count``, ``sum``, ``min``, ``max``
    are exact. Not thread-safe: :class:`Metrics` locks around it.
    """

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(
                f"relative_accuracy must be between 0 and 1 (e.g. 0.01), got {relative_accuracy}"
            )
        self.relative_accuracy = relative_accuracy
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._buckets: dict[int, int] = {}
        self._zeros = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record ``value`` (finite, non-negative)."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"histograms hold finite non-negative values (durations, sizes); got {value!r}"
            )
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value == 0:
            self._zeros += 1
            return
        clamped = min(max(value, MIN_TRACKED), MAX_TRACKED)
        index = math.ceil(math.log(clamped) / self._log_gamma)
        self._buckets[index] = self._buckets.get(index, 0) + 1

    @property
    def buckets(self) -> int:
        """Non-empty buckets held (what the memory use is proportional to)."""
        return len(self._buckets) + (1 if self._zeros else 0)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1) by nearest rank, within the accuracy bound."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is between 0 and 1, got {q}")
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        if rank == 1:
            return self.min
        if rank == self.count:
            return self.max
        seen = self._zeros
        if rank <= seen:
            return 0.0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                estimate = 2.0 * self._gamma**index / (self._gamma + 1.0)
                return min(max(estimate, self.min), self.max)
        return self.max  # unreachable: the buckets hold every non-zero value

    def summary(self) -> dict[str, float]:
        """``count``, ``sum``, ``min``, ``max``, ``mean`` and :data:`QUANTILES`."""
        if self.count == 0:
            return {"count": 0, "sum": 0.0}
        result: dict[str, float] = {
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "mean": self.sum / self.count,
        }
        for label, q in QUANTILES:
            result[label] = self.quantile(q)
        return result


class Metrics:
    """A thread-safe registry of counters, gauges and histograms (see the module docs).

    The module-level functions use one shared instance, :data:`registry`; make your own to
    keep separate books.
    """

    def __init__(
        self,
        *,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        Histogram(relative_accuracy)  # validates the accuracy now, not at the first observe
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, got {max_series}")
        self.relative_accuracy = relative_accuracy
        self.max_series = max_series
        self._counters: dict[SeriesKey, float] = {}
        self._gauges: dict[SeriesKey, float] = {}
        self._histograms: dict[SeriesKey, Histogram] = {}
        self._dropped = 0
        self._lock = threading.Lock()
        self._handler_id: str | None = None

    # recording --------------------------------------------------------------------------

    def increment(self, name: str, by: float = 1, **tags: object) -> None:
        """Add ``by`` (default 1) to the counter ``name`` with ``tags``."""
        key = _series(name, tags)
        amount = _number(by, "by")
        with self._lock:
            if self._admit(self._counters, key):
                self._counters[key] = self._counters.get(key, 0) + amount

    def set_gauge(self, name: str, value: float, **tags: object) -> None:
        """Set the gauge ``name`` with ``tags`` to ``value``."""
        key = _series(name, tags)
        number = _number(value, "value")
        with self._lock:
            if self._admit(self._gauges, key):
                self._gauges[key] = number

    def observe(self, name: str, value: float, **tags: object) -> None:
        """Record ``value`` (non-negative) in the histogram ``name`` with ``tags``."""
        key = _series(name, tags)
        number = _number(value, "value")
        if number < 0:
            raise ValueError(f"observe() records non-negative values; got {value!r} for {name!r}")
        with self._lock:
            self._observe_locked(key, number)

    def _observe_locked(self, key: SeriesKey, value: float) -> None:
        histogram = self._histograms.get(key)
        if histogram is None:
            if not self._admit(self._histograms, key):
                return
            histogram = self._histograms[key] = Histogram(self.relative_accuracy)
        histogram.add(value)

    def _count_and_time(self, counter: str, timer: str, tags: Tags, duration: object) -> None:
        """One signal: count it in ``counter`` and, if it carries a ``duration`` (ns), put
        it in the histogram ``timer`` (ms), under one lock. Called for every request on the
        I/O loop thread, so the keys come ready-made."""
        key = (counter, tags)
        milliseconds = _duration_ms(duration)
        with self._lock:
            if self._admit(self._counters, key):
                self._counters[key] = self._counters.get(key, 0) + 1
            if milliseconds is not None:
                self._observe_locked((timer, tags), milliseconds)

    def _admit(self, table: Mapping[SeriesKey, object], key: SeriesKey) -> bool:
        if key in table or len(table) < self.max_series:
            return True
        self._dropped += 1
        if self._dropped == 1:
            log.warning(
                "metrics: more than %d series of one kind; new series are dropped (too many "
                "distinct tag values?)",
                self.max_series,
            )
        return False

    # reading ----------------------------------------------------------------------------

    def counter(self, name: str, **tags: object) -> float:
        """The sum of the counters ``name`` whose tags include ``tags`` (0 if none)."""
        wanted = set(_tags(tags))
        with self._lock:
            return sum(
                value
                for (series, series_tags), value in self._counters.items()
                if series == name and wanted.issubset(series_tags)
            )

    def gauge(self, name: str, **tags: object) -> float | None:
        """The gauge ``name`` with exactly ``tags``, or ``None`` if it was never set."""
        with self._lock:
            return self._gauges.get(_series(name, tags))

    def histogram(self, name: str, **tags: object) -> dict[str, float] | None:
        """The summary of the histogram ``name`` with exactly ``tags`` (``None`` if none)."""
        with self._lock:
            histogram = self._histograms.get(_series(name, tags))
            return None if histogram is None else histogram.summary()

    def snapshot(self) -> dict[str, Any]:
        """Every series as plain data, keyed ``name{tag=value,...}`` (tags sorted)."""
        with self._lock:
            return {
                "counters": {_label(k): v for k, v in sorted(self._counters.items())},
                "gauges": {_label(k): v for k, v in sorted(self._gauges.items())},
                "histograms": {_label(k): h.summary() for k, h in sorted(self._histograms.items())},
                "dropped_series": self._dropped,
            }

    def reset(self) -> None:
        """Forget every series."""
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._histograms.clear()
            self._dropped = 0

    # feeding from signals -----------------------------------------------------------------

    def attach(self, handler_id: str = HANDLER_ID) -> None:
        """Count tinkex's HTTP, retry and future signals (see ``docs/telemetry.md``)."""
        telemetry.attach_many(handler_id, _SIGNALS, self.handle)
        self._handler_id = handler_id

    @property
    def attached(self) -> bool:
        """Whether this registry is counting signals."""
        return self._handler_id is not None

    def detach(self) -> None:
        """Stop counting signals (what was counted stays)."""
        if self._handler_id is not None:
            telemetry.detach(self._handler_id)
            self._handler_id = None

    def handle(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Telemetry handler turning one signal into counts and timings."""
        if event.startswith(_HTTP):
            status = str(metadata.get("status")) if event == _HTTP_STOP else "error"
            tags = _http_tags(
                str(metadata.get("method", "")), str(metadata.get("path", "")), status
            )
            self._count_and_time(
                "http.requests", "http.request.duration_ms", tags, measurements.get("duration")
            )
        elif event == _HTTP_RETRY:
            endpoint = endpoint_of(str(metadata.get("path", "")))
            self.increment(
                "retries", layer="http", endpoint=endpoint, reason=metadata.get("reason")
            )
        elif event == _FUTURE_RETRY:
            request_type = metadata.get("request_type")
            self.increment(
                "retries", layer="future", request_type=request_type, reason=metadata.get("reason")
            )
        elif event == _SAMPLE_RETRY:
            self.increment("retries", layer="sample", reason=metadata.get("error"))
        else:
            tags = _tags(
                {"request_type": metadata.get("request_type"), "outcome": _FUTURE_OUTCOMES[event]}
            )
            self._count_and_time(
                "futures", "future.duration_ms", tags, measurements.get("duration")
            )


_HTTP: Final = "tinkex.http.request."
_HTTP_STOP: Final = "tinkex.http.request.stop"
_HTTP_RETRY: Final = "tinkex.retry.attempt"
_FUTURE_RETRY: Final = "tinkex.future.retry"
_SAMPLE_RETRY: Final = "tinkex.retry.sample"
_FUTURE_OUTCOMES: Final = {
    "tinkex.future.complete": "ok",
    "tinkex.future.request_failed": "request_failed",
    "tinkex.future.api_error": "api_error",
    "tinkex.future.validation_error": "validation_error",
}
_SIGNALS: Final = (
    _HTTP_STOP,
    "tinkex.http.request.exception",
    _HTTP_RETRY,
    _FUTURE_RETRY,
    _SAMPLE_RETRY,
    *_FUTURE_OUTCOMES,
)


@functools.lru_cache(maxsize=4096)
def endpoint_of(path: str) -> str:
    """A request path as a low-cardinality endpoint: ``/api/v1/sessions/s-1/finish`` is
    ``sessions/{id}/finish``. After the first segment, a segment with a digit, ``:``,
    ``.`` or ``-``, or longer than 32 characters, counts as an id."""
    trimmed = path[len(_API_PREFIX) :] if path.startswith(_API_PREFIX) else path.lstrip("/")
    first, *rest = trimmed.split("/")
    return "/".join([first, *("{id}" if _ID_SEGMENT.search(s) else s for s in rest)])


@functools.lru_cache(maxsize=4096)
def _http_tags(method: str, path: str, status: str) -> Tags:
    return _tags({"method": method, "endpoint": endpoint_of(path), "status": status})


def _duration_ms(duration: object) -> float | None:
    """A signal's ``duration`` (integer ns) in ms; ``None`` if it has none that fits."""
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        return None
    milliseconds = duration / 1e6
    return milliseconds if math.isfinite(milliseconds) and milliseconds >= 0 else None


def _series(name: str, tags: Mapping[str, object]) -> SeriesKey:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a metric needs a non-empty string name, got {name!r}")
    return name, _tags(tags)


def _tags(tags: Mapping[str, object]) -> Tags:
    return tuple(sorted((key, str(value)) for key, value in tags.items()))


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return value


def _label(key: SeriesKey) -> str:
    name, tags = key
    if not tags:
        return name
    return name + "{" + ",".join(f"{k}={v}" for k, v in tags) + "}"


registry: Final = Metrics()
"""The process's default registry, used by the functions below and fed by tinkex's signals."""

increment = registry.increment
set_gauge = registry.set_gauge
observe = registry.observe
counter = registry.counter
gauge = registry.gauge
histogram = registry.histogram
snapshot = registry.snapshot
reset = registry.reset


def install() -> None:
    """Feed :data:`registry` from tinkex's signals (done on import; idempotent)."""
    if not registry.attached:
        registry.attach()


def uninstall() -> None:
    """Stop feeding :data:`registry` from signals (for code that wants no overhead)."""
    registry.detach()


install()

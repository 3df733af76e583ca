"""tinkex.metrics: histogram accuracy, the registry, and counts of real requests."""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum, new_key, serve
from tinkex import metrics
from tinkex.metrics import Histogram, Metrics, endpoint_of

__all__ = ["serve"]  # the fixture, imported for these tests


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# --- histograms ------------------------------------------------------------------------------


@pytest.mark.parametrize("accuracy", [0.01, 0.05])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_are_within_the_relative_accuracy_of_the_exact_ones(
    accuracy: float, seed: int
) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(3.0, 1.5) for _ in range(5000)] + [0.0] * 10
    histogram = Histogram(accuracy)
    for value in values:
        histogram.add(value)
    for q in (0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = nearest_rank(values, q)
        estimate = histogram.quantile(q)
        assert abs(estimate - exact) <= accuracy * exact, (q, exact, estimate)
    assert histogram.count == len(values)
    assert histogram.sum == pytest.approx(sum(values))
    assert (histogram.min, histogram.max) == (min(values), max(values))


def test_memory_is_bounded_by_the_value_range_not_the_count() -> None:
    histogram = Histogram(0.01)
    rng = random.Random(7)
    for _ in range(50_000):
        histogram.add(rng.uniform(1.0, 60_000.0))  # 1 ms .. 1 min
    gamma = 1.01 / 0.99
    assert histogram.buckets <= math.ceil(math.log(60_000.0) / math.log(gamma)) + 1
    for extreme in (1e-30, 1e30):
        histogram.add(extreme)  # clamped into the tracked range, still exact min/max
    assert (histogram.min, histogram.max) == (1e-30, 1e30)
    assert histogram.quantile(1.0) == 1e30 and histogram.quantile(0.0) == 1e-30


def test_a_single_value_and_an_empty_histogram() -> None:
    histogram = Histogram()
    assert math.isnan(histogram.quantile(0.5))
    assert histogram.summary() == {"count": 0, "sum": 0.0}
    histogram.add(42.0)
    summary = histogram.summary()
    assert summary["count"] == 1 and summary["mean"] == 42.0
    assert all(summary[p] == 42.0 for p in ("p50", "p90", "p95", "p99"))


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_histogram_refuses_values_it_cannot_hold(value: float) -> None:
    with pytest.raises(ValueError, match="finite non-negative"):
        Histogram().add(value)


def test_bad_histogram_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="relative_accuracy must be between 0 and 1"):
        Histogram(1.5)
    with pytest.raises(ValueError, match="a quantile is between 0 and 1"):
        Histogram().quantile(99)


# --- the registry ----------------------------------------------------------------------------


def test_counters_gauges_and_histograms_snapshot_as_plain_data() -> None:
    registry = Metrics()
    registry.increment("jobs", kind="train")
    registry.increment("jobs", by=2, kind="train")
    registry.increment("jobs", kind="eval")
    registry.increment("plain")
    registry.set_gauge("depth", 3, queue="a")
    registry.set_gauge("depth", 5, queue="a")
    for value in (1.0, 2.0, 3.0):
        registry.observe("reward", value, run=1)

    snapshot = registry.snapshot()

    assert snapshot["counters"] == {"jobs{kind=eval}": 1, "jobs{kind=train}": 3, "plain": 1}
    assert snapshot["gauges"] == {"depth{queue=a}": 5}
    reward = snapshot["histograms"]["reward{run=1}"]
    assert (reward["count"], reward["sum"], reward["min"], reward["max"]) == (3, 6.0, 1.0, 3.0)
    assert reward["p50"] == pytest.approx(2.0, rel=0.01)
    assert snapshot["dropped_series"] == 0
    # Reading: a counter sums the series whose tags include the ones asked for.
    assert registry.counter("jobs") == 4
    assert registry.counter("jobs", kind="train") == 3
    assert registry.counter("jobs", kind="other") == 0
    assert registry.gauge("depth", queue="a") == 5 and registry.gauge("depth") is None
    assert registry.histogram("reward", run="1") == reward  # tag values are strings
    registry.reset()
    assert registry.snapshot() == {
        "counters": {},
        "gauges": {},
        "histograms": {},
        "dropped_series": 0,
    }


def test_bad_input_names_what_was_wrong() -> None:
    registry = Metrics()
    with pytest.raises(ValueError, match="non-empty string name"):
        registry.increment("")
    with pytest.raises(ValueError, match="by must be a finite number"):
        registry.increment("x", by=math.nan)
    with pytest.raises(ValueError, match="value must be a finite number"):
        registry.set_gauge("x", "7")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="observe\\(\\) records non-negative values"):
        registry.observe("x", -2)
    with pytest.raises(ValueError, match="max_series must be at least 1"):
        Metrics(max_series=0)
    assert registry.snapshot()["counters"] == {}


def test_series_beyond_the_limit_are_dropped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Metrics(max_series=2)
    with caplog.at_level(logging.WARNING, logger="tinkex.metrics"):
        for user in range(5):
            registry.increment("requests", user=user)
        registry.increment("requests", user=0)  # an existing series still counts
    assert registry.snapshot()["counters"] == {"requests{user=0}": 2, "requests{user=1}": 1}
    assert registry.snapshot()["dropped_series"] == 3
    assert len(caplog.records) == 1


def test_concurrent_updates_are_all_counted() -> None:
    registry = Metrics()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for i in range(2000):
            registry.increment("hits")
            registry.observe("size", float(i))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.counter("hits") == 16_000
    size = registry.histogram("size")
    assert size is not None and size["count"] == 16_000


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/v1/asample", "asample"),
        ("/api/v1/client/config", "client/config"),
        ("/api/v1/sessions/session-1f2e/finish", "sessions/{id}/finish"),
        ("/api/v1/samplers/s:sample:0", "samplers/{id}"),
        (
            "/api/v1/training_runs/r-1/checkpoints/weights/final",
            "training_runs/{id}/checkpoints/weights/final",
        ),
        (
            "/api/v1/training_runs/r-1/checkpoints/weights/step_1",
            "training_runs/{id}/checkpoints/weights/{id}",
        ),
        ("/healthz", "healthz"),
    ],
)
def test_paths_become_low_cardinality_endpoints(path: str, endpoint: str) -> None:
    assert endpoint_of(path) == endpoint


# --- fed by real requests --------------------------------------------------------------------


@pytest.fixture
def counted() -> Iterator[Metrics]:
    """A registry of its own, fed by the signals while the test runs."""
    registry = Metrics()
    registry.attach("tests.metrics")
    yield registry
    registry.detach()


def test_every_request_to_the_server_is_counted_and_timed(base_url: str, counted: Metrics) -> None:
    from tests.conftest import API_KEY

    calls = 7
    before = metrics.counter("http.requests", endpoint="get_server_capabilities")
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as service:
        for _ in range(calls):
            service.get_server_capabilities().result(timeout=60)
        session = service.session_id

    ok = {"method": "GET", "endpoint": "get_server_capabilities", "status": "200"}
    assert counted.counter("http.requests", **ok) == calls
    latency = counted.histogram("http.request.duration_ms", **ok)
    assert latency is not None and latency["count"] == calls
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"]
    assert latency["p99"] <= latency["max"]
    assert counted.counter("http.requests", endpoint="create_session") == 1
    assert counted.counter("http.requests", endpoint="sessions/{id}/finish") == 1
    assert session  # the finish above was this session's
    # The default registry, attached on import, saw the same calls.
    assert metrics.registry.attached
    after = metrics.counter("http.requests", endpoint="get_server_capabilities")
    assert after - before == calls


def test_retries_and_futures_are_counted(serve: Callable[..., Any], counted: Metrics) -> None:
    server = serve("submit_5xx_rate=0.4,seed=1")
    with tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service:
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        for _ in range(3):
            training.forward_backward([datum("count me")], "cross_entropy").result(timeout=60)

    injected = server.service.faults.injected["submit_5xx_rate"]
    assert injected > 0, "the seed should inject some 503s"
    # Every injected 503 was answered, then retried once by the HTTP layer.
    assert counted.counter("http.requests", status="503") == injected
    assert counted.counter("retries", layer="http", reason="status") == injected
    assert counted.counter("futures", request_type="ForwardBackward", outcome="ok") == 3
    assert counted.counter("futures", request_type="CreateModel", outcome="ok") == 1
    timing = counted.histogram("future.duration_ms", request_type="ForwardBackward", outcome="ok")
    assert timing is not None and timing["count"] == 3


def test_a_request_that_got_no_answer_is_counted_with_status_error(
    serve: Callable[..., Any], counted: Metrics
) -> None:
    server = serve("submit_drop_rate=0.5,seed=2")  # accepted, then the connection drops
    with tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service:
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        for _ in range(3):
            training.forward_backward([datum("drop me")], "cross_entropy").result(timeout=60)

    dropped = server.service.faults.injected["submit_drop_rate"]
    assert dropped > 0, "the seed should drop some answers"
    # Each dropped answer is one tinkex.http.request.exception, then a retry that succeeds.
    assert counted.counter("http.requests", status="error") == dropped
    assert counted.counter("retries", layer="http", reason="connection") == dropped
    timed = [
        timing
        for series, timing in counted.snapshot()["histograms"].items()
        if series.startswith("http.request.duration_ms{") and "status=error" in series
    ]
    assert sum(timing["count"] for timing in timed) == dropped
    assert all(timing["min"] > 0 for timing in timed)


@pytest.mark.parametrize("duration", [None, "fast", math.nan, -5, True])
def test_a_signal_without_a_usable_duration_is_counted_but_not_timed(duration: object) -> None:
    # A handler that raised would be detached, and nothing would be counted from then on.
    registry = Metrics()
    stop = {"method": "GET", "path": "/api/v1/healthz", "status": 200}
    registry.handle("tinkex.http.request.stop", {"duration": duration}, stop)
    registry.handle("tinkex.future.complete", {"duration": duration}, {"request_type": "Sample"})
    assert registry.counter("http.requests", endpoint="healthz", status="200") == 1
    assert registry.counter("futures", request_type="Sample", outcome="ok") == 1
    assert registry.snapshot()["histograms"] == {}

"""Supervision benchmark: printed, never asserted.

    python benchmarks/supervision.py

Measures, side by side in one run (in alternating rounds), what supervision costs on top
of plain pykka:

* ask round-trip and tell throughput of one actor (pykka ``ThreadingActor`` vs
  ``SupervisedActor``, whose message loop is the one that turns failures into exit reports);
* crash-to-restarted latency: from ``tell("crash")`` to the supervisor's
  ``child_restarted`` signal for the new incarnation;
* threads and resident memory for 1,000 idle supervised actors under a DynamicSupervisor.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import threading
import time
from typing import Any

import pykka

from tinkex import telemetry
from tinkex.supervision import ChildSpec, DynamicSupervisor, Registry, SupervisedActor, Supervisor

ASKS = 5_000
TELLS = 50_000
CRASHES = 300
ROUNDS = 10
IDLE_ACTORS = 1_000
WAIT = 10.0


def echo(message: Any) -> Any:
    """The same handler for both kinds of actor, so that only the runtime differs."""
    if message == "crash":
        raise RuntimeError("benchmark crash")
    return message


class PlainEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return echo(message)


class SupervisedEcho(SupervisedActor):
    def on_receive(self, message: Any) -> Any:
        return echo(message)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ask_latencies(ref: pykka.ActorRef[Any], count: int, samples: list[float]) -> None:
    for i in range(count):
        began = time.perf_counter()
        ref.ask(i, timeout=WAIT)
        samples.append(time.perf_counter() - began)


def tell_seconds(ref: pykka.ActorRef[Any], count: int) -> float:
    began = time.perf_counter()
    for i in range(count):
        ref.tell(i)
    ref.ask("barrier", timeout=WAIT)  # FIFO: answered after every tell was handled
    return time.perf_counter() - began


def side_by_side() -> dict[str, tuple[list[float], float]]:
    """Ask latencies and tell throughput of both kinds of actor, measured in alternating
    rounds so that noise from the rest of the machine hits both alike."""
    refs: dict[str, pykka.ActorRef[Any]] = {
        "plain": PlainEcho.start(),
        "supervised": SupervisedEcho.start(),
    }
    asks: dict[str, list[float]] = {kind: [] for kind in refs}
    tell_time = dict.fromkeys(refs, 0.0)
    try:
        for _ in range(ROUNDS):
            for kind, ref in refs.items():
                ask_latencies(ref, ASKS // ROUNDS, asks[kind])
                tell_time[kind] += tell_seconds(ref, TELLS // ROUNDS)
    finally:
        for ref in refs.values():
            ref.stop(timeout=WAIT)
    return {kind: (asks[kind], TELLS / tell_time[kind]) for kind in refs}


def crash_to_restarted() -> list[float]:
    """Seconds from a crash to the new incarnation being up, over CRASHES crashes."""
    restarted = threading.Event()
    telemetry.attach(
        "benchmark.restarts",
        telemetry.SUPERVISOR_CHILD_RESTARTED,
        lambda _event, _measurements, _metadata: restarted.set(),
    )
    registry = Registry()
    samples = []
    try:
        with Supervisor.start(
            [ChildSpec("echo", SupervisedEcho)],
            max_restarts=CRASHES + 1,
            max_seconds=3600,
            registry=registry,
        ):
            for _ in range(CRASHES):
                ref = registry.lookup("echo")
                restarted.clear()
                began = time.perf_counter()
                ref.tell("crash")
                if not restarted.wait(WAIT):
                    raise RuntimeError("no restart within the wait bound")
                samples.append(time.perf_counter() - began)
    finally:
        telemetry.detach("benchmark.restarts")
    return samples


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def idle_actors() -> tuple[int, int, float, float]:
    """Extra threads and resident bytes for IDLE_ACTORS actors; seconds to start and stop."""
    threads, rss = threading.active_count(), resident_bytes()
    began = time.perf_counter()
    with DynamicSupervisor.start(shutdown=60.0) as sup:
        for i in range(IDLE_ACTORS):
            sup.start_child(ChildSpec(f"idle-{i}", SupervisedEcho))
        started = time.perf_counter() - began
        extra_threads = threading.active_count() - threads
        extra_rss = resident_bytes() - rss
        began = time.perf_counter()
    return extra_threads, extra_rss, started, time.perf_counter() - began


def main() -> None:
    # Logged tracebacks of the deliberate crashes would dominate the run; silence them.
    logging.getLogger("tinkex.supervision").setLevel(logging.CRITICAL)
    began = time.perf_counter()
    measured = side_by_side()
    (plain_asks, plain_tells), (supervised_asks, supervised_tells) = measured.values()
    restarts = crash_to_restarted()
    threads, rss, start_s, stop_s = idle_actors()

    us, ms = 1e6, 1e3
    rows = [
        ("ask round-trip, median", plain_asks, supervised_asks, 0.5, us, "µs"),
        ("ask round-trip, p99", plain_asks, supervised_asks, 0.99, us, "µs"),
    ]
    print(
        f"tinkex supervision benchmark -- pykka {importlib.metadata.version('pykka')}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'':34}{'pykka actor':>16}{'SupervisedActor':>18}{'ratio':>8}")
    for label, plain, supervised, q, scale, unit in rows:
        p, s = percentile(plain, q) * scale, percentile(supervised, q) * scale
        print(f"{label:34}{p:>13.1f} {unit}{s:>15.1f} {unit}{s / p:>7.2f}x")
    print(
        f"{'tell throughput':34}{plain_tells:>10,.0f} msg/s{supervised_tells:>12,.0f} msg/s"
        f"{supervised_tells / plain_tells:>7.2f}x"
    )
    print(f"{'crash -> restarted, median':34}{'':16}{percentile(restarts, 0.5) * ms:>15.2f} ms")
    print(f"{'crash -> restarted, p99':34}{'':16}{percentile(restarts, 0.99) * ms:>15.2f} ms")
    print(f"{f'{IDLE_ACTORS:,} idle actors: threads':34}{'':16}{threads:>+18,}")
    print(f"{f'{IDLE_ACTORS:,} idle actors: resident memory':34}{'':16}{rss / 2**20:>15.1f} MB")
    print(f"{'  per actor':34}{'':16}{rss / IDLE_ACTORS / 1024:>15.1f} KB")
    print(
        f"{f'{IDLE_ACTORS:,} idle actors: start, stop':34}{'':16}{start_s:>9.2f} s, {stop_s:.2f} s"
    )
    print(
        f"({ASKS:,} asks, {TELLS:,} tells, {CRASHES} crashes; "
        f"total {time.perf_counter() - began:.1f} s)"
    )


if __name__ == "__main__":
    main()

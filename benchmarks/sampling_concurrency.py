"""Client cost of many samples in flight: the official ``tinker`` SDK next to tinkex.

One ``tinkex serve --model tinkex/zero`` runs in its own process. ``tinkex/zero`` does no
model compute (see ``docs/local_backend.md``), so the clients, not the model, are what is
being measured. Each client then runs in a fresh process of its own, so that its peak
threads and peak memory are its own:

1. open a ``ServiceClient`` and a sampling client on ``tinkex/zero``;
2. warm up with a few samples;
3. submit ``--requests`` (1,000) ``sample`` calls at once, so up to all of them are in
   flight, and wait for every result.

Per client it reports requests/s (wall time of step 3), client CPU seconds per request
(``getrusage`` user + system of the client process over step 3), the peak number of OS
threads (``/proc/self/stat``, sampled every few ms from a monitor thread) and the peak
RSS of the process (``ru_maxrss``), with the ratios tinkex / official. The server's CPU per
request is shown for context: it shares the machine's cores with the client. Numbers are
printed, never asserted.

    python benchmarks/sampling_concurrency.py [-n 1000] [--max-tokens 16] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODEL = "tinkex/zero"
API_KEY = "tml-bench"
PROMPT = list(range(32, 64))  # 32 byte tokens
WARMUP = 8
CLIENTS = ("official", "tinkex")
WORKER_TIMEOUT = 600.0
MONITOR_INTERVAL = 0.004


# the worker: one client in its own process ------------------------------------------------------


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def _stat_fields(pid: int | str = "self") -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def _threads_and_rss_kb() -> tuple[int, int]:
    """OS threads and resident memory (kB) of this process; one cheap ``/proc`` read."""
    fields = _stat_fields()
    if fields is None:  # not Linux: Python threads only, and the peak RSS so far
        return threading.active_count(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(fields[17]), int(fields[21]) * _PAGE_KB


class PeakMonitor:
    """Samples the OS thread count and RSS of this process from a daemon thread."""

    def __init__(self) -> None:
        self.peak_threads, self.peak_rss_kb = _threads_and_rss_kb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-monitor", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(MONITOR_INTERVAL):
            threads, rss = _threads_and_rss_kb()
            self.peak_threads = max(self.peak_threads, threads)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)

    def __enter__(self) -> PeakMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Sample = Callable[[int], Any]
"""Submit sample request ``i``; returns a future with ``.result()``."""


def _official(url: str, max_tokens: int) -> tuple[Sample, Callable[[], None]]:
    import tinker
    from tinker import types

    service: Any = tinker.ServiceClient(base_url=url, api_key=API_KEY)
    sampler: Any = service.create_sampling_client(base_model=MODEL).result()
    prompt = types.ModelInput.from_ints(PROMPT)

    def sample(i: int) -> Any:
        params = types.SamplingParams(max_tokens=max_tokens, seed=i, stop=[])
        return sampler.sample(prompt, 1, params)

    return sample, lambda: service.close("success").result(timeout=30)


def _tinkex(url: str, max_tokens: int) -> tuple[Sample, Callable[[], None]]:
    import tinkex

    service = tinkex.ServiceClient(base_url=url, api_key=API_KEY)
    sampler = service.create_sampling_client(base_model=MODEL).result()
    prompt = tinkex.ModelInput.from_ints(PROMPT)

    def sample(i: int) -> Any:
        params = tinkex.SamplingParams(max_tokens=max_tokens, seed=i, stop=[])
        return sampler.sample(prompt, 1, params)

    return sample, lambda: service.close("success").result(timeout=30)


def _burst(sample: Sample, count: int, offset: int, max_tokens: int) -> tuple[float, int, str]:
    """Submit ``count`` samples at once, wait for all; (seconds to submit, errors, first)."""
    t0 = time.perf_counter()
    futures = [sample(offset + i) for i in range(count)]
    submitted = time.perf_counter() - t0
    errors = 0
    first = ""
    for future in futures:
        try:
            response = future.result()
            if len(response.sequences[0].tokens) != max_tokens:
                raise ValueError(f"{len(response.sequences[0].tokens)} tokens")
        except Exception as exc:
            errors += 1
            first = first or f"{type(exc).__name__}: {exc}"[:200]
    return submitted, errors, first


def worker(client: str, url: str, requests: int, max_tokens: int) -> dict[str, Any]:
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    with PeakMonitor() as monitor:
        started = time.perf_counter()
        sample, close = (_official if client == "official" else _tinkex)(url, max_tokens)
        _burst(sample, WARMUP, 10**6, max_tokens)
        setup = time.perf_counter() - started
        threads_before, rss_before = _threads_and_rss_kb()
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        submitted, errors, first_error = _burst(sample, requests, 0, max_tokens)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    peak_threads, peak_rss_kb = monitor.peak_threads, monitor.peak_rss_kb
    try:
        close()
    except Exception as exc:  # reported, not fatal: the numbers are already taken
        first_error = first_error or f"close: {type(exc).__name__}: {exc}"[:200]
    return {
        "client": client,
        "setup_s": setup,
        "wall_s": wall,
        "submit_s": submitted,
        "cpu_s": cpu,
        "threads_before": threads_before,
        "peak_threads": peak_threads,
        "rss_before_kb": rss_before,
        "peak_rss_kb": max(peak_rss_kb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "errors": errors,
        "first_error": first_error,
    }


# the driver: server, workers, report ------------------------------------------------------------


def _server_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux), else None."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``tinkex serve --model tinkex/zero`` in a child process, on a free port."""

    def __init__(self, data_dir: str) -> None:
        command = [sys.executable, "-m", "tinkex.cli", "serve", "--port", "0"]
        command += ["--model", MODEL, "--data-dir", data_dir, "--log-level", "warning"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        found = threading.Event()
        self.url = ""

        def drain() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                match = re.search(r"tinkex serve: (http://\S+)", line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()

        threading.Thread(target=drain, name="server-stderr", daemon=True).start()
        deadline = time.monotonic() + 60
        while not found.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tinkex serve did not start:\n" + "".join(self.lines[-20:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_worker(client: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", client, "--url", url]
    command += ["-n", str(args.requests), "--max-tokens", str(args.max_tokens)]
    env = dict(os.environ, TINKER_TELEMETRY="0")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=WORKER_TIMEOUT, env=env, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"{client} worker failed (exit {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@dataclass
class Row:
    label: str
    key: Callable[[dict[str, Any]], float]
    fmt: str
    ratio: bool = True


ROWS = [
    Row("requests/s", lambda r: r["requests"] / r["wall_s"], "{:,.0f}"),
    Row("client CPU ms/request", lambda r: 1000 * r["cpu_s"] / r["requests"], "{:.2f}"),
    Row("s to submit all", lambda r: r["submit_s"], "{:.2f}"),
    Row("peak threads", lambda r: r["peak_threads"], "{:.0f}"),
    Row("threads before the burst", lambda r: r["threads_before"], "{:.0f}"),
    Row("peak RSS MB", lambda r: r["peak_rss_kb"] / 1024, "{:.0f}"),
    Row("RSS before the burst MB", lambda r: r["rss_before_kb"] / 1024, "{:.0f}"),
    Row("server CPU ms/request", lambda r: 1000 * r["server_cpu_s"] / r["requests"], "{:.2f}"),
    Row("errors", lambda r: r["errors"], "{:.0f}", ratio=False),
]


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    header = f"{'':<28} {'official':>10} {'tinkex':>10} {'tinkex/official':>16}"
    print(header)
    print("-" * len(header))
    for row in ROWS:
        values = []
        for client in CLIENTS:
            runs = [row.key(r) for r in results[client] if r.get("server_cpu_s") is not None]
            values.append(statistics.median(runs) if runs else float("nan"))
        official, tinkex = values
        ratio = f"{tinkex / official:>16.2f}" if row.ratio and official else f"{'':>16}"
        cells = "".join(f" {row.fmt.format(v):>10}" for v in values)
        print(f"{row.label:<28}{cells} {ratio}")
    for client in CLIENTS:
        for r in results[client]:
            if r["first_error"]:
                print(f"{client}: first error: {r['first_error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=1000, help="samples (1000)")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per sample (16)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per client; median (1)")
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.requests < 1 or args.max_tokens < 1 or args.rounds < 1:
        parser.error("-n, --max-tokens and --rounds must be at least 1")
    if args.worker:
        result = worker(args.worker, args.url, args.requests, args.max_tokens)
        print(json.dumps(result | {"requests": args.requests}), flush=True)
        return

    print(
        f"sampling concurrency: {args.requests} samples in flight at once, 1 x "
        f"{args.max_tokens} tokens each, prompt {len(PROMPT)} tokens, against one "
        f"`tinkex serve --model {MODEL}` (its own process); each client in a fresh process; "
        f"{os.cpu_count()} CPU cores"
    )
    started = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="tinkex-bench-") as data_dir:
        server = Server(data_dir)
        try:
            for round_index in range(args.rounds):
                # Alternate who goes first, so a drift in background load favours neither.
                order = CLIENTS if round_index % 2 == 0 else CLIENTS[::-1]
                for client in order:
                    before = _server_cpu(server.process.pid)
                    result = run_worker(client, server.url, args)
                    after = _server_cpu(server.process.pid)
                    result["server_cpu_s"] = (
                        after - before if after is not None and before is not None else None
                    )
                    results[client].append(result)
                    print(
                        f"  {client}: {result['wall_s']:.2f} s, setup {result['setup_s']:.1f} s, "
                        f"{result['errors']} errors",
                        flush=True,
                    )
        finally:
            server.stop()
    print()
    report(results)
    print()
    print(
        "CPU and RSS are the client process's (getrusage, /proc/self/stat); they include a "
        "monitor thread that reads /proc every 4 ms (about 0.1% of a core)."
    )
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

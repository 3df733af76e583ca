"""What every command shares: backend choice, timeouts, logging, exit statuses, version."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import tinkex
from tests.cli.conftest import Invoke, fails, invoke, json_of, ok, run_tinkex
from tests.conftest import API_KEY
from tinkex.cli.main import cli as tinkex_cli
from tinkex.cli.options import Remote
from tinkex.local import FaultProfile, LocalServer, ServerConfig

MODEL = ("--base-model", "tinkex/tiny-llama")


def test_version() -> None:
    shown = ok(invoke(["version"])).stdout
    assert shown.startswith(f"tinkex {tinkex.__version__} ")
    assert ok(invoke(["--version"])).stdout == shown
    assert json_of(invoke(["version", "--json"]))["version"] == tinkex.__version__
    assert json_of(invoke(["version", "--format", "json"]))["version"] == tinkex.__version__


def test_help_and_unknown_commands() -> None:
    shown = ok(invoke(["--help"])).stdout
    for command in ("train", "run", "checkpoint", "session", "serve", "version"):
        assert command in shown
    fails(invoke(["nope"]), 2, "No such command 'nope'")
    fails(invoke(["run", "--no-such-option"]), 2, "No such option")


def test_without_key_or_url_the_embedded_backend_serves_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    data_dir = ["--data-dir", str(tmp_path / "backend")]
    output = tmp_path / "c.json"
    saved = ok(invoke(["checkpoint", *MODEL, "--output", str(output), *data_dir]))
    assert "started the embedded local Tinker backend at http://127.0.0.1:" in saved.stderr
    path = json.loads(output.read_text())["state_path"]
    # a second command, a second embedded backend, the same storage
    listed = json_of(invoke(["checkpoint", "list", "--local", *data_dir, "--json"]))
    assert path in [c["tinker_path"] for c in listed["checkpoints"]]
    sampled = ok(invoke(["run", *MODEL, "--prompt", "hi", "--max-tokens", "2", *data_dir]))
    assert "Sample 1" in sampled.stdout


def test_timeout_bounds_the_whole_command(tmp_path: Path) -> None:
    never_done = FaultProfile(paused_polls=1_000_000)
    config = ServerConfig(port=0, data_dir=tmp_path / "backend", faults=never_done)
    with LocalServer(config) as server:
        process = run_tinkex(
            [
                "checkpoint",
                *MODEL,
                "--output",
                str(tmp_path / "c.json"),
                "--timeout",
                "1",
                "--base-url",
                server.url,
                "--api-key",
                API_KEY,
            ],
            home=tmp_path,
        )
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert stdout == ""
    assert stderr.startswith(
        "error: --timeout 1 s ran out while waiting for a LoRA model of tinkex/tiny-llama (request "
    ), stderr
    assert "; raise --timeout (the server may be busy" in stderr
    assert "result()" not in stderr and "cancel()" not in stderr  # no Python API advice
    assert not (tmp_path / "c.json").exists()


def test_timeout_bounds_connecting_and_opening_the_session(tmp_path: Path) -> None:
    started = time.monotonic()
    result = invoke(
        [
            "checkpoint",
            *MODEL,
            "--output",
            str(tmp_path / "c.json"),
            "--timeout",
            "2",
            "--base-url",
            "http://127.0.0.1:1",  # nothing listens: every connection attempt is refused
            "--api-key",
            API_KEY,
        ]
    )
    elapsed = time.monotonic() - started
    fails(
        result,
        1,
        "error: --timeout 2 s ran out while waiting for an answer from the server: "
        "POST http://127.0.0.1:1/api/v1/client/config failed: ConnectError",
        "the last one at the deadline",
    )
    # the client's own retries (11 attempts) alone take about 45 s
    assert elapsed < 10, f"took {elapsed:.1f} s"


@pytest.fixture
def unanswering_url() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: every request times out.

    The local server cannot produce this for the requests ``--http-timeout`` bounds (its
    only delay knob, ``slow_poll_seconds``, delays future polls, which have a timeout of
    their own)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nothing reads
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_http_timeout_bounds_each_request(tmp_path: Path, unanswering_url: str) -> None:
    result = invoke(
        [
            "checkpoint",
            *MODEL,
            "--output",
            str(tmp_path / "c.json"),
            "--http-timeout",
            "0.3",
            "--timeout",
            "3",
            "--base-url",
            unanswering_url,
            "--api-key",
            API_KEY,
        ]
    )
    stderr = fails(
        result, 1, "--timeout 3 s ran out", "/api/v1/client/config timed out after 0.3 s"
    )
    assert "attempts" in stderr  # each request was given up on after 0.3 s and retried


def test_remote_never_shows_its_key() -> None:
    remote = Remote(
        api_key=API_KEY,
        base_url="http://127.0.0.1:8000",
        local=False,
        data_dir=None,
        timeout=None,
        http_timeout=7.5,
        output_format="table",
        log_level="warning",
    )
    assert API_KEY not in repr(remote)


def test_a_malformed_key_is_refused_without_any_of_its_characters(base_url: str) -> None:
    secret = "sk-SECRET-0123456789"
    result = invoke(["run", "list", "--base-url", base_url, "--api-key", secret])
    stderr = fails(result, 1, "must start with 'tml-'", f"a {len(secret)}-character value")
    assert "sk-" not in stderr and "SECRET" not in stderr


def test_debug_logs_go_to_stderr_without_the_key(cli: Invoke) -> None:
    result = ok(cli("session", "list", "--limit", "1", "--log-level", "debug", "--json"))
    assert "DEBUG" in result.stderr or "INFO" in result.stderr
    assert API_KEY not in result.stderr
    json.loads(result.stdout)  # the logs never mix into the results


@pytest.mark.parametrize("key_source", ["option", "environment"])
def test_api_keys_are_scrubbed_from_errors(
    base_url: str, monkeypatch: pytest.MonkeyPatch, key_source: str
) -> None:
    secret = "tml-secret-that-must-not-leak-42"
    # a base URL that embeds the key in its path makes the server's 404 message carry it
    url = f"{base_url}/{secret}"
    if key_source == "environment":
        monkeypatch.setenv("TINKER_API_KEY", secret)
        args = ["--base-url", url]
    else:
        args = ["--base-url", url, "--api-key", secret]
    result = CliRunner().invoke(tinkex_cli, ["run", "list", *args], prog_name="tinkex")
    assert result.exit_code == 1
    assert "***" in result.stderr
    assert secret not in result.stderr + result.stdout

"""``tinkex serve`` as a user runs it: a real process on a free loopback port."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import fails, invoke

KEY = "tml-cli-serve-key"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinkex.cli",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--api-key",
            KEY,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    url = None
    for line in process.stderr:  # the first lines announce the URL once the port is bound
        match = re.search(r"tinkex serve: (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    assert url is not None, "tinkex serve never announced its URL"
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def test_serve_answers_health_and_requires_its_key(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = served
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{url}/api/v1/healthz").json() == {"status": "ok"}
    denied = httpx.post(f"{url}/api/v1/client/config", json={"sdk_version": "0.38.0"})
    assert denied.status_code == 401
    allowed = httpx.post(
        f"{url}/api/v1/client/config", json={"sdk_version": "0.38.0"}, headers={"X-API-Key": KEY}
    )
    assert allowed.status_code == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None
    assert KEY not in process.stderr.read(), "the API key must never be logged"


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinkex.cli",
            "serve",
            "--faults",
            "nonsense=1",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown fault setting(s) nonsense" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "-5"], "Invalid value for '--port'"),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--log-level", "loud"], "Invalid value for '--log-level'"),
    ],
)
def test_bad_values_are_refused_before_anything_starts(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    data_dir = tmp_path / "data"
    fails(invoke(["serve", "--data-dir", str(data_dir), *args]), 2, expected)
    assert not data_dir.exists()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = ["serve", "--port", str(port), "--data-dir", str(tmp_path)]
        result = subprocess.run(
            [sys.executable, "-m", "tinkex.cli", *serve],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another "
        "--port (0 picks a free one)\n"
    )

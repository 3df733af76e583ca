"""Fixtures of the command-line tests: ``tinkex`` invoked as a user would, against a real server.

``cli(*args)`` runs the command in-process with click's runner, pointed at the session's
``tinkex serve`` (``--base-url`` and the test API key, no environment credentials), and
returns click's result: ``exit_code``, ``stdout`` and ``stderr`` apart. Commands that must
run as real processes (Ctrl-C, the embedded backend) use :func:`run_tinkex` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.conftest import API_KEY
from tinkex.cli.main import cli as tinkex_cli

Invoke = Callable[..., Result]

CLEAN_ENV: dict[str, str | None] = {"TINKER_API_KEY": None, "TINKER_BASE_URL": None}
"""No credentials from the environment: every command says where it goes."""


def invoke(args: Sequence[str], *, input: str | None = None) -> Result:
    """``tinkex ARGS`` in-process, exceptions caught as a user would see them."""
    return CliRunner().invoke(
        tinkex_cli, list(args), input=input, env=CLEAN_ENV, prog_name="tinkex"
    )


@pytest.fixture
def cli(base_url: str) -> Invoke:
    """``cli(*args, input=None)``: ``tinkex ARGS --base-url URL --api-key KEY``."""

    def run(*args: str, input: str | None = None) -> Result:
        return invoke([*args, "--base-url", base_url, "--api-key", API_KEY], input=input)

    return run


def ok(result: Result) -> Result:
    """``result`` after checking it succeeded (showing what it printed if not)."""
    assert result.exit_code == 0, (
        f"exit {result.exit_code} ({result.exception!r})\n{result.stdout}\n{result.stderr}"
    )
    return result


def fails(result: Result, status: int, *expected: str) -> str:
    """Check a clean failure: ``status``, nothing on stdout, ``expected`` texts on stderr.

    Returns stderr. A traceback (an exception click did not turn into an exit) fails.
    """
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    assert result.exit_code == status, f"exit {result.exit_code}\n{result.stderr}"
    assert result.stdout == "", result.stdout
    for text in expected:
        assert text in result.stderr, f"{text!r} not in stderr:\n{result.stderr}"
    return result.stderr


def json_of(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def run_tinkex(args: Sequence[str], home: Path, **popen: Any) -> subprocess.Popen[str]:
    """``python -m tinkex.cli ARGS`` as a process, with ``home`` as its home directory."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(HOME=str(home), TINKER_TELEMETRY="0", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "tinkex.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path

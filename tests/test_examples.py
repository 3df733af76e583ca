"""The examples run as a user runs them, against the embedded local backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_main_job_trains_and_samples() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_local.py"), "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "local Tinker backend at http://127.0.0.1:" in result.stdout
    assert "step   3  loss/token" in result.stdout
    assert "checkpoint: tinker://" in result.stdout
    assert result.stdout.count("sample: ") == 3

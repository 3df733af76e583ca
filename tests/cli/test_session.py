"""``tinkex session list|info``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Invoke, fails, json_of, ok


def test_list_and_info_show_the_session_of_a_run(cli: Invoke, tmp_path: Path) -> None:
    output = tmp_path / "c.json"
    ok(cli("checkpoint", "--base-model", "tinkex/tiny-llama", "--output", str(output)))
    run_id = json.loads(output.read_text())["training_run_id"]
    session_id = run_id.split(":")[0]  # the local backend names runs <session>:train:<n>

    sessions = json_of(cli("session", "list", "--limit", "0", "--json"))["sessions"]
    assert session_id in sessions
    assert len(json_of(cli("session", "list", "--limit", "1", "--json"))["sessions"]) == 1
    assert session_id in ok(cli("session", "list", "--limit", "0")).stdout

    info = json_of(cli("session", "info", session_id, "--json"))
    assert info["session_id"] == session_id and info["training_run_ids"] == [run_id]
    assert run_id in ok(cli("session", "info", session_id)).stdout


def test_unknown_session_exits_1(cli: Invoke) -> None:
    fails(cli("session", "info", "session-nope"), 1, "404")

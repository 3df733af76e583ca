"""A key over its limit of concurrent training clients waits in ``paused_rate_limit``."""

from __future__ import annotations

from pathlib import Path

from tests.local.raw import RawTinker
from tinkex.local import LocalServer, ServerConfig


def test_second_model_waits_until_the_first_session_finishes(tmp_path: Path) -> None:
    config = ServerConfig(
        port=0, data_dir=tmp_path, max_training_clients_per_key=1, long_poll_seconds=0.5
    )
    with LocalServer(config) as server:
        raw = RawTinker(server.url)
        try:
            first_session = raw.session()
            raw.model(first_session)
            waiting = raw.ok(
                "create_model",
                {"session_id": raw.session(), "model_seq_id": 0, "base_model": "tinkex/tiny-llama"},
            )["request_id"]
            poll = raw.poll(waiting)
            assert poll.status == 200 and poll.body["type"] == "try_again"
            assert poll.body["queue_state"] == "paused_rate_limit"
            assert "rate limit" in poll.body["queue_state_reason"]
            raw.ok(f"sessions/{first_session}/finish", {"reason": {"type": "success"}})
            assert "model_id" in raw.result(waiting)
        finally:
            raw.close()

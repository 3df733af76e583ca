"""A thin raw-HTTP caller for protocol corners the official SDK never produces.

It talks to the real server over real HTTP; it only skips the SDK's validation and retries
so tests can send malformed bodies, repeat a ``seq_id`` or watch individual polls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import API_KEY


@dataclass
class Poll:
    status: int
    body: dict[str, Any]


class RawTinker:
    def __init__(self, base_url: str, api_key: str = API_KEY) -> None:
        self.http = httpx.Client(
            base_url=base_url + "/api/v1/", headers={"X-API-Key": api_key}, timeout=60
        )

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.http.post(path, **kwargs)

    def ok(self, path: str, body: Any = None) -> dict[str, Any]:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def poll(self, request_id: str) -> Poll:
        response = self.post("retrieve_future", {"request_id": request_id})
        return Poll(response.status_code, response.json())

    def result(self, request_id: str, max_polls: int = 20) -> dict[str, Any]:
        """Poll until the promise settles (each poll long-polls on the server)."""
        for _ in range(max_polls):
            poll = self.poll(request_id)
            if poll.status == 200 and poll.body.get("type") != "try_again":
                return poll.body
            assert poll.status in (200, 408), poll
        raise AssertionError(f"request {request_id} did not settle in {max_polls} polls")

    def session(self) -> str:
        body = self.ok("create_session", {"tags": [], "user_metadata": {}, "sdk_version": "0.38.0"})
        session_id: str = body["session_id"]
        return session_id

    def submit_model(self, session_id: str, seq: int = 0, rank: int = 4, seed: int = 0) -> str:
        """POST create_model; returns the promise's request id."""
        body = self.ok(
            "create_model",
            {
                "session_id": session_id,
                "model_seq_id": seq,
                "base_model": "tinkex/tiny-llama",
                "lora_config": {"rank": rank, "seed": seed},
            },
        )
        request_id: str = body["request_id"]
        return request_id

    def model(self, session_id: str, seq: int = 0, rank: int = 4, seed: int = 0) -> str:
        result = self.result(self.submit_model(session_id, seq, rank, seed))
        assert "model_id" in result, result
        model_id: str = result["model_id"]
        return model_id


def datum_json(tokens: list[int]) -> dict[str, Any]:
    return {
        "model_input": {"chunks": [{"type": "encoded_text", "tokens": tokens[:-1]}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": tokens[1:], "dtype": "int64", "shape": [len(tokens) - 1]},
        },
    }

"""Bad input gets a 4xx with a JSON body naming the problem, or a failed future of category
``user``; nothing is half-done and the server keeps serving."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.conftest import API_KEY
from tests.local.raw import RawTinker, datum_json


@pytest.fixture
def raw(base_url: str) -> Iterator[RawTinker]:
    client = RawTinker(base_url)
    yield client
    assert client.http.get("healthz").json() == {"status": "ok"}, "the server stopped serving"
    client.close()


@pytest.fixture(scope="module")
def model_id(base_url: str) -> str:
    client = RawTinker(base_url)
    try:
        return client.model(client.session())
    finally:
        client.close()


def _detail(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


def test_missing_api_key_is_401_with_a_reason(base_url: str) -> None:
    client = RawTinker(base_url, api_key="")
    response = client.post("create_session", {"sdk_version": "x"})
    assert response.status_code == 401
    assert "missing X-API-Key" in _detail(response)


def test_wrong_api_key_is_401_and_never_logged(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "tml-not-the-right-key-0123456789"
    caplog.set_level(logging.DEBUG)
    response = RawTinker(base_url, api_key=secret).post("create_session", {"sdk_version": "x"})
    assert response.status_code == 401
    assert "invalid API key" in _detail(response)
    assert secret not in response.text
    assert secret not in caplog.text and API_KEY not in caplog.text


def test_malformed_json_body(raw: RawTinker) -> None:
    response = raw.post(
        "create_session", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in _detail(response)


def test_missing_field_is_named(raw: RawTinker) -> None:
    response = raw.post("create_session", {"tags": []})
    assert response.status_code == 400
    assert "sdk_version" in _detail(response)


def test_unknown_base_model(raw: RawTinker) -> None:
    session = raw.session()
    response = raw.post(
        "create_model",
        {
            "session_id": session,
            "model_seq_id": 0,
            "base_model": "nope/none",
            "lora_config": {"rank": 4},
        },
    )
    assert response.status_code == 400
    detail = _detail(response)
    assert "unknown base_model 'nope/none'" in detail and "tinkex/tiny-llama" in detail


def test_malformed_protobuf_forward_backward(raw: RawTinker) -> None:
    response = raw.post(
        "forward_backward",
        content=b"\xff\xff\xff\xff garbage",
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 400
    assert "ForwardBackwardRequest protobuf" in _detail(response)


def test_bad_tinker_path(raw: RawTinker) -> None:
    session = raw.session()
    for path, words in (
        ("s3://bucket/x", "must start with 'tinker://'"),
        ("tinker://run/weights", "three non-empty parts"),
        ("tinker://run/blobs/x", "kind 'blobs'"),
    ):
        response = raw.post(
            "load_weights",
            {"session_id": session, "model_seq_id": 5, "path": path, "optimizer": False},
        )
        assert response.status_code == 400, path
        assert words in _detail(response)


def test_missing_checkpoint_is_404(raw: RawTinker) -> None:
    session = raw.session()
    response = raw.post(
        "load_weights",
        {
            "session_id": session,
            "model_seq_id": 5,
            "path": "tinker://x:train:0/weights/none",
            "optimizer": True,
        },
    )
    assert response.status_code == 404
    assert "does not exist" in _detail(response)


def test_wrong_optimizer_params(raw: RawTinker, model_id: str) -> None:
    response = raw.post(
        "optim_step", {"model_id": model_id, "adam_params": {"learning_rate": 1e-3, "beta1": 1.5}}
    )
    assert response.status_code == 400
    assert "adam_params.beta1" in _detail(response)
    response = raw.post(
        "optim_step", {"model_id": model_id, "optimizer_params": {"type": "dimuon"}}
    )
    assert response.status_code == 400
    assert "needs adam_params" in _detail(response)


@pytest.mark.parametrize(
    ("tokens", "loss_fn", "words"),
    [
        ([1, 2, 999_999], "cross_entropy", ["999999", "vocabulary"]),
        ([1, 2, 3], "bogus", ["bogus"]),
    ],
    ids=["token-out-of-vocabulary", "unknown-loss-fn"],
)
def test_bad_forward_input_fails_the_future_as_user_error(
    raw: RawTinker, model_id: str, tokens: list[int], loss_fn: str, words: list[str]
) -> None:
    forward_input = {"data": [datum_json(tokens)], "loss_fn": loss_fn}
    body = raw.ok("forward", {"model_id": model_id, "forward_input": forward_input})
    result = raw.result(body["request_id"])
    assert result["category"] == "user"
    assert all(word in result["error"] for word in words), result["error"]


def test_unknown_model_and_promise(raw: RawTinker) -> None:
    response = raw.post("get_info", {"model_id": "nobody:train:0"})
    assert response.status_code == 404
    assert "does not exist" in _detail(response)
    poll = raw.poll("no-such-request")
    assert poll.status == 410
    assert "unknown or its result has expired" in poll.body["detail"]


def test_unknown_endpoint_is_json_404(raw: RawTinker) -> None:
    response = raw.post("no_such_endpoint", {})
    assert response.status_code == 404
    assert "no endpoint POST" in _detail(response)


def test_bad_ttl_and_checkpoint_name(raw: RawTinker, model_id: str) -> None:
    response = raw.post("save_weights", {"model_id": model_id, "path": "../escape"})
    assert response.status_code == 400
    assert "not allowed" in _detail(response)
    response = raw.post("save_weights", {"model_id": model_id, "path": "ok", "ttl_seconds": 5})
    assert response.status_code == 400
    assert "ttl_seconds=5" in _detail(response)


@pytest.mark.parametrize("path", ["save_weights", "save_weights_for_sampler"])
def test_checkpoint_metadata_values_must_be_strings(
    raw: RawTinker, model_id: str, path: str
) -> None:
    # The official SDK reads checkpoint metadata as dict[str, str]: a number stored here
    # would break every later listing of the user's checkpoints, so it is refused up front.
    body = {"model_id": model_id, "path": "meta", "user_metadata": {"step": 3}}
    response = raw.post(path, body)
    assert response.status_code == 400
    assert "user_metadata.step" in _detail(response)


ONE_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
"""A real image (a PNG signature alone is refused first, as not a valid image)."""


def test_image_prompt_to_text_model(raw: RawTinker) -> None:
    session = raw.session()
    sampler = raw.ok(
        "create_sampling_session",
        {"session_id": session, "sampling_session_seq_id": 0, "base_model": "tinkex/tiny-llama"},
    )["sampling_session_id"]
    response = raw.post(
        "asample",
        {
            "sampling_session_id": sampler,
            "prompt": {"chunks": [{"type": "image", "data": ONE_PIXEL_PNG, "format": "png"}]},
            "sampling_params": {"max_tokens": 2},
        },
    )
    assert response.status_code == 400
    assert "text-only" in _detail(response)


def test_unknown_content_encoding_is_415(raw: RawTinker) -> None:
    response = raw.post(
        "create_session",
        content=b"{}",
        headers={"content-type": "application/json", "content-encoding": "br"},
    )
    assert response.status_code == 415
    assert "unsupported Content-Encoding 'br'" in _detail(response)


def test_wrong_method_is_405_naming_it(raw: RawTinker) -> None:
    response = raw.http.get("create_session")
    assert response.status_code == 405
    assert "GET is not allowed on /api/v1/create_session" in _detail(response)

"""``tinkex.backend``: the switch between a given Tinker service and the embedded backend.

The examples and ``tinkex train`` start the local backend only when no API key and no base
URL are given (as arguments or in ``TINKER_API_KEY`` / ``TINKER_BASE_URL``).
"""

from __future__ import annotations

import pytest

from tests.conftest import API_KEY
from tinkex.backend import open_service, wants_local_backend

KEY, URL = "tml-from-somewhere", "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("api_key", "base_url", "env", "local"),
    [
        (None, None, {}, True),
        ("", "", {}, True),
        (None, None, {"TINKER_API_KEY": "", "TINKER_BASE_URL": ""}, True),
        (KEY, None, {}, False),
        (None, URL, {}, False),
        (KEY, URL, {}, False),
        (None, None, {"TINKER_API_KEY": KEY}, False),
        (None, None, {"TINKER_BASE_URL": URL}, False),
        (None, None, {"TINKER_API_KEY": KEY, "TINKER_BASE_URL": URL}, False),
        (KEY, None, {"TINKER_BASE_URL": URL}, False),
        (None, URL, {"TINKER_API_KEY": KEY}, False),
        ("", None, {"TINKER_API_KEY": KEY}, False),
        (None, "", {"TINKER_BASE_URL": URL}, False),
    ],
)
def test_wants_local_backend_only_without_a_key_or_a_url(
    api_key: str | None,
    base_url: str | None,
    env: dict[str, str],
    local: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert wants_local_backend(api_key, base_url) is local


def test_open_service_uses_the_given_service_without_starting_a_backend(base_url: str) -> None:
    announced: list[str] = []
    with open_service(base_url=base_url, api_key=API_KEY, announce=announced.append) as service:
        assert service.config.base_url == base_url
        models = service.get_server_capabilities().result().supported_models
    assert announced == [], "a local backend was started although a service was given"
    assert any(model.model_name == "tinkex/tiny-llama" for model in models)


def test_open_service_refuses_faults_for_a_remote_service() -> None:
    with (
        pytest.raises(ValueError, match=r"faults=.*embedded local backend only"),
        open_service(base_url=URL, api_key=KEY, faults="paused_polls=3"),
    ):
        pass

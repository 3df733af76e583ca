"""Config: precedence (arguments > environment > defaults), validation, masking."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from tinkex.config import DEFAULT_BASE_URL, Config
from tinkex.errors import ConfigError

KEY = "tml-test-key-0123456789abcdef"
ENV_KEY = "tml-env-key-fedcba9876543210"


def cfg(environ: dict[str, str] | None = None, **args: Any) -> Config:
    return Config.from_env(environ={} if environ is None else environ, **args)


def test_defaults_with_only_a_key() -> None:
    config = cfg(api_key=KEY)
    assert config.api_key == KEY
    assert config.base_url == DEFAULT_BASE_URL
    assert (config.timeout, config.max_retries, config.deadline) == (60.0, 10, None)
    assert config.project_id is None and config.tags == () and config.user_metadata == {}
    assert config.default_headers == {} and config.proxy is None
    assert config.cf_access_client_id is None and config.cf_access_client_secret is None
    assert config.telemetry is True and config.log_level is None
    assert config.http_client is None and config.pool_name is None
    assert config.sdk_version == "0.38.0"


ENV = {
    "TINKER_API_KEY": ENV_KEY,
    "TINKER_BASE_URL": "http://env.example:9000/",
    "TINKER_PROJECT_ID": "proj-env",
    "TINKER_TAGS": "env-a,env-b",
    "TINKER_TELEMETRY": "0",
    "TINKER_LOG": "info",
    "CLOUDFLARE_ACCESS_CLIENT_ID": "cf-env-id",
    "CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-env-secret",
}


@pytest.mark.parametrize(
    ("field", "argument", "from_env", "default"),
    [
        ("base_url", "https://arg.example", "http://env.example:9000", DEFAULT_BASE_URL),
        ("project_id", "proj-arg", "proj-env", None),
        ("tags", ("arg",), ("env-a", "env-b"), ()),
        ("telemetry", True, False, True),
        ("log_level", "debug", "info", None),
        ("cf_access_client_id", "cf-arg-id", "cf-env-id", None),
        ("cf_access_client_secret", "cf-arg-secret", "cf-env-secret", None),
    ],
)
def test_arguments_beat_environment_beats_defaults(
    field: str, argument: Any, from_env: Any, default: Any
) -> None:
    assert getattr(cfg(ENV, api_key=KEY, **{field: argument}), field) == argument
    assert getattr(cfg(ENV, api_key=KEY), field) == from_env
    assert getattr(cfg({}, api_key=KEY), field) == default


def test_api_key_argument_beats_the_environment() -> None:
    assert cfg(ENV, api_key=KEY).api_key == KEY
    assert cfg(ENV).api_key == ENV_KEY


@pytest.mark.parametrize("name", sorted(ENV))
def test_empty_environment_values_count_as_unset(name: str) -> None:
    assert cfg({name: ""}, api_key=KEY) == cfg({}, api_key=KEY)
    assert cfg({name: "  "}, api_key=KEY) == cfg({}, api_key=KEY)


def test_empty_key_variable_is_a_missing_key() -> None:
    with pytest.raises(ConfigError, match="TINKER_API_KEY"):
        cfg({"TINKER_API_KEY": ""})


def test_empty_string_arguments_count_as_unset() -> None:
    config = cfg(ENV, api_key="", base_url="", project_id="")
    assert config.api_key == ENV_KEY
    assert config.base_url == "http://env.example:9000"
    assert config.project_id == "proj-env"


def test_non_env_fields_come_from_arguments() -> None:
    client = httpx.AsyncClient()
    config = cfg(
        api_key=KEY,
        timeout=5,
        max_retries=0,
        user_metadata={"run": "1"},
        default_headers={"X-Trace": "t"},
        proxy="http://proxy.local:3128",
        http_client=client,
        pool_name="train",
        sdk_version="0.39.0",
    )
    assert (config.timeout, config.max_retries) == (5.0, 0)
    assert config.user_metadata == {"run": "1"} and config.default_headers == {"X-Trace": "t"}
    assert config.proxy == "http://proxy.local:3128" and config.http_client is client
    assert (config.pool_name, config.sdk_version) == ("train", "0.39.0")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", ENV_KEY)
    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:8000")
    config = Config.from_env()
    assert (config.api_key, config.base_url) == (ENV_KEY, "http://127.0.0.1:8000")


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("a,b", ("a", "b")),
        (" a , b ,, c,", ("a", "b", "c")),
        ("a,a,b", ("a", "b")),
        ("solo", ("solo",)),
        (",", ()),
    ],
)
def test_tags_parsing(raw: str, tags: tuple[str, ...]) -> None:
    assert cfg({"TINKER_TAGS": raw}, api_key=KEY).tags == tags


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("off", False),
        ("nope", False),
        ("", True),
    ],
)
def test_telemetry_flag(raw: str, enabled: bool) -> None:
    assert cfg({"TINKER_TELEMETRY": raw}, api_key=KEY).telemetry is enabled


def test_explicit_telemetry_false_beats_the_environment() -> None:
    assert cfg({"TINKER_TELEMETRY": "1"}, api_key=KEY, telemetry=False).telemetry is False


@pytest.mark.parametrize(
    ("raw", "level"),
    [("debug", "debug"), ("INFO", "info"), ("warn", "warning"), ("error", "error")],
)
def test_log_levels(raw: str, level: str) -> None:
    assert cfg({"TINKER_LOG": raw}, api_key=KEY).log_level == level


def test_bad_log_level_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TINKER_LOG='loud'") as caught:
        cfg({"TINKER_LOG": "loud"}, api_key=KEY)
    assert caught.value.field == "log_level"


# --- errors ----------------------------------------------------------------------------------


def test_missing_key_says_how_to_provide_it() -> None:
    with pytest.raises(ConfigError) as caught:
        cfg({})
    assert caught.value.field == "api_key"
    assert "api_key=" in str(caught.value) and "TINKER_API_KEY" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("key", ["sk-proj-0123456789", "TML-upper-case-0000", "abc"])
def test_key_with_a_bad_prefix_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(ConfigError, match="must start with 'tml-'") as caught:
        cfg(api_key=key)
    assert caught.value.field == "api_key"
    message = str(caught.value)
    assert key not in message
    assert f"got a {len(key)}-character value" in message
    # not even a masked prefix: the first characters of a mistyped key are a secret's too
    assert f"{key[:2]}*" not in message and f"'{key[:2]}" not in message


def test_jwt_credentials_are_accepted() -> None:
    assert cfg(api_key="eyJhbGciOiJIUzI1NiJ9.e30.sig").api_key.startswith("eyJ")


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "localhost:8000", "http://", "not a url", "//host:80", "http://h:port"],
)
def test_malformed_base_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg(api_key=KEY, base_url=url)
    assert caught.value.field == "base_url"
    assert repr(url) in str(caught.value) and "TINKER_BASE_URL" in str(caught.value)


def test_malformed_base_url_from_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="TINKER_BASE_URL"):
        cfg({"TINKER_BASE_URL": "127.0.0.1:8000"}, api_key=KEY)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0),
        ("timeout", -1.0),
        ("timeout", float("inf")),
        ("max_retries", -1),
        ("max_retries", True),
        ("proxy", "proxy.local:3128"),
        ("default_headers", {"X-A": 1}),
        ("tags", "a,b"),
        ("http_client", object()),
        ("deadline", float("nan")),
        ("deadline", "soon"),
        ("deadline", True),
    ],
)
def test_invalid_values_name_their_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(api_key=KEY, **{field: value})
    assert caught.value.field == field


def test_base_url_trailing_slash_is_stripped() -> None:
    assert Config(api_key=KEY, base_url="http://h:1/svc/").base_url == "http://h:1/svc"


# --- masking, identity -----------------------------------------------------------------------


def test_repr_and_str_never_show_secrets() -> None:
    config = Config(
        api_key=KEY,
        cf_access_client_id="cf-id",
        cf_access_client_secret="cf-secret-0123456789",
        default_headers={"Authorization": "Bearer hidden-token", "X-Trace": "visible"},
        proxy="http://user:proxy-password@proxy.local:3128",
    )
    for text in (repr(config), str(config), f"{config}"):
        assert KEY not in text and KEY[5:] not in text
        assert "cf-secret-0123456789" not in text
        assert "hidden-token" not in text and "proxy-password" not in text
        assert "'tml-***'" in text and "cf-id" in text and "visible" in text


def test_a_jwt_is_masked_whole() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.e30.sig-0123456789"
    text = repr(Config(api_key=jwt))
    assert "api_key='***'" in text and "eyJ" not in text


def test_the_deadline_is_an_optional_monotonic_instant() -> None:
    config = cfg(api_key=KEY, deadline=1234)
    assert config.deadline == 1234.0 and isinstance(config.deadline, float)
    assert "deadline=1234.0" in repr(config)
    assert config.replace(deadline=None).deadline is None
    assert config != config.replace(deadline=99.0)
    assert hash(config) == hash(cfg(api_key=KEY, deadline=1234.0))


def test_tenant_is_hashable_and_keyless() -> None:
    config = Config(api_key=KEY, base_url="http://h:1")
    tenant = config.tenant
    assert tenant[0] == "http://h:1" and len(tenant[1]) == 16
    assert KEY not in repr(tenant)
    assert {tenant: 1}[Config(api_key=KEY, base_url="http://h:1/").tenant] == 1
    assert Config(api_key=ENV_KEY, base_url="http://h:1").tenant != tenant
    assert Config(api_key=KEY, base_url="http://h:2").tenant != tenant


def test_equality_and_hash_ignore_the_injected_client() -> None:
    a = Config(api_key=KEY, http_client=httpx.AsyncClient(), tags=["x"])
    b = Config(api_key=KEY, tags=("x",))
    assert a == b and hash(a) == hash(b)
    assert a != b.replace(max_retries=3)


def test_config_is_frozen_and_replace_revalidates() -> None:
    config = Config(api_key=KEY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 1.0  # type: ignore[misc]
    assert config.replace(timeout=2, base_url="http://x:1/").base_url == "http://x:1"
    with pytest.raises(ConfigError) as caught:
        config.replace(base_url="nope")
    assert caught.value.field == "base_url"
    with pytest.raises(ConfigError, match="unknown Config field"):
        config.replace(colour="blue")


def test_mappings_are_private_copies() -> None:
    metadata = {"a": "1"}
    config = Config(api_key=KEY, user_metadata=metadata)
    metadata["b"] = "2"
    assert config.user_metadata == {"a": "1"}

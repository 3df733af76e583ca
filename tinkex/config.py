"""Client configuration: one frozen :class:`Config`, built from arguments and the environment.

Precedence, field by field: an explicit non-``None`` argument, else the environment variable
(an empty value counts as unset), else the default. See ``docs/configuration.md``.

Secrets (the API key, the Cloudflare Access secret, secret-looking default headers, proxy
passwords) never appear in ``repr(config)`` or ``str(config)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx

from .errors import ConfigError, mask_secret, redact_url
from .telemetry import looks_secret

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_SDK_VERSION",
    "DEFAULT_TIMEOUT",
    "ENV_VARS",
    "Config",
    "Tenant",
]

DEFAULT_BASE_URL: Final = "https://tinker.thinkingmachines.dev/services/tinker-prod"
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_MAX_RETRIES: Final = 10
DEFAULT_SDK_VERSION: Final = "0.38.0"
"""The official ``tinker`` SDK version tinkex is wire-compatible with (sent to the server)."""

API_KEY_PREFIXES: Final = ("tml-", "eyJ")
"""A Tinker API key starts with ``tml-``; a JWT credential with ``eyJ``."""

ENV_VARS: Final[dict[str, str]] = {
    "api_key": "TINKER_API_KEY",
    "base_url": "TINKER_BASE_URL",
    "project_id": "TINKER_PROJECT_ID",
    "tags": "TINKER_TAGS",
    "telemetry": "TINKER_TELEMETRY",
    "log_level": "TINKER_LOG",
    "cf_access_client_id": "CLOUDFLARE_ACCESS_CLIENT_ID",
    "cf_access_client_secret": "CLOUDFLARE_ACCESS_CLIENT_SECRET",
}
"""Which environment variable feeds which field."""

_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
_LOG_LEVELS: Final = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
}
Tenant = tuple[str, str]
"""``(base_url, first 16 hex digits of sha256(api_key))``: keys rate-limit windows."""


@dataclass(frozen=True, kw_only=True, repr=False)
class Config:
    """Everything the client needs to talk to one Tinker deployment with one credential.

    Build it with :meth:`from_env` (arguments, then environment, then defaults) or directly
    (arguments and defaults only; the environment is not read). Values are validated and
    normalised on construction: a problem raises :class:`~tinkex.errors.ConfigError` naming
    the field. ``tags`` is stored as a tuple; ``user_metadata`` and ``default_headers`` are
    private copies (treat them as read-only). :meth:`replace` makes a changed copy.
    """

    api_key: str
    """``X-API-Key`` credential: a ``tml-`` key or a JWT (``eyJ...``). Never shown."""
    base_url: str = DEFAULT_BASE_URL
    """http(s) URL of the deployment, without ``/api/v1``; a trailing slash is dropped."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds one HTTP request may take (read/write/pool; connecting is capped at 5 s)."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """HTTP-layer retries after the first attempt (timeouts, connection errors, 408/409/429/5xx)."""
    deadline: float | None = None
    """A ``time.monotonic()`` instant that bounds every HTTP call made with this config, for
    a budget over a whole operation (``tinkex --timeout``): retries stop at it (a backoff
    wait ends there at the latest) and each attempt's timeout is cut to the time left, though
    never below 1 s, so a call ends at most about a second after it (one made later, such as
    finishing the session, gets a single short attempt). The telemetry reporter's drain at
    close is cut the same way. ``None``: only ``timeout`` and ``max_retries`` apply."""
    project_id: str | None = None
    tags: Sequence[str] = ()
    """Session tags (``TINKER_TAGS``: comma separated)."""
    user_metadata: Mapping[str, Any] = field(default_factory=dict)
    """Sent on session creation and added to telemetry metadata by the client."""
    default_headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers on every request; they can never replace ``X-API-Key``."""
    proxy: str | None = None
    """Proxy URL for the pools tinkex creates (environment proxy variables are not read)."""
    cf_access_client_id: str | None = None
    cf_access_client_secret: str | None = None
    telemetry: bool = True
    """Whether the client reports telemetry to the server (``TINKER_TELEMETRY``)."""
    log_level: str | None = None
    """``"debug"``, ``"info"``, ``"warning"`` or ``"error"`` (``TINKER_LOG``), or ``None``."""
    http_client: httpx.AsyncClient | None = field(default=None, compare=False)
    """An ``httpx.AsyncClient`` to use as is (never closed by tinkex); ``None``: a shared pool."""
    pool_name: str | None = None
    """Requests with different pool names never share connections (see ``PoolRegistry``)."""
    sdk_version: str = DEFAULT_SDK_VERSION
    """Official SDK version announced to the server (``X-Stainless-Package-Version``)."""

    def __post_init__(self) -> None:
        set_ = _setter(self)
        set_("api_key", _check_api_key(self.api_key))
        set_("base_url", _check_base_url(self.base_url))
        set_("timeout", _check_timeout(self.timeout))
        set_("max_retries", _check_max_retries(self.max_retries))
        set_("deadline", _check_deadline(self.deadline))
        set_("project_id", _optional_str(self.project_id, "project_id"))
        set_("tags", _check_tags(self.tags))
        if not isinstance(self.user_metadata, Mapping):
            raise ConfigError(
                f"user_metadata must be a mapping, got {type(self.user_metadata).__name__}",
                field="user_metadata",
            )
        set_("user_metadata", dict(self.user_metadata))
        set_("default_headers", _check_headers(self.default_headers))
        set_("proxy", _check_proxy(_optional_str(self.proxy, "proxy")))
        set_("cf_access_client_id", _optional_str(self.cf_access_client_id, "cf_access_client_id"))
        set_(
            "cf_access_client_secret",
            _optional_str(self.cf_access_client_secret, "cf_access_client_secret"),
        )
        if not isinstance(self.telemetry, bool):
            raise ConfigError(
                f"telemetry must be True or False, got {self.telemetry!r}", field="telemetry"
            )
        set_("log_level", _check_log_level(self.log_level, "log_level"))
        if self.http_client is not None and not isinstance(self.http_client, httpx.AsyncClient):
            raise ConfigError(
                f"http_client must be an httpx.AsyncClient, got {type(self.http_client).__name__}",
                field="http_client",
            )
        set_("pool_name", _optional_str(self.pool_name, "pool_name"))
        sdk_version = _optional_str(self.sdk_version, "sdk_version")
        if sdk_version is None:
            raise ConfigError("sdk_version must be a non-empty string", field="sdk_version")
        set_("sdk_version", sdk_version)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        project_id: str | None = None,
        tags: Iterable[str] | None = None,
        user_metadata: Mapping[str, Any] | None = None,
        default_headers: Mapping[str, str] | None = None,
        proxy: str | None = None,
        cf_access_client_id: str | None = None,
        cf_access_client_secret: str | None = None,
        telemetry: bool | None = None,
        log_level: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        pool_name: str | None = None,
        sdk_version: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Resolve every field: explicit non-``None`` argument > environment > default.

        ``environ`` replaces ``os.environ`` (for tests). Empty environment values and empty
        string arguments count as unset.

        Raises:
            ConfigError: no API key anywhere, or a value is malformed (``field`` says which).
        """
        env = os.environ if environ is None else environ

        def pick(name: str, explicit: str | None) -> str | None:
            if explicit is not None and explicit != "":
                return explicit
            raw = env.get(ENV_VARS[name], "").strip()
            return raw or None

        env_tags = pick("tags", None)
        env_telemetry = pick("telemetry", None)
        env_log = pick("log_level", None)
        values: dict[str, Any] = {
            "api_key": pick("api_key", api_key) or "",
            "base_url": pick("base_url", base_url) or DEFAULT_BASE_URL,
            "project_id": pick("project_id", project_id),
            "cf_access_client_id": pick("cf_access_client_id", cf_access_client_id),
            "cf_access_client_secret": pick("cf_access_client_secret", cf_access_client_secret),
            "tags": tuple(tags) if tags is not None else _parse_tags(env_tags),
            "telemetry": telemetry if telemetry is not None else _parse_flag(env_telemetry),
            "log_level": log_level
            if log_level
            else _check_log_level(env_log, "log_level", ENV_VARS["log_level"]),
        }
        optional: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": max_retries,
            "deadline": deadline,
            "user_metadata": user_metadata,
            "default_headers": default_headers,
            "proxy": proxy,
            "http_client": http_client,
            "pool_name": pool_name,
            "sdk_version": sdk_version,
        }
        values.update({k: v for k, v in optional.items() if v is not None and v != ""})
        if not values["api_key"]:
            raise ConfigError(
                "no Tinker API key: pass api_key=... or set the TINKER_API_KEY environment "
                "variable (a local `tinkex serve` accepts any key starting with 'tml-')",
                field="api_key",
            )
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied and validated again (the environment is not read)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown Config field(s): {', '.join(unknown)}", field=unknown[0])
        return dataclasses.replace(self, **changes)

    # --- derived ---------------------------------------------------------------------------

    @property
    def tenant(self) -> Tenant:
        """``(base_url, sha256(api_key)[:16])``: who is calling where, without the key."""
        return (self.base_url, hashlib.sha256(self.api_key.encode()).hexdigest()[:16])

    # --- equality, hashing, display --------------------------------------------------------

    def __hash__(self) -> int:
        # Equal configs hash equal; the mappings are left out because they are unhashable.
        return hash(
            (
                self.api_key,
                self.base_url,
                self.timeout,
                self.max_retries,
                self.deadline,
                self.project_id,
                tuple(self.tags),
                self.proxy,
                self.pool_name,
                self.sdk_version,
            )
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every credential in this config, to scrub out of any text that leaves the client
        (error messages, telemetry): the API key, the Cloudflare Access secret, the values of
        secret-looking ``default_headers`` (and the credential after a scheme such as
        ``Bearer``), and the user info and password of the proxy URL (as written and
        percent-decoded). Longest first, so that a secret containing another is masked whole.
        """
        found = [self.api_key, self.cf_access_client_secret]
        for name, value in self.default_headers.items():
            if looks_secret(name):
                scheme, _, credential = value.partition(" ")
                found += [value, credential.strip() if scheme and credential else None]
        if self.proxy is not None:
            proxy = urlsplit(self.proxy)
            userinfo = proxy.netloc.rpartition("@")[0] if "@" in proxy.netloc else None
            for part in (userinfo, proxy.password):
                if part:
                    found += [part, unquote(part)]
        return tuple(sorted({s for s in found if s}, key=len, reverse=True))

    def __repr__(self) -> str:
        shown = {
            "api_key": mask_secret(self.api_key),
            "base_url": redact_url(self.base_url),
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "deadline": self.deadline,
            "project_id": self.project_id,
            "tags": self.tags,
            "user_metadata": self.user_metadata,
            "default_headers": {
                name: "***" if looks_secret(name) else value
                for name, value in self.default_headers.items()
            },
            "proxy": None if self.proxy is None else redact_url(self.proxy),
            "cf_access_client_id": self.cf_access_client_id,
            "cf_access_client_secret": None if self.cf_access_client_secret is None else "***",
            "telemetry": self.telemetry,
            "log_level": self.log_level,
            "http_client": None if self.http_client is None else "<injected httpx.AsyncClient>",
            "pool_name": self.pool_name,
            "sdk_version": self.sdk_version,
        }
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__


# --- validation helpers ----------------------------------------------------------------------


def _setter(config: Config) -> Callable[[str, object], None]:
    def set_(name: str, value: object) -> None:
        object.__setattr__(config, name, value)

    return set_


def _check_api_key(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"api_key must be a string, got {type(value).__name__}", field="api_key")
    key = value.strip()
    if not key:
        raise ConfigError(
            "no Tinker API key: pass api_key=... or set the TINKER_API_KEY environment variable",
            field="api_key",
        )
    if not key.startswith(API_KEY_PREFIXES):
        raise ConfigError(  # no character of the value: a mistyped key is still a secret
            f"the API key must start with 'tml-' (or be a JWT starting with 'eyJ'); got a "
            f"{len(key)}-character value that starts with neither: copy the key from the "
            "Tinker console (or, for a local "
            "`tinkex serve`, use any key starting with 'tml-') and pass it as api_key=... or "
            "set the TINKER_API_KEY environment variable",
            field="api_key",
        )
    return key


def _check_base_url(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(
            f"base_url must be a string, got {type(value).__name__}", field="base_url"
        )
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base_url {redact_url(value)!r} is not an http(s) URL with a host; pass "
            "base_url=... or set TINKER_BASE_URL to e.g. http://127.0.0.1:8000 (a local "
            f"`tinkex serve`) or {DEFAULT_BASE_URL}",
            field="base_url",
        )
    return url


def _check_timeout(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"timeout must be a positive number of seconds, got {value!r}", field="timeout"
        )
    return float(value)


def _check_deadline(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"deadline must be a time.monotonic() instant or None, got {value!r}",
            field="deadline",
        )
    return float(value)


def _check_max_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"max_retries must be a non-negative integer, got {value!r}", field="max_retries"
        )
    return value


def _optional_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {type(value).__name__}", field=name)
    return value.strip() or None


def _check_tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(
            f"tags must be a list of strings, got {value!r} (TINKER_TAGS is comma separated)",
            field="tags",
        )
    tags = tuple(value)
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"every tag must be a non-empty string, got {tag!r}", field="tags")
    return tags


def _parse_tags(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(dict.fromkeys(tag.strip() for tag in raw.split(",") if tag.strip()))


def _parse_flag(raw: str | None) -> bool:
    # The official SDK's rule: telemetry is on unless the variable says otherwise.
    return True if raw is None else raw.strip().lower() in _TRUE_WORDS


def _check_log_level(value: object, name: str, env_var: str | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {type(value).__name__}", field=name)
    if not value.strip():
        return None
    level = _LOG_LEVELS.get(value.strip().lower())
    if level is None:
        source = f"{env_var}={value!r}" if env_var else f"{name}={value!r}"
        raise ConfigError(
            f"{source} is not a log level; use debug, info, warning or error", field=name
        )
    return level


def _check_headers(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"default_headers must be a mapping of strings, got {type(value).__name__}",
            field="default_headers",
        )
    headers: dict[str, str] = {}
    for name, header_value in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"default_headers has an invalid header name {name!r}", field="default_headers"
            )
        if not isinstance(header_value, str):
            raise ConfigError(
                f"default_headers[{name!r}] must be a string, got {type(header_value).__name__}",
                field="default_headers",
            )
        headers[name] = header_value
    return headers


def _check_proxy(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https", "socks5") or not parts.hostname:
        raise ConfigError(
            f"proxy {redact_url(value)!r} is not an http, https or socks5 URL with a host",
            field="proxy",
        )
    return value

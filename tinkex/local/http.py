"""HTTP plumbing of the local server: auth, body parsing, error answers, dropped replies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tinkex.protocol import decode_content_encoding

from .errors import BadRequest, ServerError, Unauthorized

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 512 * 1024 * 1024
"""The largest decompressed request body accepted."""
Handler = Callable[[Request, str], Awaitable[Response]]


def owner_of(api_key: str) -> str:
    """The tenant id of a key: stable, and useless for recovering the key."""
    return "user-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # The official SDK treats a 400 with an empty or length-less body as proxy noise and
    # retries it, so every error carries a JSON body (JSONResponse sets Content-Length).
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def authenticate(request: Request, api_keys: frozenset[str]) -> str:
    key = request.headers.get("x-api-key", "")
    if not key:
        raise Unauthorized(
            "missing X-API-Key header: pass the server's API key (api_key=... or TINKER_API_KEY)"
        )
    if api_keys and key not in api_keys:
        raise Unauthorized("invalid API key: it is not one of the keys this server accepts")
    return owner_of(key)


KNOWN_ENCODINGS = frozenset({"", "identity", "zstd", "gzip"})


async def read_body(request: Request) -> bytes:
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    for coding in (encoding or "").split(","):
        if coding.strip().lower() not in KNOWN_ENCODINGS:
            raise ServerError(
                f"unsupported Content-Encoding {coding.strip()!r}; send zstd, gzip or none",
                status=415,
            )
    try:
        return decode_content_encoding(body, encoding, max_size=MAX_BODY_BYTES)
    except ValueError as exc:
        status = 413 if "exceeds" in str(exc) or "limit" in str(exc) else 400
        raise ServerError(f"request body could not be decoded: {exc}", status=status) from None


async def read_json(request: Request) -> Any:
    body = await read_body(request)
    if not body:
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


async def parse(request: Request, model: type[M]) -> M:
    raw = await read_json(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(model.__name__, exc)) from None


def describe_validation_error(what: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"invalid {what}: " + "; ".join(problems) + more


def json_response(value: BaseModel | dict[str, Any]) -> Response:
    body = (
        value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
    )
    return JSONResponse(body)


class DroppedResponse(Response):
    """Starts an answer and then breaks the connection, as a crashed proxy would.

    The request has been processed; the client sees a connection error and must retry,
    which is what deduplication on ``seq_id`` exists for.
    """

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "64"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionAbortedError("fault injection: connection dropped")


def guarded(handler: Handler, api_keys: frozenset[str]) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, run ``handler`` and turn every known error into a JSON answer."""

    async def endpoint(request: Request) -> Response:
        try:
            owner = authenticate(request, api_keys)
            return await handler(request, owner)
        except ServerError as exc:
            return error_response(exc.status, exc.message)

    return endpoint

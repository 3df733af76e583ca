"""Errors the local server turns into HTTP answers or failed futures."""

from __future__ import annotations

from typing import Literal


class ServerError(Exception):
    """An error answered directly with ``status`` and a JSON body naming the problem."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ServerError):
    status = 400


class Unauthorized(ServerError):
    status = 401


class NotFound(ServerError):
    status = 404


class Conflict(ServerError):
    status = 409


class Gone(ServerError):
    status = 410


class RequestFailed(Exception):
    """A request accepted as a promise that failed; the future carries ``category``."""

    def __init__(self, message: str, category: Literal["user", "server", "unknown"]) -> None:
        super().__init__(message)
        self.message = message
        self.category = category

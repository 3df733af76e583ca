"""Reading the prompt of ``tinkex run --prompt-file``: plain text or token ids.

A file whose first non-blank character is ``[`` or ``{`` is JSON and must be a token-id
array (``[1, 2, 3]``) or an object ``{"tokens": [1, 2, 3]}``; anything else is text, used
exactly as written (a trailing newline is part of the prompt). A file that cannot be read,
is not UTF-8, or looks like JSON but does not parse is an error: silently sampling from the
wrong prompt is worse than stopping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PromptFileError", "read_prompt_file"]


class PromptFileError(ValueError):
    """The prompt file is unusable; the message says why and what to write instead."""


def read_prompt_file(path: Path) -> str | list[int]:
    """The prompt in ``path``: its text, or its token ids.

    Raises:
        PromptFileError: unreadable, not UTF-8, malformed JSON, or JSON of another shape.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PromptFileError(f"cannot read prompt file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptFileError(
            f"prompt file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save "
            "it as UTF-8, or write the prompt as a JSON array of token ids"
        ) from None
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        if not text:
            raise PromptFileError(f"prompt file {path} is empty; write the prompt into it")
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(
            f"prompt file {path} starts with {stripped[0]!r} but is not valid JSON ({exc.msg} "
            f"at line {exc.lineno}, column {exc.colno}); write a JSON array of token ids like "
            "[1, 2, 3], or plain text that does not start with '[' or '{'"
        ) from None
    return _token_ids(value, path)


def _token_ids(value: Any, path: Path) -> list[int]:
    if isinstance(value, dict):
        if set(value) != {"tokens"}:
            raise PromptFileError(
                f"prompt file {path} holds a JSON object with keys {sorted(value)}; expected "
                'only "tokens", as in {"tokens": [1, 2, 3]}'
            )
        value = value["tokens"]
    if not isinstance(value, list) or not value:
        raise PromptFileError(
            f"prompt file {path}: the token ids must be a non-empty JSON array, like [1, 2, 3]"
        )
    for index, token in enumerate(value):
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise PromptFileError(
                f"prompt file {path}: token {index} is {json.dumps(token)}, not a "
                "non-negative integer token id"
            )
    return list(value)

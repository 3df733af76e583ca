"""Training data for ``tinkex train``: JSONL rows rendered into weighted token sequences.

Three row forms are accepted (one per line, mixing them is allowed):

* ``{"prompt": P, "completion": C}``: the model reads ``P`` and learns ``C`` (loss on the
  completion's tokens only);
* ``{"text": T}``: the model learns all of ``T``;
* ``{"messages": [{"role": R, "content": X}, ...]}``: a chat, rendered with the simple
  template below, the loss on the assistant turns only.

The chat template writes every message as ``"<role>: <content>\\n"``. The ``"<role>: "``
prefix is never trained; an assistant's ``"<content>\\n"`` is, everything else is not. So
``[user: "hi", assistant: "hello"]`` becomes ``"user: hi\\nassistant: hello\\n"`` with the
loss on ``"hello\\n"``, and the matching sampling prompt is ``"user: hi\\nassistant: "``.

Every example ends with the end-of-sequence token (when the tokenizer has one the command
knows), trained when the last part is trained, so that the model learns where to stop.

Each part is tokenized on its own and the ids are concatenated (the first part with the
tokenizer's special tokens, a BOS say, the others without), so the weights line up with
the parts exactly. For the byte-level tokenizer of the built-in model this is the same as
tokenizing the whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinkex.tokenizers import Tokenizer
from tinkex.types import Datum, ModelInput, TensorData

__all__ = ["DataError", "Example", "Segment", "load_examples", "render"]


class DataError(ValueError):
    """The training data is unusable; the message names the file, line and what to fix."""


@dataclass(frozen=True)
class Segment:
    """A piece of an example's text and whether the model is trained on it."""

    text: str
    trained: bool


@dataclass(frozen=True)
class Example:
    """One training example: its parts in order, and where it came from (``file:line``)."""

    segments: tuple[Segment, ...]
    where: str = "<example>"

    @property
    def prompt(self) -> str | None:
        """The untrained text before the first trained part: what to sample from.

        ``None`` when training starts at the first character (``{"text"}`` rows).
        """
        prefix: list[str] = []
        for segment in self.segments:
            if segment.trained:
                return "".join(prefix) or None
            prefix.append(segment.text)
        return None

    def opening(self, words: int) -> str | None:
        """The example's first ``words`` words (fewer in a short text, so that at least one
        is left to complete), or ``None`` for a single word: a sampling prompt for data
        without prompts, such as ``{"text"}`` rows."""
        text = "".join(segment.text for segment in self.segments)
        word_ends = [word.end() for word in re.finditer(r"\S+", text)]
        if len(word_ends) < 2:
            return None
        return text[: word_ends[min(words, len(word_ends) - 1) - 1]]


def load_examples(path: Path) -> list[Example]:
    """Read and check every row of the JSONL file at ``path`` (blank lines are skipped).

    Raises:
        OSError: the file cannot be read.
        DataError: bad UTF-8, a line that is not JSON, or a row of no known form.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at_line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{at_line}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the "
            "file as UTF-8"
        ) from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno}); every line "
                'must be one JSON object, e.g. {"prompt": "...", "completion": "..."}'
            ) from None
        examples.append(_example(row, f"{path}:{number}"))
    if not examples:
        raise DataError(
            f"{path} holds no examples; write one JSON object per line, e.g. "
            '{"prompt": "2+2=", "completion": "4"}'
        )
    return examples


def _example(row: Any, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    keys = set(row)
    if keys == {"prompt", "completion"}:
        prompt = _text(row, "prompt", where, allow_empty=True)
        completion = _text(row, "completion", where)
        return Example((Segment(prompt, False), Segment(completion, True)), where)
    if keys == {"text"}:
        return Example((Segment(_text(row, "text", where), True),), where)
    if keys == {"messages"}:
        return _chat(row["messages"], where)
    raise DataError(
        f"{where}: a row has keys {sorted(keys)}; expected exactly "
        '{"prompt", "completion"}, {"text"} or {"messages"}'
    )


def _chat(messages: Any, where: str) -> Example:
    if not isinstance(messages, list) or not messages:
        raise DataError(f'{where}: "messages" must be a non-empty list of messages')
    segments = []
    for index, message in enumerate(messages):
        at = f"{where}: messages[{index}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise DataError(f'{at} must be an object with "role" and "content" only')
        role = _text(message, "role", at)
        content = _text(message, "content", at, allow_empty=True)
        if role == "assistant":
            segments += [Segment(f"{role}: ", False), Segment(f"{content}\n", True)]
        else:
            segments.append(Segment(f"{role}: {content}\n", False))
    if not any(segment.trained for segment in segments):
        raise DataError(f'{where}: the chat has no "assistant" message, so nothing to learn')
    return Example(tuple(segments), where)


def _text(row: dict[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    if key not in row:
        raise DataError(f'{where}: "{key}" is missing')
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f'{where}: "{key}" must be a string, got {type(value).__name__}')
    if not value and not allow_empty:
        raise DataError(f'{where}: "{key}" is empty')
    return value


def render(example: Example, tokenizer: Tokenizer, eos: Sequence[int]) -> Datum:
    """The cross-entropy datum of ``example``: inputs, next-token targets and 0/1 weights.

    ``eos`` (the end-of-sequence ids, or none) is appended, trained like the last part.
    """
    tokens: list[int] = []
    weights: list[float] = []
    for index, segment in enumerate(example.segments):
        ids = tokenizer.encode(segment.text, add_special_tokens=index == 0)
        tokens += ids
        weights += [1.0 if segment.trained else 0.0] * len(ids)
    tokens += eos
    weights += [1.0 if example.segments[-1].trained else 0.0] * len(eos)
    if len(tokens) < 2:
        raise DataError(
            f"{example.where}: the example is {len(tokens)} token(s) long; it needs at least "
            "2 (one to read, one to learn)"
        )
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": TensorData.coerce("target_tokens", tokens[1:]),
            "weights": TensorData.coerce("weights", weights[1:]),
        },
    )

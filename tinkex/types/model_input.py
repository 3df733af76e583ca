"""ModelInput: the sequence of chunks a model reads.

The builders (:meth:`ModelInput.append`, :meth:`ModelInput.append_int`) return new inputs
rather than changing this one, so a prompt shared by many requests cannot change under them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from ._base import WireModel
from .chunks import EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ModelInputChunk

_CHUNK_TYPES = (EncodedTextChunk, ImageChunk, ImageAssetPointerChunk)


class ModelInput(WireModel):
    """A prompt or training input: text-token chunks, images, image pointers."""

    chunks: list[ModelInputChunk]

    @classmethod
    def empty(cls) -> ModelInput:
        """An input with no chunks, to build on with :meth:`append` / :meth:`append_int`."""
        return cls(chunks=[])

    @classmethod
    def from_ints(cls, tokens: Sequence[int]) -> ModelInput:
        # pydantic checks every id in native code (numpy ints and arrays included); a
        # per-element int() here cost more than the rest of building a big batch.
        return cls(chunks=[EncodedTextChunk.model_validate({"tokens": tokens})])

    @classmethod
    def from_text(cls, text: str, tokenizer: Any) -> ModelInput:
        """``text`` tokenized exactly as given (no chat template), as one text chunk.

        ``tokenizer`` is a :class:`tinkex.tokenizers.Tokenizer` (``client.get_tokenizer()``,
        ``tinkex.get_tokenizer(model_name)``) or anything whose ``encode(text)`` returns ids
        or an object with ``.ids``: a ``tokenizers.Tokenizer``, a ``transformers`` tokenizer.
        """
        if not isinstance(text, str):
            raise TypeError(f"ModelInput.from_text: text must be a str, got {type(text).__name__}")
        if isinstance(tokenizer, str) or not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(
                f"ModelInput.from_text: tokenizer must be a tokenizer object with encode(text), "
                f"got {type(tokenizer).__name__}; for a model name use "
                "ModelInput.from_text(text, tinkex.get_tokenizer(name))"
            )
        encoded = tokenizer.encode(text)
        ids = getattr(encoded, "ids", encoded)
        return cls.from_ints(list(ids))

    def to_ints(self) -> list[int]:
        """All tokens, in order; raises if the input holds a non-text chunk."""
        tokens: list[int] = []
        for index, chunk in enumerate(self.chunks):
            if not isinstance(chunk, EncodedTextChunk):
                raise ValueError(
                    f"ModelInput.to_ints: chunk {index} is {chunk.type!r}; only encoded_text "
                    "chunks can be turned into token ids"
                )
            tokens.extend(chunk.tokens)
        return tokens

    @property
    def length(self) -> int:
        """The number of tokens; image chunks count their ``expected_tokens``.

        Raises ``ValueError`` naming the first image chunk without ``expected_tokens``.
        """
        total = 0
        for index, chunk in enumerate(self.chunks):
            if not isinstance(chunk, EncodedTextChunk) and chunk.expected_tokens is None:
                raise ValueError(
                    f"ModelInput.length: chunk {index} is an {chunk.type!r} chunk without "
                    "expected_tokens; only the server knows how many tokens an image takes. "
                    "Build it with expected_tokens=... to count it"
                )
            total += chunk.length
        return total

    def append(self, chunk: ModelInputChunk) -> ModelInput:
        """A new ModelInput with ``chunk`` added at the end, as a chunk of its own."""
        if not isinstance(chunk, _CHUNK_TYPES):
            hint = " (use append_int for a token id)" if isinstance(chunk, int) else ""
            raise TypeError(
                "ModelInput.append: expected an EncodedTextChunk, ImageChunk or "
                f"ImageAssetPointerChunk, got {type(chunk).__name__}{hint}"
            )
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        """A new ModelInput with one more token.

        The token extends a trailing text chunk; after an image (or on an empty input) it
        starts a new text chunk.
        """
        token_id = _token_id(token)
        if self.chunks and isinstance(self.chunks[-1], EncodedTextChunk):
            last = self.chunks[-1]
            return ModelInput(
                chunks=[*self.chunks[:-1], EncodedTextChunk(tokens=[*last.tokens, token_id])]
            )
        return self.append(EncodedTextChunk(tokens=[token_id]))


def _token_id(value: Any) -> int:
    """``value`` as a token id; a ``bool``, float or string is a mistake, not an id."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(
        f"ModelInput.append_int: token is {value!r} ({type(value).__name__}); token ids are ints"
    )

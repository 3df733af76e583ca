"""ModelInput: the sequence of chunks a model reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import WireModel
from .chunks import EncodedTextChunk, ModelInputChunk


class ModelInput(WireModel):
    """A prompt or training input: text-token chunks, images, image pointers."""

    chunks: list[ModelInputChunk]

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(chunks=[])

    @classmethod
    def from_ints(cls, tokens: Sequence[int]) -> ModelInput:
        return cls(chunks=[EncodedTextChunk(tokens=[int(t) for t in tokens])])

    @classmethod
    def from_text(cls, text: str, tokenizer: Any) -> ModelInput:
        """Tokenize ``text`` with ``tokenizer`` (anything with ``encode``); no chat template."""
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
        return sum(chunk.length for chunk in self.chunks)

    def append(self, chunk: ModelInputChunk) -> ModelInput:
        """A new ModelInput with ``chunk`` added at the end."""
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        """A new ModelInput with one more token, merged into a trailing text chunk."""
        if self.chunks and isinstance(self.chunks[-1], EncodedTextChunk):
            last = self.chunks[-1]
            return ModelInput(
                chunks=[*self.chunks[:-1], EncodedTextChunk(tokens=[*last.tokens, int(token)])]
            )
        return self.append(EncodedTextChunk(tokens=[int(token)]))

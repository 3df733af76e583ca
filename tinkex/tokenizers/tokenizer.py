"""One face for every tokenizer: ``encode(text) -> list[int]`` and ``decode(ids) -> str``.

Hugging Face ``tokenizers`` and ``tiktoken`` disagree on nearly everything a caller touches:
one returns an ``Encoding`` object, the other a list; one recognises special-token text by
default, the other raises on it; one skips special tokens when decoding, the other cannot.
Code that feeds a model only needs ids in and text out, so :class:`Tokenizer` fixes one
behaviour for both and keeps the library's own object at hand as :attr:`Tokenizer.backend`.

The common behaviour:

* ``encode`` recognises the literal text of a special token (``"<|eos|>"``) as that token,
  and adds the tokens a Hugging Face post-processor adds (a BOS, say) unless
  ``add_special_tokens=False``. It never applies a chat template: the text is tokenized as
  given, so callers pass fully formatted prompts.
* ``decode`` keeps special tokens unless ``skip_special_tokens=True`` (as ``transformers``
  and ``tiktoken`` do), and rejects an id that is not in the vocabulary instead of silently
  dropping it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import tiktoken
import tokenizers

__all__ = ["HuggingFaceTokenizer", "TiktokenTokenizer", "Tokenizer"]


class Tokenizer(ABC):
    """A loaded tokenizer: text to token ids and back. Thread-safe; share one per id."""

    def __init__(self, tokenizer_id: str) -> None:
        self.tokenizer_id = tokenizer_id
        """The id it was loaded for (a Hugging Face repo id, or a local path)."""

    @property
    @abstractmethod
    def backend(self) -> Any:
        """The library's own object (``tokenizers.Tokenizer`` or ``tiktoken.Encoding``)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """One more than the largest id, special tokens included."""

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """The token ids of ``text`` (no chat template is ever applied)."""
        if not isinstance(text, str):
            raise TypeError(
                f"encode(text): text must be a str, got {type(text).__name__}; "
                "decode bytes first (text.decode('utf-8'))"
            )
        return self._encode(text, add_special_tokens)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; special tokens appear as their text unless skipped."""
        return self._decode(self._checked_ids(ids), skip_special_tokens)

    @abstractmethod
    def _encode(self, text: str, add_special_tokens: bool) -> list[int]: ...

    @abstractmethod
    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str: ...

    def _checked_ids(self, ids: Sequence[int]) -> list[int]:
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
            raise TypeError(
                f"decode(ids): ids must be a sequence of ints, got {type(ids).__name__}"
            )
        checked: list[int] = []
        for index, token in enumerate(ids):
            if isinstance(token, bool) or not isinstance(token, int):
                raise TypeError(
                    f"decode(ids): ids[{index}] is a {type(token).__name__}, not an int"
                )
            if not 0 <= token < self.vocab_size:
                raise ValueError(
                    f"decode(ids): ids[{index}] = {token} is not a token id of "
                    f"{self.tokenizer_id} (ids are 0..{self.vocab_size - 1})"
                )
            checked.append(int(token))
        return checked

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(tokenizer_id={self.tokenizer_id!r}, "
            f"vocab_size={self.vocab_size})"
        )


class HuggingFaceTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (what a ``tokenizer.json`` holds)."""

    def __init__(self, tokenizer_id: str, backend: tokenizers.Tokenizer) -> None:
        super().__init__(tokenizer_id)
        self._backend = backend
        self._vocab_size = backend.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> tokenizers.Tokenizer:
        return self._backend

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids: list[int] = self._backend.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        text: str = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        return text


class TiktokenTokenizer(Tokenizer):
    """A ``tiktoken.Encoding`` built from a ranks file and its special tokens.

    ``add_special_tokens`` has no effect: tiktoken has no post-processor that adds any.
    """

    def __init__(
        self, tokenizer_id: str, backend: tiktoken.Encoding, special_tokens: Mapping[str, int]
    ) -> None:
        super().__init__(tokenizer_id)
        self._backend = backend
        self._special_ids = frozenset(special_tokens.values())

    @property
    def backend(self) -> tiktoken.Encoding:
        return self._backend

    @property
    def vocab_size(self) -> int:
        size: int = self._backend.n_vocab
        return size

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids: list[int] = self._backend.encode(text, allowed_special="all")
        return ids

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        if skip_special_tokens:
            ids = [token for token in ids if token not in self._special_ids]
        try:
            text: str = self._backend.decode(ids)
        except KeyError:
            missing = next(t for t in ids if not self._is_token(t))
            raise ValueError(
                f"decode(ids): {missing} is not a token id of {self.tokenizer_id} (its "
                "vocabulary has a gap there)"
            ) from None
        return text

    def _is_token(self, token: int) -> bool:
        if token in self._special_ids:
            return True
        try:
            self._backend.decode_single_token_bytes(token)
        except KeyError:
            return False
        return True

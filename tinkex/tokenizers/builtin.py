"""The built-in byte-level tokenizer, built offline with the ``tokenizers`` package.

Ids ``0..255`` are the bytes ``0x00..0xFF`` themselves, so any text round-trips through its
UTF-8 encoding. Each byte is spelled in the vocabulary with the usual byte-to-printable-
character alphabet of byte-level BPE (so the ``ByteLevel`` pre-tokenizer and decoder do the
byte mapping), and there are no merges: one byte, one token. Three special tokens follow at
fixed ids: ``<|bos|>`` = 256, ``<|eos|>`` = 257, ``<|pad|>`` = 258 (vocabulary size 259).

As with every Hugging Face tokenizer, the literal text of a special token (``"<|eos|>"``)
inside the input encodes to that special token, and ``decode`` drops special tokens unless
``skip_special_tokens=False``. There is no chat template.

This module is the one piece ``tinkex.local`` shares with the client besides ``types`` and
``protocol``: the server's built-in model and the client's tokenizer lookup must agree on
the tokenizer byte for byte, and both build it here, offline. It imports nothing of tinkex.
"""

from __future__ import annotations

import functools

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

__all__ = [
    "BOS_TOKEN",
    "BYTE_TOKENIZER_ID",
    "BYTE_VOCAB_SIZE",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "build_byte_tokenizer",
    "byte_tokenizer_special_ids",
]

BYTE_TOKENIZER_ID = "tinkex/byte-level"
BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
_SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
BYTE_VOCAB_SIZE = 256 + len(_SPECIAL_TOKENS)


def byte_tokenizer_special_ids() -> dict[str, int]:
    """The fixed ids of the special tokens: ``{"<|bos|>": 256, "<|eos|>": 257, "<|pad|>": 258}``."""
    return {token: 256 + i for i, token in enumerate(_SPECIAL_TOKENS)}


def _byte_alphabet() -> list[str]:
    """The printable character that stands for each byte (index = byte value).

    Bytes that are visible Latin-1 characters keep their own code point; the other 68 bytes
    (controls, space, NBSP, soft hyphen) take code points 256, 257, ... in byte order. This is
    the alphabet the ``ByteLevel`` pre-tokenizer and decoder of ``tokenizers`` use.
    """
    visible = {
        *range(ord("!"), ord("~") + 1),
        *range(0xA1, 0xAC + 1),
        *range(0xAE, 0xFF + 1),
    }
    alphabet: list[str] = []
    shifted = 0
    for byte in range(256):
        if byte in visible:
            alphabet.append(chr(byte))
        else:
            alphabet.append(chr(256 + shifted))
            shifted += 1
    return alphabet


@functools.cache
def build_byte_tokenizer() -> Tokenizer:
    """The byte-level tokenizer (cached: treat the returned object as read-only)."""
    vocab = {char: byte for byte, char in enumerate(_byte_alphabet())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in _SPECIAL_TOKENS]
    )
    for token, expected in byte_tokenizer_special_ids().items():
        if tokenizer.token_to_id(token) != expected:  # pragma: no cover - tokenizers invariant
            raise RuntimeError(f"byte tokenizer: {token} got id {tokenizer.token_to_id(token)}")
    return tokenizer

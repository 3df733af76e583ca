"""Tokenizers that ship with tinkex (no download needed)."""

from .builtin import (
    BOS_TOKEN,
    BYTE_TOKENIZER_ID,
    BYTE_VOCAB_SIZE,
    EOS_TOKEN,
    PAD_TOKEN,
    build_byte_tokenizer,
    byte_tokenizer_special_ids,
)

__all__ = [
    "BOS_TOKEN",
    "BYTE_TOKENIZER_ID",
    "BYTE_VOCAB_SIZE",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "build_byte_tokenizer",
    "byte_tokenizer_special_ids",
]

"""Tokenizers: which one a model uses, and loading it from the Hub, local files or tinkex.

This package resolves and loads, uncached. Programs use the cached entry points, which load
each tokenizer once per process through the runtime's ``TokenizerCache`` actor:
``tinkex.get_tokenizer(...)``, ``TrainingClient.get_tokenizer()`` and
``SamplingClient.get_tokenizer()``. See ``docs/tokenizers.md``.
"""

from .builtin import (
    BOS_TOKEN,
    BYTE_TOKENIZER_ID,
    BYTE_VOCAB_SIZE,
    EOS_TOKEN,
    PAD_TOKEN,
    build_byte_tokenizer,
    byte_tokenizer_special_ids,
)
from .hub import HubSettings, hub_settings
from .kimi import KIMI_PATTERN, KIMI_REVISIONS, is_kimi
from .loading import load_tokenizer
from .resolution import (
    BUILTIN_MODEL_TOKENIZERS,
    LLAMA3_TOKENIZER_ID,
    PathArg,
    TokenizerSource,
    normalize_tokenizer_id,
    resolve_tokenizer_id,
)
from .tokenizer import HuggingFaceTokenizer, TiktokenTokenizer, Tokenizer

__all__ = [
    "BOS_TOKEN",
    "BUILTIN_MODEL_TOKENIZERS",
    "BYTE_TOKENIZER_ID",
    "BYTE_VOCAB_SIZE",
    "EOS_TOKEN",
    "KIMI_PATTERN",
    "KIMI_REVISIONS",
    "LLAMA3_TOKENIZER_ID",
    "PAD_TOKEN",
    "HubSettings",
    "HuggingFaceTokenizer",
    "PathArg",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerSource",
    "build_byte_tokenizer",
    "byte_tokenizer_special_ids",
    "hub_settings",
    "is_kimi",
    "load_tokenizer",
    "normalize_tokenizer_id",
    "resolve_tokenizer_id",
]

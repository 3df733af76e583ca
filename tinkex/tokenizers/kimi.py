"""Kimi (Moonshot AI) tokenizers: ``tiktoken`` BPE from ``tiktoken.model`` and its config.

Kimi repositories ship no ``tokenizer.json``. Their tokenizer is a tiktoken byte-pair
encoding: ``tiktoken.model`` lists every token as ``<base64 bytes> <rank>``, one per line,
and the special tokens take the 256 ids after the last rank, named by
``tokenizer_config.json``'s ``added_tokens_decoder`` (unnamed slots are
``<|reserved_token_<id>|>``). Text is first split with Kimi's own pattern (Han runs apart
from other letters, digits in threes, ...), which :data:`KIMI_PATTERN` holds.

The two files come from the Hub at a pinned revision (the files of a moving ``main`` could
change token ids under a trained model), or from local paths. The ranks file is parsed here
rather than with ``tiktoken.load``, which would copy every local file it reads into a cache
directory of its own under the system temp dir.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Final

import tiktoken

from tinkex.errors import TokenizerError

from .hub import hub_download
from .tokenizer import TiktokenTokenizer

__all__ = [
    "KIMI_PATTERN",
    "KIMI_REVISIONS",
    "NUM_RESERVED_SPECIAL_TOKENS",
    "TIKTOKEN_MODEL_FILE",
    "TOKENIZER_CONFIG_FILE",
    "build_tiktoken_tokenizer",
    "is_kimi",
    "kimi_hub_files",
    "read_ranks",
    "special_tokens",
]

TIKTOKEN_MODEL_FILE: Final = "tiktoken.model"
TOKENIZER_CONFIG_FILE: Final = "tokenizer_config.json"
NUM_RESERVED_SPECIAL_TOKENS: Final = 256

KIMI_PATTERN: Final = "|".join(
    [
        r"[\p{Han}]+",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"
        r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"
        r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
"""The pre-tokenization split of Kimi's tokenizers (one alternation)."""

_K2_5: Final = ("moonshotai/Kimi-K2.5", "4d01dfe0332d63057c186e0b262165819efb6611")

KIMI_REVISIONS: Final[dict[str, tuple[str, str]]] = {
    "moonshotai/Kimi-K2-Thinking": (
        "moonshotai/Kimi-K2-Thinking",
        "612681931a8c906ddb349f8ad0f582cb552189cd",
    ),
    "moonshotai/Kimi-K2.5": _K2_5,
    "moonshotai/Kimi-K2.5-Text-Only": _K2_5,
    "moonshotai/Kimi-K2.6": (
        "moonshotai/Kimi-K2.6",
        "b5aabbfb20227ed42becbf5541dbffd213942c58",
    ),
    "moonshotai/Kimi-K3": (
        "moonshotai/Kimi-K3",
        "f831ab66814297da540d832a5235f8e904f29d06",
    ),
}
"""Tokenizer id → (Hub repo, pinned revision) for the Kimi models Tinker serves. Other
``moonshotai/Kimi-*`` ids are read at ``main`` unless a revision is given."""


def is_kimi(tokenizer_id: str) -> bool:
    """Whether ``tokenizer_id`` names a Kimi repository (loaded with tiktoken)."""
    return tokenizer_id in KIMI_REVISIONS or tokenizer_id.startswith("moonshotai/Kimi-")


def kimi_hub_files(
    tokenizer_id: str, *, revision: str | None = None, cache_dir: str | None = None
) -> tuple[Path, Path]:
    """``tiktoken.model`` and ``tokenizer_config.json`` of a Kimi repo, from the Hub cache."""
    repo, pinned = KIMI_REVISIONS.get(tokenizer_id, (tokenizer_id, None))
    ranks, config = hub_download(
        repo,
        (TIKTOKEN_MODEL_FILE, TOKENIZER_CONFIG_FILE),
        revision=revision or pinned,
        cache_dir=cache_dir,
        local_hint=(
            f"pass tiktoken_model_path= and tokenizer_config_path= (the {TIKTOKEN_MODEL_FILE} "
            f"and {TOKENIZER_CONFIG_FILE} of {repo}), or tokenizer_id= a directory holding both"
        ),
    )
    return ranks, config


def build_tiktoken_tokenizer(
    tokenizer_id: str, ranks_path: Path, config_path: Path
) -> TiktokenTokenizer:
    """A tiktoken tokenizer with Kimi's split pattern from the two files."""
    ranks = read_ranks(ranks_path)
    specials = special_tokens(_read_config(config_path), len(ranks), config_path)
    clashes = sorted(set(specials.values()) & set(ranks.values()))
    if clashes:
        raise TokenizerError(
            f"{config_path}: special token id {clashes[0]} is also the rank of an ordinary "
            f"token in {ranks_path}; special tokens must use ids after the last rank"
        )
    encoding = tiktoken.Encoding(
        name=tokenizer_id,
        pat_str=KIMI_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=specials,
    )
    return TiktokenTokenizer(tokenizer_id, encoding, specials)


def read_ranks(path: Path) -> dict[bytes, int]:
    """The ``<base64 token> <rank>`` lines of a tiktoken ranks file."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise TokenizerError(f"cannot read the tiktoken ranks file {path}: {exc}") from exc
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            token_b64, rank_text = line.split()
            token = base64.b64decode(token_b64, validate=True)
            rank = int(rank_text)
        except (ValueError, binascii.Error):
            raise TokenizerError(
                f"{path}, line {number}: expected '<base64 token> <rank>', got "
                f"{line[:80]!r}; is this a tiktoken.model file?"
            ) from None
        if token in ranks:
            raise TokenizerError(f"{path}, line {number}: token {token!r} is listed twice")
        ranks[token] = rank
    if not ranks:
        raise TokenizerError(f"{path} holds no tokens; is this a tiktoken.model file?")
    return ranks


def special_tokens(config: dict[str, Any], num_base_tokens: int, path: Path) -> dict[str, int]:
    """Special token text → id: the named ``added_tokens_decoder`` entries, and the
    reserved slots after the ordinary tokens that none of them names."""
    decoder = config.get("added_tokens_decoder", {})
    if not isinstance(decoder, dict):
        raise TokenizerError(f"{path}: added_tokens_decoder must be an object of id → token")
    named: dict[str, int] = {}
    for key, entry in decoder.items():
        content = entry.get("content") if isinstance(entry, dict) else None
        if not isinstance(content, str) or not str(key).isdigit():
            raise TokenizerError(
                f"{path}: added_tokens_decoder[{key!r}] must map a numeric id to an object "
                "with a 'content' string"
            )
        if content in named:
            raise TokenizerError(f"{path}: special token {content!r} is listed twice")
        named[content] = int(key)
    taken = set(named.values())
    reserved = range(num_base_tokens, num_base_tokens + NUM_RESERVED_SPECIAL_TOKENS)
    for token_id in reserved:
        if token_id not in taken:
            named[f"<|reserved_token_{token_id}|>"] = token_id
    return named


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TokenizerError(f"cannot read the tokenizer config {path}: {exc}") from exc
    except ValueError as exc:
        raise TokenizerError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise TokenizerError(f"{path} must hold a JSON object (a tokenizer_config.json)")
    return config

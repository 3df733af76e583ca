"""Load the tokenizer a :class:`~.resolution.TokenizerSource` names, uncached.

Where the files come from, first match wins:

1. ``tinkex/byte-level``: built in, nothing to read.
2. ``tiktoken_model_path`` + ``tokenizer_config_path``: a tiktoken (Kimi) tokenizer from
   those two files.
3. a local path: a ``tokenizer.json`` file; or a directory holding ``tokenizer.json``, or
   else ``tiktoken.model`` and ``tokenizer_config.json``.
4. a Kimi repo id (``moonshotai/Kimi-*``): its two tiktoken files from the Hub cache, at the
   pinned revision unless one is given.
5. any other repo id: its ``tokenizer.json`` from the Hub cache. Thinking Machines' own
   ids (``TML/...``, ``thinkingmachines/...``) are tried there too, but they are not
   published: the official SDK gets them from a private ``tml_tokenizers`` package, so
   their error says to pass the files instead of blaming the Hub.

Use the cached ``tinkex.get_tokenizer`` in programs; this module does the actual work for it
(and for tests that count loads).
"""

from __future__ import annotations

from pathlib import Path

import tokenizers

from tinkex import telemetry
from tinkex.errors import TokenizerError

from .builtin import BYTE_TOKENIZER_ID, build_byte_tokenizer
from .hub import hub_download, hub_settings
from .kimi import (
    TIKTOKEN_MODEL_FILE,
    TOKENIZER_CONFIG_FILE,
    build_tiktoken_tokenizer,
    is_kimi,
    kimi_hub_files,
)
from .resolution import TokenizerSource
from .tokenizer import HuggingFaceTokenizer, Tokenizer

__all__ = ["TOKENIZER_FILE", "load_tokenizer"]

TOKENIZER_FILE = "tokenizer.json"
_TML_PREFIXES = ("TML/", "thinkingmachines/")


def load_tokenizer(source: TokenizerSource | str) -> Tokenizer:
    """Load the tokenizer ``source`` names (a resolved source, or a tokenizer id or path).

    Emits the ``tinkex.tokenizer.load`` span (``start`` / ``stop`` / ``exception``, metadata
    ``tokenizer_id``). Raises :class:`~tinkex.errors.TokenizerError` naming the id, where it
    was looked for and how to provide the files offline.
    """
    if isinstance(source, str):
        source = TokenizerSource.resolve(tokenizer_id=source)
    with telemetry.span("tinkex.tokenizer.load", {"tokenizer_id": source.tokenizer_id}):
        try:
            return _load(source)
        except TokenizerError as exc:
            if exc.tokenizer_id is not None:
                raise
            raise TokenizerError(
                f"cannot load tokenizer {source.tokenizer_id}: {exc.message}",
                tokenizer_id=source.tokenizer_id,
            ) from exc


def _load(source: TokenizerSource) -> Tokenizer:
    tokenizer_id = source.tokenizer_id
    if tokenizer_id == BYTE_TOKENIZER_ID:
        return HuggingFaceTokenizer(tokenizer_id, build_byte_tokenizer())
    if source.tiktoken_model_path is not None and source.tokenizer_config_path is not None:
        ranks, config = Path(source.tiktoken_model_path), Path(source.tokenizer_config_path)
        for given in (ranks, config):
            if not given.is_file():
                raise TokenizerError(f"{given} does not exist (or is not a file)")
        return build_tiktoken_tokenizer(tokenizer_id, ranks, config)
    local = source.local_path
    if local is not None:
        return _load_local(tokenizer_id, local)
    if is_kimi(tokenizer_id):
        ranks, config = kimi_hub_files(
            tokenizer_id, revision=source.revision, cache_dir=source.cache_dir
        )
        return build_tiktoken_tokenizer(tokenizer_id, ranks, config)
    local_hint = (
        f"pass tokenizer_id= the path of its {TOKENIZER_FILE} (or of a directory holding it)"
    )
    try:
        (path,) = hub_download(
            tokenizer_id,
            (TOKENIZER_FILE,),
            revision=source.revision,
            cache_dir=source.cache_dir,
            local_hint=local_hint,
        )
    except TokenizerError as exc:
        if not tokenizer_id.startswith(_TML_PREFIXES):
            raise
        raise TokenizerError(
            f"cannot load tokenizer {tokenizer_id}: Thinking Machines' own tokenizers "
            f"({', '.join(p + '...' for p in _TML_PREFIXES)}) are not published on the Hugging "
            "Face Hub (the official tinker SDK loads them from its private tml_tokenizers "
            "package, which tinkex does not use), and the Hub did not provide it either (looked "
            f"in the Hugging Face cache at {hub_settings(source.cache_dir).cache_dir}). If you "
            f"have its files, {local_hint}",
            tokenizer_id=tokenizer_id,
        ) from exc
    return _from_json(tokenizer_id, path)


def _load_local(tokenizer_id: str, path: Path) -> Tokenizer:
    if path.is_file():
        return _from_json(tokenizer_id, path)
    if not path.is_dir():
        raise TokenizerError(
            f"{path} does not exist; pass the path of a {TOKENIZER_FILE}, or of a directory "
            f"holding {TOKENIZER_FILE} (or {TIKTOKEN_MODEL_FILE} and {TOKENIZER_CONFIG_FILE})"
        )
    if (path / TOKENIZER_FILE).is_file():
        return _from_json(tokenizer_id, path / TOKENIZER_FILE)
    ranks, config = path / TIKTOKEN_MODEL_FILE, path / TOKENIZER_CONFIG_FILE
    if ranks.is_file() and config.is_file():
        return build_tiktoken_tokenizer(tokenizer_id, ranks, config)
    raise TokenizerError(
        f"the directory {path} holds neither {TOKENIZER_FILE} nor {TIKTOKEN_MODEL_FILE} with "
        f"{TOKENIZER_CONFIG_FILE}; save the tokenizer there (tokenizer.save('{TOKENIZER_FILE}') "
        "or save_pretrained) or pass the path of the file itself"
    )


def _from_json(tokenizer_id: str, path: Path) -> HuggingFaceTokenizer:
    try:
        backend = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception on malformed files
        raise TokenizerError(
            f"{path} is not a Hugging Face tokenizer.json ({exc}); save one with "
            "tokenizers.Tokenizer.save() or transformers' save_pretrained()"
        ) from exc
    return HuggingFaceTokenizer(tokenizer_id, backend)

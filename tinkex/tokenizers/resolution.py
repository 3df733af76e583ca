"""Which tokenizer a model uses: tokenizer ids, local paths, and the rules that map names.

The server says which tokenizer a trained model uses (``model_data.tokenizer_id`` of
``get_info``); a sampler only knows its base model's name, so the id is derived from that:

* a local path is kept whole and made absolute, before any rule below (``tinkex serve``
  names a model it serves from a directory by that directory's path: ``/opt/qwen`` must not
  become the repo id ``/opt``); see :meth:`TokenizerSource.resolve` for what counts as one;
* a ``:revision`` suffix is dropped (``"org/model:abc123"`` → ``"org/model"``);
* the built-in models of ``tinkex serve`` (``tinkex/tiny-llama``, ``tinkex/zero``) use the
  byte-level tokenizer that ships with tinkex (id ``tinkex/byte-level``), no download;
* ``meta-llama/Llama-3*`` uses ``thinkingmachineslabinc/meta-llama-3-tokenizer``, an ungated
  copy of the Llama 3 tokenizer (the ``meta-llama`` repos need an approved account);
* ``org/model/variant`` uses ``org/model`` (variants share their model's tokenizer);
* any other name is its own tokenizer id.

A :class:`TokenizerSource` is the resolved id plus where its files may come from; it is
hashable, and it is what the tokenizer cache keys loaded tokenizers by.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tinkex.errors import TokenizerError

from .builtin import BYTE_TOKENIZER_ID

__all__ = [
    "BUILTIN_MODEL_TOKENIZERS",
    "LLAMA3_TOKENIZER_ID",
    "PathArg",
    "TokenizerSource",
    "normalize_tokenizer_id",
    "resolve_tokenizer_id",
]

PathArg = str | os.PathLike[str]

LLAMA3_TOKENIZER_ID: Final = "thinkingmachineslabinc/meta-llama-3-tokenizer"

BUILTIN_MODEL_TOKENIZERS: Final[dict[str, str]] = {
    "tinkex/tiny-llama": BYTE_TOKENIZER_ID,
    "tinkex/zero": BYTE_TOKENIZER_ID,
}
"""The models ``tinkex serve`` ships, by name, and the offline tokenizer each one uses."""

_PATH_PREFIXES: Final = ("/", "./", "../", "~", ".\\", "..\\")


def normalize_tokenizer_id(ref: str) -> str:
    """``ref`` without a ``:revision`` suffix (everything from the first ``:`` on)."""
    return ref.split(":", 1)[0]


def resolve_tokenizer_id(model_name: str | None = None, tokenizer_id: PathArg | None = None) -> str:
    """The tokenizer id to load: ``tokenizer_id`` if given, else derived from ``model_name``.

    See the module docs for the rules; a local path (either argument) comes back absolute.
    Raises :class:`TokenizerError` when both are missing.
    """
    if tokenizer_id:
        if _is_path(tokenizer_id):
            return str(_absolute(tokenizer_id))
        return normalize_tokenizer_id(str(tokenizer_id))
    if not model_name:
        raise TokenizerError(
            "no tokenizer to resolve: pass a model name (e.g. 'Qwen/Qwen3-8B') or a "
            "tokenizer_id (a Hugging Face repo id or a local path)"
        )
    if _is_path(model_name):
        return str(_absolute(model_name))
    name = normalize_tokenizer_id(model_name)
    if name in BUILTIN_MODEL_TOKENIZERS:
        return BUILTIN_MODEL_TOKENIZERS[name]
    if name.startswith("meta-llama/Llama-3"):
        return LLAMA3_TOKENIZER_ID
    parts = name.split("/")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}"
    return name


@dataclass(frozen=True)
class TokenizerSource:
    """A resolved tokenizer id and where its files come from; the tokenizer cache's key.

    ``tokenizer_id`` is a Hugging Face repo id (``"Qwen/Qwen3-8B"``), the built-in
    ``"tinkex/byte-level"``, or an absolute local path (a ``tokenizer.json`` file, or a
    directory holding one, or holding ``tiktoken.model`` and ``tokenizer_config.json``).
    ``revision`` and ``cache_dir`` are passed to the Hugging Face Hub; ``tiktoken_model_path``
    and ``tokenizer_config_path`` give a tiktoken tokenizer's (Kimi's) two files directly.
    Build one with :meth:`resolve`, which checks the arguments.
    """

    tokenizer_id: str
    revision: str | None = None
    cache_dir: str | None = None
    tiktoken_model_path: str | None = None
    tokenizer_config_path: str | None = None

    @property
    def local_path(self) -> Path | None:
        """The local file or directory to load from, if ``tokenizer_id`` is a path."""
        path = Path(self.tokenizer_id)
        return path if path.is_absolute() else None

    @classmethod
    def resolve(
        cls,
        model_name: str | None = None,
        *,
        tokenizer_id: PathArg | None = None,
        revision: str | None = None,
        cache_dir: PathArg | None = None,
        tiktoken_model_path: PathArg | None = None,
        tokenizer_config_path: PathArg | None = None,
    ) -> TokenizerSource:
        """Resolve ``model_name`` / ``tokenizer_id`` (see the module docs) into a source.

        ``tokenizer_id``, or else ``model_name``, may be a local path: an ``os.PathLike``, or a
        string that names an existing file or directory, starts with ``/``, ``./``, ``../``
        or ``~``, or ends in ``.json``. A path is made absolute and kept as is (no
        ``:revision`` stripping, no name rules).
        """
        if (tiktoken_model_path is None) != (tokenizer_config_path is None):
            alone = (
                "tokenizer_config_path" if tiktoken_model_path is None else "tiktoken_model_path"
            )
            raise TokenizerError(
                f"{alone} was given alone: a tiktoken tokenizer needs both tiktoken_model_path "
                "(the ranks file, tiktoken.model) and tokenizer_config_path "
                "(tokenizer_config.json, for its special tokens)"
            )
        if isinstance(tokenizer_id, str) and not tokenizer_id.strip():
            tokenizer_id = None  # servers send "" for "unknown": fall back to the model name
        if tokenizer_id is not None and not isinstance(tokenizer_id, str | os.PathLike):
            raise TypeError(
                f"tokenizer_id must be a str or a path, got {type(tokenizer_id).__name__}"
            )
        if model_name is not None and not isinstance(model_name, str):
            raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
        return cls(
            tokenizer_id=resolve_tokenizer_id(model_name, tokenizer_id),
            revision=revision,
            cache_dir=_absolute_or_none(cache_dir),
            tiktoken_model_path=_absolute_or_none(tiktoken_model_path),
            tokenizer_config_path=_absolute_or_none(tokenizer_config_path),
        )


def _is_path(value: PathArg) -> bool:
    if not isinstance(value, str):
        return isinstance(value, os.PathLike)
    return value.startswith(_PATH_PREFIXES) or value.endswith(".json") or Path(value).exists()


def _absolute(value: PathArg) -> Path:
    return Path(value).expanduser().absolute()


def _absolute_or_none(value: PathArg | None) -> str | None:
    return None if value is None else str(_absolute(value))

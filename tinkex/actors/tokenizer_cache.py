"""The tokenizer cache: every tokenizer is loaded once per process and then shared.

Loading a tokenizer reads (and may download) a file of megabytes and builds a large table,
so the runtime keeps every one it loaded, by :class:`~tinkex.tokenizers.TokenizerSource`,
for the life of the process, like the ETS table of the Elixir original (no eviction).

Why the actor never loads anything itself: a load can take seconds (a download) and a
mailbox is a queue, so a load inside a handler would hold up every other caller, even those
asking for a tokenizer that is already loaded. The actor only does the bookkeeping, which
is quick: ``get(source)`` answers with a future at once; the first ask for a source starts
its load in a thread of its own, and every ask for the same source while it loads gets the
same future, so concurrent first uses load it once. Unrelated sources load side by side.

What survives a crash: the table of loaded and loading tokenizers lives in the actor's
supervisor-owned store, so a restarted cache still has them, and a load that was running
when the actor died still completes into the same future. A failed load is not kept: the
next ask tries again (after the user fixed the path, filled the cache, ...).

Encoding and decoding never run in the actor either: :func:`encode` and :func:`decode` get
the shared tokenizer from it and do the work in the calling thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypedDict, Unpack

from tinkex.tokenizers import PathArg, Tokenizer, TokenizerSource, load_tokenizer

from .base import TinkexActor

__all__ = [
    "TokenizerCache",
    "TokenizerOptions",
    "TokenizerTable",
    "decode",
    "encode",
    "get_tokenizer",
]

Loader = Callable[[TokenizerSource], Tokenizer]


class TokenizerTable:
    """Tokenizers by source, loaded or loading; thread-safe (load threads finish into it)."""

    def __init__(self) -> None:
        self._entries: dict[TokenizerSource, Future[Tokenizer]] = {}
        self._lock = threading.Lock()

    def claim(self, source: TokenizerSource) -> tuple[Future[Tokenizer], bool]:
        """The future of ``source``, and whether it is new (then the caller must load it)."""
        with self._lock:
            future = self._entries.get(source)
            if future is not None:
                return future, False
            future = self._entries[source] = Future()
            return future, True

    def fill(self, source: TokenizerSource, future: Future[Tokenizer], loader: Loader) -> None:
        """Load ``source`` into ``future``; on failure, forget it first so a retry reloads."""
        try:
            tokenizer = loader(source)
        except BaseException as exc:
            self.forget(source, future)
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(tokenizer)

    def forget(self, source: TokenizerSource, future: Future[Tokenizer]) -> None:
        with self._lock:
            if self._entries.get(source) is future:
                del self._entries[source]

    def loaded(self) -> list[TokenizerSource]:
        """The sources whose tokenizer is loaded (not those still loading)."""
        with self._lock:
            # failed loads are forgotten before their future fails: done means loaded
            return [source for source, future in self._entries.items() if future.done()]


class TokenizerCache(TinkexActor):
    """Hands out shared tokenizers; loads each source once, in a thread of its own.

    ``loader`` loads one source (default :func:`~tinkex.tokenizers.load_tokenizer`); tests
    pass a counting one.
    """

    def __init__(self, loader: Loader = load_tokenizer) -> None:
        super().__init__()
        self._loader = loader

    def init(self) -> None:
        self._table: TokenizerTable = self.store.setdefault("tokenizers", TokenizerTable())

    def get(self, source: TokenizerSource) -> Future[Tokenizer]:
        """The future tokenizer of ``source``; starts its load on the first ask."""
        if not isinstance(source, TokenizerSource):
            raise TypeError(
                f"TokenizerCache.get needs a TokenizerSource, got {type(source).__name__} "
                "(build one with TokenizerSource.resolve(model_name, tokenizer_id=...))"
            )
        future, new = self._table.claim(source)
        if new:
            loader = threading.Thread(
                target=self._table.fill,
                args=(source, future, self._loader),
                name=f"tinkex-tokenizer-load:{source.tokenizer_id}",
                daemon=True,
            )
            try:
                loader.start()
            except BaseException:
                self._table.forget(source, future)
                raise
        return future

    def loaded(self) -> list[TokenizerSource]:
        """The sources loaded so far (a diagnostic)."""
        return self._table.loaded()


class TokenizerOptions(TypedDict, total=False):
    """The keywords of :func:`get_tokenizer` besides the model name, for the shortcuts."""

    tokenizer_id: PathArg | None
    revision: str | None
    cache_dir: PathArg | None
    tiktoken_model_path: PathArg | None
    tokenizer_config_path: PathArg | None
    timeout: float | None


def get_tokenizer(
    model_name: str | None = None,
    *,
    tokenizer_id: PathArg | None = None,
    revision: str | None = None,
    cache_dir: PathArg | None = None,
    tiktoken_model_path: PathArg | None = None,
    tokenizer_config_path: PathArg | None = None,
    timeout: float | None = None,
) -> Tokenizer:
    """The tokenizer of ``model_name`` (or ``tokenizer_id``), loaded once per process.

    ``tokenizer_id`` wins over the name-based rules and may be a Hugging Face repo id or a
    local path (a ``tokenizer.json``, or a directory holding one, or holding Kimi's
    ``tiktoken.model`` and ``tokenizer_config.json``). ``revision`` and ``cache_dir`` go to
    the Hugging Face Hub; ``tiktoken_model_path`` and ``tokenizer_config_path`` give a Kimi
    tokenizer's files directly. Waits up to ``timeout`` seconds (default: as long as the
    load takes) and raises :class:`~tinkex.errors.TokenizerError` if it cannot be loaded.
    """
    source = TokenizerSource.resolve(
        model_name,
        tokenizer_id=tokenizer_id,
        revision=revision,
        cache_dir=cache_dir,
        tiktoken_model_path=tiktoken_model_path,
        tokenizer_config_path=tokenizer_config_path,
    )
    # Imported here because the runtime module imports this one to build its tree.
    from .runtime import Runtime

    runtime = Runtime.get()
    future: Future[Tokenizer] = runtime.call("tokenizer_cache", "get", source)
    return runtime.future(future).result(timeout)


def encode(
    text: str,
    model_name: str | None = None,
    *,
    add_special_tokens: bool = True,
    **options: Unpack[TokenizerOptions],
) -> list[int]:
    """``text`` tokenized by the cached tokenizer of ``model_name``; ``options`` are those of
    :func:`get_tokenizer` (``tokenizer_id``, ``revision``, ``cache_dir``, ...)."""
    tokenizer = get_tokenizer(model_name, **options)
    return tokenizer.encode(text, add_special_tokens=add_special_tokens)


def decode(
    ids: Sequence[int],
    model_name: str | None = None,
    *,
    skip_special_tokens: bool = False,
    **options: Unpack[TokenizerOptions],
) -> str:
    """``ids`` decoded by the cached tokenizer of ``model_name``; ``options`` are those of
    :func:`get_tokenizer` (``tokenizer_id``, ``revision``, ``cache_dir``, ...)."""
    tokenizer = get_tokenizer(model_name, **options)
    return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

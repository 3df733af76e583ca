"""The TokenizerCache actor under a real supervisor: one load per source, no head-of-line
blocking, and a cache that outlives a crash of the actor.

Each test runs its own supervisor with a loader it controls (it counts loads and can hold
one until the test releases it), so nothing depends on timing: tests wait on events.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.supervision.helpers import WAIT, Signals
from tinkex import telemetry
from tinkex.actors.tokenizer_cache import TokenizerCache
from tinkex.errors import TokenizerError
from tinkex.supervision import ChildSpec, Registry, Supervisor
from tinkex.tokenizers import BYTE_TOKENIZER_ID, Tokenizer, TokenizerSource, load_tokenizer

BYTES = TokenizerSource(BYTE_TOKENIZER_ID)
SLOW = TokenizerSource("acme/slow")
BROKEN = TokenizerSource("acme/broken")


class Loader:
    """Counts loads; ``hold(source)`` makes that source's load wait for ``release``."""

    def __init__(self) -> None:
        self.calls: Counter[TokenizerSource] = Counter()
        self.started: dict[TokenizerSource, threading.Event] = {}
        self._gates: dict[TokenizerSource, threading.Event] = {}
        self._lock = threading.Lock()
        self.fail_next: set[TokenizerSource] = set()

    def hold(self, source: TokenizerSource) -> None:
        self._gates[source] = threading.Event()
        self.started[source] = threading.Event()

    def release(self, source: TokenizerSource) -> None:
        self._gates[source].set()

    def release_all(self) -> None:
        for gate in self._gates.values():
            gate.set()

    def __call__(self, source: TokenizerSource) -> Tokenizer:
        with self._lock:
            self.calls[source] += 1
            fail = source in self.fail_next
            self.fail_next.discard(source)
        if source in self.started:
            self.started[source].set()
        gate = self._gates.get(source)
        if gate is not None:
            assert gate.wait(WAIT), "the test never released this load"
        if fail:
            raise TokenizerError(f"cannot load tokenizer {source.tokenizer_id}: broken")
        # every source gets the (real) byte tokenizer, as a fresh object per load
        return load_tokenizer(TokenizerSource(BYTE_TOKENIZER_ID))


class Tree:
    """A supervisor with one TokenizerCache child, found by name like the runtime finds it."""

    def __init__(self, loader: Loader) -> None:
        self.registry = Registry()
        self.supervisor = Supervisor.start(
            [ChildSpec("tokenizer_cache", TokenizerCache, kwargs={"loader": loader})],
            registry=self.registry,
            name="test-tokenizers",
        )

    def get(self, source: TokenizerSource) -> Future[Tokenizer]:
        ref = self.registry.lookup("tokenizer_cache", timeout=WAIT)
        future: Future[Tokenizer] = ref.proxy().get(source).get(timeout=WAIT)
        return future

    def crash(self, signals: Signals) -> None:
        """Crash the actor (a message it does not understand) and wait for its restart."""
        before = len(signals.matching(telemetry.SUPERVISOR_CHILD_RESTARTED))
        self.registry.lookup("tokenizer_cache", timeout=WAIT).tell("no actor understands me")
        signals.wait_for(telemetry.SUPERVISOR_CHILD_RESTARTED, count=before + 1)


@pytest.fixture
def loader() -> Loader:
    return Loader()


@pytest.fixture
def tree(loader: Loader) -> Iterator[Tree]:
    built = Tree(loader)
    yield built
    loader.release_all()  # never leave a load thread waiting
    built.supervisor.stop()


@pytest.fixture
def signals() -> Iterator[Signals]:
    recorder = Signals()
    telemetry.attach("tests.tokenizers.restarts", telemetry.SUPERVISOR_CHILD_RESTARTED, recorder)
    yield recorder
    telemetry.detach("tests.tokenizers.restarts")


def test_many_threads_asking_at_once_share_one_load(tree: Tree, loader: Loader) -> None:
    loader.hold(BYTES)
    threads = 32
    asked = threading.Barrier(threads + 1)

    def ask(_: int) -> Future[Tokenizer]:
        asked.wait(WAIT)  # all threads ask together
        return tree.get(BYTES)

    with ThreadPoolExecutor(threads) as pool:
        pending = [pool.submit(ask, i) for i in range(threads)]
        asked.wait(WAIT)
        futures = [p.result(WAIT) for p in pending]
    # every ask was answered while the one load was still held: none waited for it
    assert all(not f.done() for f in futures)
    loader.release(BYTES)
    tokenizers = {id(f.result(WAIT)) for f in futures}
    assert len(tokenizers) == 1
    assert loader.calls[BYTES] == 1
    assert tree.get(BYTES).result(WAIT) is futures[0].result()  # and later asks get it too
    assert loader.calls[BYTES] == 1


def test_a_slow_load_does_not_hold_up_other_sources(tree: Tree, loader: Loader) -> None:
    loader.hold(SLOW)
    slow = tree.get(SLOW)
    assert loader.started[SLOW].wait(WAIT)  # the slow load is running (and held)
    fast = tree.get(BYTES).result(WAIT)
    assert fast.encode("ok") == [111, 107]
    assert not slow.done()  # still held, yet the actor answered and BYTES loaded meanwhile
    loader.release(SLOW)
    assert slow.result(WAIT) is not fast  # separate sources, separate tokenizers


def test_the_cache_survives_a_crash_of_the_actor(
    tree: Tree, loader: Loader, signals: Signals
) -> None:
    first = tree.get(BYTES).result(WAIT)
    tree.crash(signals)
    assert tree.get(BYTES).result(WAIT) is first
    assert loader.calls[BYTES] == 1
    ref = tree.registry.lookup("tokenizer_cache", timeout=WAIT)
    assert ref.proxy().loaded().get(timeout=WAIT) == [BYTES]


def test_a_load_running_during_a_crash_completes_for_the_next_incarnation(
    tree: Tree, loader: Loader, signals: Signals
) -> None:
    loader.hold(SLOW)
    before = tree.get(SLOW)
    assert loader.started[SLOW].wait(WAIT)
    tree.crash(signals)
    after = tree.get(SLOW)  # the new incarnation finds the running load in the store
    assert after is before
    loader.release(SLOW)
    assert after.result(WAIT) is before.result(WAIT)
    assert loader.calls[SLOW] == 1


def test_a_failed_load_is_reported_and_tried_again(tree: Tree, loader: Loader) -> None:
    loader.fail_next.add(BROKEN)
    with pytest.raises(TokenizerError, match="acme/broken: broken"):
        tree.get(BROKEN).result(WAIT)
    assert tree.get(BROKEN).result(WAIT).encode("x") == [120]  # not cached: loaded again
    assert loader.calls[BROKEN] == 2


def test_get_rejects_what_is_not_a_source(tree: Tree) -> None:
    with pytest.raises(TypeError, match="needs a TokenizerSource, got str"):
        tree.get("Qwen/Qwen3-8B")  # type: ignore[arg-type]


def test_the_runtime_tree_has_the_cache() -> None:
    """The process runtime runs the actor under its root supervisor, found by name."""
    from tinkex.actors.runtime import Runtime

    runtime = Runtime.get()
    ref: Any = runtime.ref("tokenizer_cache")
    assert ref.actor_class is TokenizerCache

"""Tokenizer files built by the tests themselves, and no Hub but a fake one on 127.0.0.1.

Every test here runs with ``HF_HUB_OFFLINE=1`` and the Hub cache in its own ``tmp_path``, set
in the environment *after* ``huggingface_hub`` was imported: tinkex must read them at load
time for that to work, which is part of what these tests prove. A test that downloads takes
the ``fake_hub`` fixture, which turns offline mode off and points ``HF_ENDPOINT`` at a Hub
served by the test itself (``fake_hub.py``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .fake_hub import FakeHub, running

CORPUS = [
    "hello tinkex, hello world",
    "the quick brown fox jumps over the lazy dog",
    "tokenizers train tiny byte pair encodings",
] * 20

KIMI_BASE_TOKENS = [b"\xa0h", b"\xe4\xbd", b"\xe4\xbd\xa0", b"he", b"ll", b"hell", b"hello"]
"""Merges after the 256 single bytes. ``\\xa0h`` has the lowest rank and spans the end of
"你" (e4 bd a0) and an "h": only a split that keeps Han runs apart stops it from merging."""
KIMI_SPECIALS = {"[BOS]": 0, "[EOS]": 1, "<|im_end|>": 2}
"""Named special tokens, by offset after the last rank."""


@pytest.fixture(autouse=True)
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache in ``tmp_path`` and no network: ``HF_HUB_OFFLINE=1``, set after
    ``huggingface_hub`` was imported online (whatever the environment of the test run)."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HOME", raising=False)
    return cache


@pytest.fixture
def fake_hub(offline_hub: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A Hub on 127.0.0.1 as ``HF_ENDPOINT``, and online: ``HF_HUB_OFFLINE=0``."""
    with running(FakeHub()) as hub:
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def train_tiny_bpe(path: Path, *, vocab_size: int = 300) -> Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens trained on :data:`CORPUS`, saved to ``path``.

    Its alphabet is all 256 bytes when they fit, else only the characters of the corpus (a
    tokenizer small enough for the 259 embeddings of the built-in model).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    every_byte = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=every_byte if vocab_size > len(every_byte) + 2 else [],
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer


def write_tiktoken_files(directory: Path) -> tuple[Path, Path]:
    """``tiktoken.model`` (256 bytes + :data:`KIMI_BASE_TOKENS`) and a Kimi-style
    ``tokenizer_config.json`` naming :data:`KIMI_SPECIALS` in ``added_tokens_decoder``."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = [bytes([b]) for b in range(256)] + KIMI_BASE_TOKENS
    ranks = directory / "tiktoken.model"
    ranks.write_text(
        "".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens))
    )
    config = directory / "tokenizer_config.json"
    decoder = {
        str(len(tokens) + offset): {"content": name, "special": True}
        for name, offset in KIMI_SPECIALS.items()
    }
    config.write_text(json.dumps({"added_tokens_decoder": decoder, "model_max_length": 4096}))
    return ranks, config


def kimi_rank(token: bytes) -> int:
    return 256 + KIMI_BASE_TOKENS.index(token)


def kimi_special(name: str) -> int:
    return 256 + len(KIMI_BASE_TOKENS) + KIMI_SPECIALS[name]


def fake_hub_snapshot(cache: Path, repo_id: str, revision: str, *, on_main: bool) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` in a Hub cache laid out as
    ``huggingface_hub`` lays it out (``models--org--name/snapshots/<rev>/``, and
    ``refs/main`` holding ``revision`` when ``on_main``); the caller puts files in it."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    if on_main:
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture
def tiny_bpe(tmp_path: Path) -> Iterator[tuple[Path, Tokenizer]]:
    path = tmp_path / "bpe" / "tokenizer.json"
    yield path, train_tiny_bpe(path)

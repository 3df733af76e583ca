"""Loading tokenizers from files the tests build: tokenizer.json, tiktoken files, a Hub cache.

All offline (``HF_HUB_OFFLINE=1``, see conftest.py): a test that needed the network would
fail with a TokenizerError, not download. The download tests use a Hub on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import tiktoken
from huggingface_hub import constants
from tokenizers import Tokenizer as HFTokenizer

from tinkex import telemetry
from tinkex.errors import TokenizerError
from tinkex.tokenizers import (
    BYTE_TOKENIZER_ID,
    KIMI_REVISIONS,
    HuggingFaceTokenizer,
    TiktokenTokenizer,
    TokenizerSource,
    hub_settings,
    load_tokenizer,
)

from .conftest import (
    KIMI_BASE_TOKENS,
    fake_hub_snapshot,
    kimi_rank,
    kimi_special,
    write_tiktoken_files,
)
from .fake_hub import COMMIT, FakeHub, Refusal

TEXT = "hello tinkex, the quick brown fox"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hf_secretsecretsecret"


# --- Hugging Face tokenizer.json -----------------------------------------------------------


def test_a_local_tokenizer_json_loads_as_saved(tiny_bpe: tuple[Path, HFTokenizer]) -> None:
    path, trained = tiny_bpe
    for given in (path, str(path), path.parent):  # the file, as str, or its directory
        tokenizer = load_tokenizer(TokenizerSource.resolve(tokenizer_id=given))
        assert isinstance(tokenizer, HuggingFaceTokenizer)
        assert isinstance(tokenizer.backend, HFTokenizer)
        ids = tokenizer.encode(TEXT)
        assert ids == trained.encode(TEXT).ids
        assert len(ids) < len(TEXT.encode())  # merges were applied: not one token per byte
        assert tokenizer.decode(ids) == TEXT


def test_the_hub_cache_is_read_offline_from_hf_hub_cache(
    offline_hub: Path, tiny_bpe: tuple[Path, HFTokenizer]
) -> None:
    path, trained = tiny_bpe
    snapshot = fake_hub_snapshot(offline_hub, "acme/tiny-bpe", REVISION, on_main=True)
    shutil.copy(path, snapshot / "tokenizer.json")
    tokenizer = load_tokenizer("acme/tiny-bpe")
    assert tokenizer.tokenizer_id == "acme/tiny-bpe"
    assert tokenizer.encode(TEXT) == trained.encode(TEXT).ids


def test_the_hub_cache_is_found_through_hf_home_set_after_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_bpe: tuple[Path, HFTokenizer]
) -> None:
    """huggingface_hub read its settings at import, long before this test set them."""
    home = tmp_path / "hf-home"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(home))
    snapshot = fake_hub_snapshot(home / "hub", "acme/tiny-bpe", REVISION, on_main=True)
    shutil.copy(tiny_bpe[0], snapshot / "tokenizer.json")
    assert hub_settings().cache_dir == home / "hub"
    assert hub_settings().offline
    assert load_tokenizer("acme/tiny-bpe:v1").encode(TEXT) == tiny_bpe[1].encode(TEXT).ids


def test_a_revision_selects_its_snapshot(
    offline_hub: Path, tiny_bpe: tuple[Path, HFTokenizer]
) -> None:
    snapshot = fake_hub_snapshot(offline_hub, "acme/tiny-bpe", REVISION, on_main=False)
    shutil.copy(tiny_bpe[0], snapshot / "tokenizer.json")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json is not cached"):
        load_tokenizer("acme/tiny-bpe")  # refs/main is absent: main is not cached
    source = TokenizerSource.resolve(tokenizer_id="acme/tiny-bpe", revision=REVISION)
    assert load_tokenizer(source).encode("fox") == tiny_bpe[1].encode("fox").ids


def test_an_explicit_cache_dir_wins_over_the_environment(
    tmp_path: Path, tiny_bpe: tuple[Path, HFTokenizer]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    snapshot = fake_hub_snapshot(elsewhere, "acme/tiny-bpe", REVISION, on_main=True)
    shutil.copy(tiny_bpe[0], snapshot / "tokenizer.json")
    source = TokenizerSource.resolve("acme/tiny-bpe", cache_dir=elsewhere)
    assert load_tokenizer(source).encode("fox") == tiny_bpe[1].encode("fox").ids


def test_a_missing_hub_tokenizer_says_what_where_and_how(offline_hub: Path) -> None:
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer("acme/not-downloaded")
    error = caught.value
    message = str(error)
    assert error.tokenizer_id == "acme/not-downloaded"
    assert "cannot load tokenizer acme/not-downloaded" in message  # which id
    assert str(offline_hub) in message  # where it looked
    assert "HF_HUB_OFFLINE is set" in message  # why nothing was fetched
    assert "tokenizer_id= the path of its tokenizer.json" in message  # how: a local path
    assert "hf download acme/not-downloaded tokenizer.json" in message  # how: fill the cache
    assert "unset HF_HUB_OFFLINE" in message


def test_offline_mode_from_the_import_is_named_not_blamed_on_the_network(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub imported with HF_HUB_OFFLINE on stays offline when it is turned off."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    fake_hub.files["acme/tiny-bpe", "tokenizer.json"] = b"{}"
    assert hub_settings().offline_by == "import"
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer("acme/tiny-bpe")
    message = str(caught.value)
    assert "huggingface_hub is in offline mode" in message, message
    assert "was on when huggingface_hub was imported" in message, message
    assert "start the program without HF_HUB_OFFLINE" in message, message
    assert "could not be reached" not in message, message
    assert fake_hub.seen == []  # offline indeed: nothing was asked of the Hub


# --- downloads, from a Hub on 127.0.0.1 --------------------------------------------------------


def test_a_download_sends_hf_token_fills_the_cache_and_then_loads_offline(
    fake_hub: FakeHub,
    offline_hub: Path,
    tiny_bpe: tuple[Path, HFTokenizer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, trained = tiny_bpe
    body = path.read_bytes()
    fake_hub.files["acme/private-bpe", "tokenizer.json"] = body
    monkeypatch.setenv("HF_TOKEN", SECRET)  # after huggingface_hub was imported
    assert load_tokenizer("acme/private-bpe").encode(TEXT) == trained.encode(TEXT).ids
    assert fake_hub.seen, "nothing reached the fake Hub"
    assert {seen.method for seen in fake_hub.seen} == {"HEAD", "GET"}
    assert {seen.path for seen in fake_hub.seen} == {
        "/acme/private-bpe/resolve/main/tokenizer.json"
    }
    assert {seen.authorization for seen in fake_hub.seen} == {f"Bearer {SECRET}"}
    repo = offline_hub / "models--acme--private-bpe"
    assert (repo / "snapshots" / COMMIT / "tokenizer.json").read_bytes() == body
    assert (repo / "blobs" / FakeHub.etag(body)).is_file()
    assert (repo / "refs" / "main").read_text() == COMMIT

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked = len(fake_hub.seen)
    assert load_tokenizer("acme/private-bpe").encode(TEXT) == trained.encode(TEXT).ids
    assert len(fake_hub.seen) == asked  # from the cache, no request


@pytest.mark.parametrize("refusal", ["bad-credentials", "repo-not-found"])
def test_a_refused_token_gets_hf_token_advice_without_the_token(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, refusal: Refusal
) -> None:
    fake_hub.refuse = refusal
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer("acme/private-bpe")
    assert {seen.authorization for seen in fake_hub.seen} == {f"Bearer {SECRET}"}
    message = str(caught.value)
    assert "cannot load tokenizer acme/private-bpe" in message, message
    assert "set HF_TOKEN to a" in message, message
    assert "hf_secret" not in message
    assert "hf_secret" not in repr(caught.value)


@pytest.mark.parametrize(
    ("model_name", "tokenizer_id"),
    [("TML/some-model", "TML/some-model"), ("thinkingmachines/m/v2", "thinkingmachines/m")],
)
def test_thinking_machines_tokenizers_get_a_hint_not_a_hub_error(
    offline_hub: Path, model_name: str, tokenizer_id: str
) -> None:
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer(TokenizerSource.resolve(model_name))
    message = str(caught.value)
    assert caught.value.tokenizer_id == tokenizer_id
    assert message.startswith(f"cannot load tokenizer {tokenizer_id}: Thinking Machines"), message
    assert "not published on the Hugging Face Hub" in message
    assert "tml_tokenizers" in message
    assert str(offline_hub) in message
    assert "pass tokenizer_id= the path of its tokenizer.json" in message


def test_a_missing_local_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(TokenizerError, match=re.escape(f"{missing} does not exist")) as caught:
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=missing))
    assert caught.value.tokenizer_id == str(missing)


def test_a_directory_without_tokenizer_files_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"holds neither tokenizer\.json nor tiktoken\.model"):
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path))


def test_a_malformed_tokenizer_json_is_reported_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(
        TokenizerError, match=re.escape(f"{bad} is not a Hugging Face tokenizer.json")
    ):
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=bad))


def test_the_byte_tokenizer_is_built_in() -> None:
    tokenizer = load_tokenizer(BYTE_TOKENIZER_ID)
    text = "héllo ✓"
    assert tokenizer.encode(text) == list(text.encode())
    assert tokenizer.decode(list(text.encode())) == text


def test_every_load_is_a_telemetry_span(tiny_bpe: tuple[Path, HFTokenizer]) -> None:
    with telemetry.capture("tinkex.tokenizer.load.stop", "tinkex.tokenizer.load.exception") as seen:
        load_tokenizer(BYTE_TOKENIZER_ID)
        with pytest.raises(TokenizerError):
            load_tokenizer("acme/missing")
    assert [(name, meta["tokenizer_id"]) for name, _, meta in seen] == [
        ("tinkex.tokenizer.load.stop", BYTE_TOKENIZER_ID),
        ("tinkex.tokenizer.load.exception", "acme/missing"),
    ]


# --- tiktoken (Kimi) -------------------------------------------------------------------------


def _check_kimi(tokenizer: TiktokenTokenizer) -> None:
    assert isinstance(tokenizer.backend, tiktoken.Encoding)
    hello = kimi_rank(b"hello")
    # Kimi's split keeps the Han run apart from the letters: "\xa0h" (lowest rank) never forms
    assert tokenizer.encode("你hello") == [kimi_rank(b"\xe4\xbd\xa0"), hello]
    # special tokens from added_tokens_decoder, recognised in text
    assert tokenizer.encode("[BOS]hello<|im_end|>") == [
        kimi_special("[BOS]"),
        hello,
        kimi_special("<|im_end|>"),
    ]
    ids = tokenizer.encode("[BOS]say hello 你 123")
    assert tokenizer.decode(ids) == "[BOS]say hello 你 123"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "say hello 你 123"
    # the unnamed reserved slots after the ranks are special tokens too
    reserved = kimi_special("[BOS]") + 10
    assert tokenizer.decode([reserved]) == f"<|reserved_token_{reserved}|>"
    assert tokenizer.vocab_size == 256 + len(KIMI_BASE_TOKENS) + 256


def test_kimi_from_explicit_tiktoken_files(tmp_path: Path) -> None:
    ranks, config = write_tiktoken_files(tmp_path / "kimi")
    source = TokenizerSource.resolve(
        "moonshotai/Kimi-K2-Thinking", tiktoken_model_path=ranks, tokenizer_config_path=config
    )
    tokenizer = load_tokenizer(source)
    assert isinstance(tokenizer, TiktokenTokenizer)
    assert tokenizer.tokenizer_id == "moonshotai/Kimi-K2-Thinking"
    _check_kimi(tokenizer)


def test_kimi_from_a_local_directory(tmp_path: Path) -> None:
    write_tiktoken_files(tmp_path / "kimi")
    tokenizer = load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path / "kimi"))
    assert isinstance(tokenizer, TiktokenTokenizer)
    _check_kimi(tokenizer)


@pytest.mark.parametrize(
    "tokenizer_id",
    ["moonshotai/Kimi-K2-Thinking", "moonshotai/Kimi-K2.5-Text-Only", "moonshotai/Kimi-K3"],
)
def test_kimi_from_the_hub_cache_at_its_pinned_revision(
    offline_hub: Path, tokenizer_id: str
) -> None:
    repo, pinned = KIMI_REVISIONS[tokenizer_id]
    # main points elsewhere: only the pinned snapshot has the files
    fake_hub_snapshot(offline_hub, repo, REVISION, on_main=True)
    write_tiktoken_files(fake_hub_snapshot(offline_hub, repo, pinned, on_main=False))
    tokenizer = load_tokenizer(tokenizer_id)
    assert isinstance(tokenizer, TiktokenTokenizer)
    _check_kimi(tokenizer)


def test_a_missing_kimi_tokenizer_asks_for_both_files(offline_hub: Path) -> None:
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer("moonshotai/Kimi-K2-Thinking")
    message = str(caught.value)
    pinned = KIMI_REVISIONS["moonshotai/Kimi-K2-Thinking"][1]
    assert f"cannot load tokenizer moonshotai/Kimi-K2-Thinking@{pinned}" in message
    assert str(offline_hub) in message
    assert "tiktoken_model_path= and tokenizer_config_path=" in message
    assert "tiktoken.model tokenizer_config.json --revision" in message


def test_a_corrupt_ranks_file_names_the_line(tmp_path: Path) -> None:
    ranks, _ = write_tiktoken_files(tmp_path)
    lines = ranks.read_text().splitlines()
    lines[3] = "not-base64!! x"
    ranks.write_text("\n".join(lines))
    with pytest.raises(TokenizerError, match=r"tiktoken\.model, line 4: expected") as caught:
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path))
    assert caught.value.tokenizer_id == str(tmp_path)


def test_special_tokens_may_not_reuse_ordinary_ids(tmp_path: Path) -> None:
    _, config = write_tiktoken_files(tmp_path)
    config.write_text(json.dumps({"added_tokens_decoder": {"65": {"content": "[X]"}}}))
    with pytest.raises(TokenizerError, match="special token id 65 is also the rank"):
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path))


def test_a_malformed_tokenizer_config_is_named(tmp_path: Path) -> None:
    _, config = write_tiktoken_files(tmp_path)
    config.write_text("{oops")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json is not valid JSON"):
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path))
    config.write_text(json.dumps({"added_tokens_decoder": {"x": {"content": "[X]"}}}))
    with pytest.raises(TokenizerError, match="must map a numeric id"):
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path))


# --- the common Tokenizer face -----------------------------------------------------------------


def test_both_kinds_reject_bad_input_clearly(tmp_path: Path) -> None:
    write_tiktoken_files(tmp_path / "kimi")
    kinds = [
        load_tokenizer(BYTE_TOKENIZER_ID),
        load_tokenizer(TokenizerSource.resolve(tokenizer_id=tmp_path / "kimi")),
    ]
    for tokenizer in kinds:
        with pytest.raises(TypeError, match="text must be a str, got bytes"):
            tokenizer.encode(b"hello")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ids must be a sequence of ints, got str"):
            tokenizer.decode("hello")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"ids\[1\] is a float"):
            tokenizer.decode([1, 2.0])  # type: ignore[list-item]
        with pytest.raises(ValueError, match=r"ids\[0\] = -1 is not a token id"):
            tokenizer.decode([-1])
        with pytest.raises(ValueError, match=rf"= {tokenizer.vocab_size} is not a token id"):
            tokenizer.decode([104, tokenizer.vocab_size])
        assert tokenizer.decode([104, 105]) == "hi"
        assert repr(tokenizer).startswith(f"{type(tokenizer).__name__}(tokenizer_id=")


def test_the_byte_tokenizer_keeps_special_tokens_unless_told() -> None:
    tokenizer = load_tokenizer(BYTE_TOKENIZER_ID)
    ids = tokenizer.encode("hi<|eos|>")
    assert ids == [104, 105, 257]
    assert tokenizer.decode(ids) == "hi<|eos|>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hi"

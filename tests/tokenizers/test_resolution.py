"""Which tokenizer id a model name or a server's tokenizer_id resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinkex.errors import TokenizerError
from tinkex.tokenizers import (
    BUILTIN_MODEL_TOKENIZERS,
    BYTE_TOKENIZER_ID,
    LLAMA3_TOKENIZER_ID,
    TokenizerSource,
    normalize_tokenizer_id,
    resolve_tokenizer_id,
)


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B"),
        ("Qwen/Qwen3-8B:rev-123", "Qwen/Qwen3-8B"),
        ("meta-llama/Llama-3.1-8B-Instruct", LLAMA3_TOKENIZER_ID),
        ("meta-llama/Llama-3.2-1B:abc", LLAMA3_TOKENIZER_ID),
        ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"),
        ("org/model/variant", "org/model"),
        ("org/model/variant:rev", "org/model"),
        ("tinkex/tiny-llama", BYTE_TOKENIZER_ID),
        ("tinkex/zero", BYTE_TOKENIZER_ID),
        ("gpt2", "gpt2"),
    ],
)
def test_model_names_resolve_by_the_documented_rules(model_name: str, expected: str) -> None:
    assert resolve_tokenizer_id(model_name) == expected


def test_a_server_tokenizer_id_wins_and_loses_its_revision() -> None:
    assert resolve_tokenizer_id("meta-llama/Llama-3.1-8B", "acme/tok:deadbeef") == "acme/tok"
    # the server's id is used as given: no name heuristics on it
    assert resolve_tokenizer_id("x/y", "org/model/variant") == "org/model/variant"
    assert normalize_tokenizer_id("a/b:c:d") == "a/b"


def test_an_empty_server_tokenizer_id_falls_back_to_the_model_name() -> None:
    assert TokenizerSource.resolve("tinkex/tiny-llama", tokenizer_id="").tokenizer_id == (
        BYTE_TOKENIZER_ID
    )


def test_nothing_to_resolve_is_a_tokenizer_error() -> None:
    with pytest.raises(TokenizerError, match="pass a model name"):
        resolve_tokenizer_id(None, None)


def test_local_paths_are_kept_whole_and_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "tok").mkdir()
    # an existing directory named like a repo id is a path (as in transformers)
    assert TokenizerSource.resolve(tokenizer_id="org/tok").local_path == tmp_path / "org/tok"
    # a path-looking string is a path even when missing (the loader reports it missing)
    odd = TokenizerSource.resolve(tokenizer_id="./dir:with:colons/tokenizer.json")
    assert odd.local_path == tmp_path / "dir:with:colons" / "tokenizer.json"
    assert TokenizerSource.resolve(tokenizer_id=tmp_path).local_path == tmp_path
    assert TokenizerSource.resolve(tokenizer_id="Qwen/Qwen3-8B").local_path is None


def test_a_model_name_that_is_a_path_is_a_path_before_any_name_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tinkex serve names a model served from a directory by its path: /models/mytok is not
    # org/model/variant (which would give "/models"), and ./x:y keeps its colon
    assert resolve_tokenizer_id("/models/mytok") == "/models/mytok"
    assert TokenizerSource.resolve("/models/mytok").local_path == Path("/models/mytok")
    assert TokenizerSource.resolve("/opt/qwen:v1").local_path == Path("/opt/qwen:v1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "tok" / "variant").mkdir(parents=True)
    assert resolve_tokenizer_id("org/tok/variant") == str(tmp_path / "org/tok/variant")
    assert resolve_tokenizer_id("./mytok") == str(tmp_path / "mytok")
    # a tokenizer_id still wins over a model name, path or not
    assert resolve_tokenizer_id("/models/mytok", "acme/tok") == "acme/tok"


def test_sources_are_equal_keys_for_equal_requests(tmp_path: Path) -> None:
    a = TokenizerSource.resolve("Qwen/Qwen3-8B:rev", cache_dir=tmp_path)
    b = TokenizerSource.resolve("Qwen/Qwen3-8B", cache_dir=str(tmp_path))
    assert a == b and hash(a) == hash(b)
    assert a != TokenizerSource.resolve("Qwen/Qwen3-8B", revision="v2", cache_dir=tmp_path)


def test_tiktoken_files_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="tiktoken_model_path was given alone"):
        TokenizerSource.resolve("moonshotai/Kimi-K2-Thinking", tiktoken_model_path=tmp_path)
    with pytest.raises(TokenizerError, match="tokenizer_config_path was given alone"):
        TokenizerSource.resolve("moonshotai/Kimi-K2-Thinking", tokenizer_config_path=tmp_path)


def test_wrong_argument_types_are_named() -> None:
    with pytest.raises(TypeError, match="model_name must be a str, got int"):
        TokenizerSource.resolve(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tokenizer_id must be a str or a path, got list"):
        TokenizerSource.resolve(tokenizer_id=["a"])  # type: ignore[arg-type]


def test_every_built_in_model_of_the_local_server_is_known() -> None:
    """The table must follow the server (tiny-llama's own id is checked over HTTP in
    test_clients.py, where the server has loaded it anyway)."""
    pytest.importorskip("torch")
    from tinkex.local.model import BUILTIN_MODEL, ZERO_MODEL, load_base_model

    assert set(BUILTIN_MODEL_TOKENIZERS) == {BUILTIN_MODEL, ZERO_MODEL}
    assert load_base_model(ZERO_MODEL).tokenizer_id == BUILTIN_MODEL_TOKENIZERS[ZERO_MODEL]

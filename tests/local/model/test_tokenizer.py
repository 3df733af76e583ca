"""The built-in byte-level tokenizer: ids are bytes, specials at fixed ids, lossless."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tinkex.tokenizers import (
    BYTE_TOKENIZER_ID,
    BYTE_VOCAB_SIZE,
    build_byte_tokenizer,
    byte_tokenizer_special_ids,
)

SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>")


def test_ids_and_specials() -> None:
    tok = build_byte_tokenizer()
    assert BYTE_TOKENIZER_ID == "tinkex/byte-level"
    assert tok.get_vocab_size() == BYTE_VOCAB_SIZE == 259
    assert byte_tokenizer_special_ids() == {"<|bos|>": 256, "<|eos|>": 257, "<|pad|>": 258}
    for token, expected in byte_tokenizer_special_ids().items():
        assert tok.token_to_id(token) == expected
        assert tok.id_to_token(expected) == token


def test_every_byte_is_its_own_id() -> None:
    tok = build_byte_tokenizer()
    text = "héllo wörld 😀 \x00\t\n\r \u00a0\u00ad end"
    assert tok.encode(text).ids == list(text.encode("utf-8"))
    assert tok.encode("").ids == []
    assert tok.decode(list(range(128))) == "".join(map(chr, range(128)))


def test_special_text_encodes_to_the_special_id() -> None:
    tok = build_byte_tokenizer()
    ids = tok.encode("a<|eos|>b").ids
    assert ids == [ord("a"), 257, ord("b")]
    assert tok.decode(ids) == "ab"
    assert tok.decode(ids, skip_special_tokens=False) == "a<|eos|>b"


def test_invalid_utf8_decodes_with_replacement() -> None:
    tok = build_byte_tokenizer()
    assert tok.decode([0xC3]) == "\ufffd"
    assert tok.decode([0xC3, 0xA9]) == "é"


@given(st.text())
def test_roundtrip_any_text(text: str) -> None:
    tok = build_byte_tokenizer()
    ids = tok.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    if not any(special in text for special in SPECIALS):
        assert ids == list(text.encode("utf-8"))
        assert tok.decode(ids) == text


def test_cached_and_deterministic() -> None:
    assert build_byte_tokenizer() is build_byte_tokenizer()
    first = build_byte_tokenizer().to_str()
    build_byte_tokenizer.cache_clear()
    try:
        rebuilt = build_byte_tokenizer()
        assert rebuilt.to_str() == first
    finally:
        build_byte_tokenizer.cache_clear()

"""get_tokenizer() of the clients, over real HTTP against ``tinkex serve``, and from_text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer

import tinkex
from tests.conftest import API_KEY
from tinkex import ModelInput, SamplingClient, TrainingClient
from tinkex.actors.sampling import SamplerState
from tinkex.actors.tokenizer_cache import decode, encode
from tinkex.tokenizers import BYTE_TOKENIZER_ID, HuggingFaceTokenizer, resolve_tokenizer_id

BASE_MODEL = "tinkex/tiny-llama"
TEXT = "héllo, tinkex ✓ <|eos|>"


@pytest.fixture(scope="module")
def service(base_url: str) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def training(service: tinkex.ServiceClient) -> TrainingClient:
    return service.create_lora_training_client(BASE_MODEL, rank=4, seed=3).result(120)


def test_the_training_tokenizer_is_the_byte_tokenizer_the_server_names(
    training: TrainingClient,
) -> None:
    info = training.get_info()
    # the server's own id for tiny-llama is what the name rules give (the sampler relies on it)
    assert info.model_data.tokenizer_id == BYTE_TOKENIZER_ID == resolve_tokenizer_id(BASE_MODEL)
    tokenizer = training.get_tokenizer()
    assert tokenizer.tokenizer_id == BYTE_TOKENIZER_ID
    plain = "héllo, tinkex ✓"
    assert tokenizer.encode(plain) == list(plain.encode())
    assert tokenizer.decode(list(plain.encode())) == plain
    assert tokenizer.decode(tokenizer.encode(TEXT)) == TEXT
    assert training.get_tokenizer() is tokenizer  # cached for the process


def test_the_sampler_tokenizer_follows_its_base_model(
    service: tinkex.ServiceClient, training: TrainingClient
) -> None:
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result(120)
    assert sampler.get_tokenizer() is training.get_tokenizer()
    snapshot = training.save_weights_and_get_sampling_client().result(120)
    assert snapshot.get_tokenizer().encode("ok") == [111, 107]


def test_a_sampler_that_does_not_know_its_base_model_asks_the_server(
    service: tinkex.ServiceClient,
) -> None:
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result(120)
    blind = SamplingClient(service, SamplerState(sampler.sampling_session_id, None, service.config))
    assert blind.get_base_model() is None
    tokenizer = blind.get_tokenizer()
    assert blind.get_base_model() == BASE_MODEL  # from GET /api/v1/samplers/{id}
    assert tokenizer.encode("ok") == [111, 107]


def test_an_explicit_tokenizer_overrides_the_server(
    training: TrainingClient, tiny_bpe: tuple[Path, HFTokenizer]
) -> None:
    path, trained = tiny_bpe
    tokenizer = training.get_tokenizer(tokenizer_id=path)
    assert tokenizer.tokenizer_id == str(path)
    assert tokenizer.encode("hello tinkex") == trained.encode("hello tinkex").ids


def test_a_client_tokenizer_that_cannot_be_found_is_a_tokenizer_error(
    training: TrainingClient,
) -> None:
    with pytest.raises(tinkex.TokenizerError, match="cannot load tokenizer acme/absent"):
        training.get_tokenizer(tokenizer_id="acme/absent")


def test_the_module_helpers_share_the_process_cache(training: TrainingClient) -> None:
    assert tinkex.get_tokenizer(BASE_MODEL) is training.get_tokenizer()
    assert encode("hi", BASE_MODEL) == [104, 105]
    assert decode([104, 105, 257], tokenizer_id=BYTE_TOKENIZER_ID) == "hi<|eos|>"
    assert decode([104, 105, 257], BASE_MODEL, skip_special_tokens=True) == "hi"


def test_from_text_accepts_our_tokenizers_and_raw_ones(
    tiny_bpe: tuple[Path, HFTokenizer],
) -> None:
    path, trained = tiny_bpe
    ours = tinkex.get_tokenizer(tokenizer_id=path)
    assert isinstance(ours, HuggingFaceTokenizer)
    expected = trained.encode("hello world").ids
    assert ModelInput.from_text("hello world", ours).to_ints() == expected
    assert ModelInput.from_text("hello world", trained).to_ints() == expected  # Encoding.ids


def test_from_text_rejects_what_is_not_a_tokenizer() -> None:
    with pytest.raises(TypeError, match=r"tinkex\.get_tokenizer\(name\)"):
        ModelInput.from_text("hi", BASE_MODEL)
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        ModelInput.from_text(b"hi", tinkex.get_tokenizer(BASE_MODEL))  # type: ignore[arg-type]

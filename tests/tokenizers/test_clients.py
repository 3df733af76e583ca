"""get_tokenizer() of the clients, over real HTTP against ``tinkex serve``, and from_text."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer

import tinkex
from tests.conftest import API_KEY
from tinkex import ModelInput, SamplingClient, TrainingClient
from tinkex.actors.sampling import SamplerState
from tinkex.actors.tokenizer_cache import TokenizerOptions, decode, encode
from tinkex.tokenizers import BYTE_TOKENIZER_ID, HuggingFaceTokenizer, resolve_tokenizer_id

from .conftest import fake_hub_snapshot, kimi_rank, train_tiny_bpe, write_tiktoken_files

BASE_MODEL = "tinkex/tiny-llama"
TEXT = "héllo, tinkex ✓ <|eos|>"
REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_NAMED = "acme/served-bpe"
"""The repo id a served model reports, as ``acme/served-bpe:v1``, with a revision suffix."""


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


def test_the_module_helpers_take_the_loader_options(
    tmp_path: Path, tiny_bpe: tuple[Path, HFTokenizer]
) -> None:
    ranks, config = write_tiktoken_files(tmp_path / "kimi")
    kimi: TokenizerOptions = {"tiktoken_model_path": ranks, "tokenizer_config_path": config}
    ids = encode("你hello", "moonshotai/Kimi-K2-Thinking", **kimi)
    assert ids == [kimi_rank(b"\xe4\xbd\xa0"), kimi_rank(b"hello")]
    assert decode(ids, "moonshotai/Kimi-K2-Thinking", **kimi) == "你hello"

    elsewhere = tmp_path / "elsewhere"
    snapshot = fake_hub_snapshot(elsewhere, "acme/pinned-bpe", REVISION, on_main=False)
    shutil.copy(tiny_bpe[0], snapshot / "tokenizer.json")
    pinned: TokenizerOptions = {"revision": REVISION, "cache_dir": elsewhere, "timeout": 60.0}
    ids = encode("hello tinkex", "acme/pinned-bpe", add_special_tokens=False, **pinned)
    assert ids == tiny_bpe[1].encode("hello tinkex").ids
    assert decode(ids, "acme/pinned-bpe", skip_special_tokens=True, **pinned) == "hello tinkex"


# --- models served from directories -------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    url: str
    by_path: Path
    """A model directory of two path components (like ``/opt/qwen``), served by its path."""
    tokenizer_json: Path
    trained: HFTokenizer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ``tinkex serve`` of the built-in model's weights saved as Hugging Face directories,
    with a tokenizer of their own: one served by its path, one as ``acme/served-bpe:v1``."""
    pytest.importorskip("torch")
    from tests.local.model.helpers import save_builtin_as_hf
    from tinkex.local import LocalServer, ModelSource, ServerConfig
    from tinkex.local.model import BUILTIN_MODEL, load_base_model

    builtin = load_base_model(BUILTIN_MODEL)
    root = tmp_path_factory.mktemp("served")
    tokenizer_json = root / "tokenizer.json"
    trained = train_tiny_bpe(tokenizer_json, vocab_size=120)
    assert trained.get_vocab_size() <= builtin.config.vocab_size
    # Directly under /tmp on purpose: /tmp/<name> has the three '/'-separated parts that the
    # org/model/variant rule would turn into "/tmp".
    by_path = Path(tempfile.mkdtemp(prefix="tinkex-served-", dir="/tmp"))
    try:
        named = root / "named"
        for directory in (by_path, named):
            save_builtin_as_hf(builtin, directory)
            shutil.copy(tokenizer_json, directory / "tokenizer.json")
        config = ServerConfig(
            port=0,
            data_dir=root / "data",
            models=(
                ModelSource.parse(str(by_path)),
                ModelSource.parse(f"{HUB_NAMED}:v1={named}"),
            ),
        )
        with LocalServer(config) as server:
            yield Served(server.url, by_path, tokenizer_json, trained)
    finally:
        shutil.rmtree(by_path)


@pytest.fixture(scope="module")
def served_service(served: Served) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=served.url, api_key=API_KEY) as client:
        yield client


def test_a_model_served_from_a_directory_uses_that_directorys_tokenizer(
    served: Served, served_service: tinkex.ServiceClient
) -> None:
    name = str(served.by_path)
    sampler = served_service.create_sampling_client(base_model=name).result(120)
    assert sampler.get_base_model() == name
    tokenizer = sampler.get_tokenizer()
    assert tokenizer.tokenizer_id == name
    assert tokenizer.encode("hello tinkex") == served.trained.encode("hello tinkex").ids
    training = served_service.create_lora_training_client(name, rank=4).result(120)
    assert training.get_info().model_data.tokenizer_id == name
    assert training.get_tokenizer() is tokenizer


def test_a_server_tokenizer_id_with_a_revision_loads_from_the_hub_cache(
    served: Served, served_service: tinkex.ServiceClient, offline_hub: Path
) -> None:
    snapshot = fake_hub_snapshot(offline_hub, HUB_NAMED, REVISION, on_main=True)
    shutil.copy(served.tokenizer_json, snapshot / "tokenizer.json")
    training = served_service.create_lora_training_client(f"{HUB_NAMED}:v1", rank=4).result(120)
    assert training.get_info().model_data.tokenizer_id == f"{HUB_NAMED}:v1"
    tokenizer = training.get_tokenizer()
    assert tokenizer.tokenizer_id == HUB_NAMED
    assert tokenizer.encode("hello tinkex") == served.trained.encode("hello tinkex").ids

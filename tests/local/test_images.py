"""Images sent to the local backend's text-only model get a clear user error, over every path.

Two answers, in this order: bytes that are not a PNG/JPEG image (of the declared format) are
"asset is not a valid image"; a real image is "model ... does not accept image input". A
sample is refused at once (HTTP 400); a training request is accepted and its future fails as
a user error, so the model's seq_ids have no hole and the calls after it run as usual.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import tinker
from tinker import types as ttypes

import tinkex
from tests.conftest import API_KEY
from tests.local.raw import RawTinker
from tests.types.image_bytes import jpeg, png
from tinkex import (
    BadRequestError,
    Datum,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    RequestFailedError,
    SamplingParams,
)

BASE_MODEL = "tinkex/tiny-llama"
NO_IMAGES = f"model {BASE_MODEL} does not accept image input"
NOT_AN_IMAGE = "asset is not a valid image"
TEXT = list(b"hello")


@pytest.fixture(scope="module")
def service(base_url: str) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def sampler(service: tinkex.ServiceClient) -> tinkex.SamplingClient:
    return service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)


@pytest.fixture(scope="module")
def trainer(service: tinkex.ServiceClient) -> tinkex.TrainingClient:
    return service.create_lora_training_client(BASE_MODEL, rank=4, seed=0).result(timeout=60)


def _image_datum(chunk: Any) -> Datum:
    model_input = ModelInput.from_ints(TEXT).append(chunk).append_int(10)
    return Datum(model_input=model_input, loss_fn_inputs={"target_tokens": [*TEXT, 10, 11]})


TEXT_DATUM = Datum(
    model_input=ModelInput.from_ints(TEXT[:-1]), loss_fn_inputs={"target_tokens": TEXT[1:]}
)

# (chunk, what the server says): a real PNG and JPEG, bytes that are no image, and a PNG
# declared as a JPEG. ImageChunk(...) builds the wire model unchecked, as a careless or
# foreign client would send it; ImageChunk.from_bytes would have refused the bad ones here.
CASES = [
    pytest.param(ImageChunk.from_bytes(png(), expected_tokens=4), NO_IMAGES, id="png"),
    pytest.param(ImageChunk.from_bytes(jpeg()), NO_IMAGES, id="jpeg"),
    pytest.param(ImageChunk(data=jpeg(fill=3), format="jpeg"), NO_IMAGES, id="jpeg-fill-bytes"),
    pytest.param(ImageChunk(data=b"GIF89a-ish", format="png"), NOT_AN_IMAGE, id="not-an-image"),
    pytest.param(
        ImageChunk(data=png(), format="jpeg"),
        "asset is not a valid image of its declared format 'jpeg': the data is a PNG image",
        id="png-declared-jpeg",
    ),
]


@pytest.mark.parametrize(("chunk", "server_says"), CASES)
def test_a_sample_with_an_image_is_refused_with_the_servers_reason(
    sampler: tinkex.SamplingClient, chunk: ImageChunk, server_says: str
) -> None:
    prompt = ModelInput.from_ints(TEXT).append(chunk)
    with pytest.raises(BadRequestError) as info:
        sampler.sample(prompt, 1, SamplingParams(max_tokens=2)).result(timeout=60)
    assert info.value.status_code == 400
    message = str(info.value)
    assert server_says in message, message
    assert "prompt chunk 1" in message, message


def test_an_image_asset_pointer_is_refused_too(sampler: tinkex.SamplingClient) -> None:
    pointer = ImageAssetPointerChunk(format="png", location="https://example.invalid/cat.png")
    prompt = ModelInput.from_ints(TEXT).append(pointer)
    with pytest.raises(BadRequestError, match=f"{NO_IMAGES}.*'image_asset_pointer' chunk"):
        sampler.sample(prompt, 1, SamplingParams(max_tokens=2)).result(timeout=60)


@pytest.mark.parametrize(
    ("chunk", "server_says", "forward_only"),
    [(*case.values, index % 2 == 0) for index, case in enumerate(CASES)],
    ids=[
        f"{case.id}-{'forward' if i % 2 == 0 else 'forward_backward'}"
        for i, case in enumerate(CASES)
    ],
)
def test_training_on_an_image_fails_its_future_and_nothing_else(
    trainer: tinkex.TrainingClient, chunk: ImageChunk, server_says: str, forward_only: bool
) -> None:
    before = trainer.forward([TEXT_DATUM], "cross_entropy")
    call = trainer.forward if forward_only else trainer.forward_backward
    refused = call([TEXT_DATUM, _image_datum(chunk)], "cross_entropy")
    step = trainer.optim_step(tinkex.AdamParams(learning_rate=0.1))
    after = trainer.forward([TEXT_DATUM], "cross_entropy")
    with pytest.raises(RequestFailedError) as info:
        refused.result(timeout=60)
    assert info.value.category == "user"
    assert server_says in str(info.value), str(info.value)
    assert "datum 1's model_input chunk 1" in str(info.value)
    # The calls made right after it ran in order, and no gradient of the refused call exists.
    step.result(timeout=60)
    assert after.result(timeout=60).metrics == before.result(timeout=60).metrics


def test_an_image_asset_pointer_cannot_be_trained_on(trainer: tinkex.TrainingClient) -> None:
    pointer = ImageAssetPointerChunk(format="png", location="https://example.invalid/cat.png")
    refused = trainer.forward_backward([_image_datum(pointer)], "cross_entropy")
    with pytest.raises(ValueError, match="image_asset_pointer chunks cannot go into training"):
        refused.result(timeout=60)
    # Refused before it took a seq_id: the next call is not stuck behind a missing one.
    assert trainer.forward([TEXT_DATUM], "cross_entropy").result(timeout=60).metrics


# --- the official SDK gets the same answers --------------------------------------------------


@pytest.fixture(scope="module")
def official(base_url: str) -> Iterator[tinker.ServiceClient]:
    client = tinker.ServiceClient(base_url=base_url, api_key=API_KEY)
    yield client
    client.close("success").result(timeout=30)


def _official_prompt(data: bytes) -> ttypes.ModelInput:
    return ttypes.ModelInput(
        chunks=[
            ttypes.EncodedTextChunk(tokens=TEXT),
            ttypes.ImageChunk(data=data, format="png"),
        ]
    )


@pytest.mark.parametrize(
    ("data", "server_says"), [(png(), NO_IMAGES), (b"\x00" * 64, NOT_AN_IMAGE)], ids=["png", "junk"]
)
def test_the_official_sdk_sampling_an_image_gets_the_reason(
    official: tinker.ServiceClient, data: bytes, server_says: str
) -> None:
    sampler = official.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
    future = sampler.sample(_official_prompt(data), 1, ttypes.SamplingParams(max_tokens=2))
    with pytest.raises(tinker.BadRequestError) as info:
        future.result(timeout=60)
    assert server_says in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("data", "server_says"), [(png(), NO_IMAGES), (b"\x00" * 64, NOT_AN_IMAGE)], ids=["png", "junk"]
)
def test_the_official_sdk_training_on_an_image_gets_the_reason(
    official: tinker.ServiceClient, data: bytes, server_says: str
) -> None:
    training = official.create_lora_training_client(base_model=BASE_MODEL, rank=4, seed=0).result(
        timeout=60
    )
    datum = ttypes.Datum(
        model_input=_official_prompt(data),
        loss_fn_inputs={"target_tokens": [*TEXT, 7]},
    )
    with pytest.raises(tinker.RequestFailedError) as info:
        training.forward_backward([datum], "cross_entropy").result(timeout=60)
    assert server_says in str(info.value), str(info.value)
    # Its seq_id was used: the next call runs at once, not after the server's gap timeout.
    text = ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(TEXT[:-1]),
        loss_fn_inputs={"target_tokens": TEXT[1:]},
    )
    assert training.forward([text], "cross_entropy").result(timeout=60).metrics["loss:sum"] > 0


# --- the legacy JSON training body -----------------------------------------------------------


def test_the_legacy_json_forward_with_an_image_fails_as_a_user_error(base_url: str) -> None:
    raw = RawTinker(base_url)
    try:
        model_id = raw.model(raw.session())
        image = {"type": "image", "data": base64.b64encode(png()).decode(), "format": "png"}
        datum = {
            "model_input": {"chunks": [{"type": "encoded_text", "tokens": TEXT}, image]},
            "loss_fn_inputs": {"target_tokens": {"data": [*TEXT, 1], "dtype": "int64"}},
        }
        body = {
            "model_id": model_id,
            "forward_input": {"data": [datum], "loss_fn": "cross_entropy"},
        }
        result = raw.result(raw.ok("forward", body)["request_id"])
    finally:
        raw.close()
    assert result["category"] == "user"
    assert NO_IMAGES in result["error"], result["error"]

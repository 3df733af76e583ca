"""forward_backward_custom against ``tinkex serve``: the gradient of the user's torch loss
reaches the model, in order with the calls around it, and a failure costs nothing else."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum
from tests.conftest import API_KEY
from tests.types.image_bytes import png
from tinkex import (
    AdamParams,
    CustomLossError,
    Datum,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    RequestFailedError,
    TensorData,
    telemetry,
)
from tinkex.actors import training as training_actor
from tinkex.actors.training import chunk_data
from tinkex.clients import custom_loss

try:
    import torch
except ImportError:  # every test but the no-torch one needs the local server, which skips
    torch = None

BATCH = [datum("custom losses"), datum("go through cross entropy"), datum("exactly")]
PROBE = [datum("a probe the model never trains on")]
PRIMER = [datum("an earlier step the optimizer remembers")]
ADAM = AdamParams(learning_rate=0.05)
TIMEOUT = 60
"""Well under the server's 120 s seq_id gap timeout: a hole in the seq_ids fails the test."""


@pytest.fixture(scope="module")
def service(base_url: str) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as client:
        yield client


def _model(service: tinkex.ServiceClient, seed: int = 11) -> tinkex.TrainingClient:
    return service.create_lora_training_client(BASE_MODEL, rank=4, seed=seed).result(TIMEOUT)


def _primed(service: tinkex.ServiceClient) -> tinkex.TrainingClient:
    """A model one Adam step in, on another batch.

    Adam's first step moves every weight by about the learning rate whatever the size of
    its gradient (m / sqrt(v) is sign(g)), so comparing models after it cannot tell a right
    gradient from one of the wrong scale; once the moments hold an earlier step, it can.
    """
    model = _model(service)
    model.forward_backward(PRIMER, "cross_entropy")
    model.optim_step(ADAM).result(TIMEOUT)
    return model


def _logprobs(output: ForwardBackwardOutput) -> list[Any]:
    return [out["logprobs"].to_torch() for out in output.loss_fn_outputs]


def _same(left: ForwardBackwardOutput, right: ForwardBackwardOutput) -> bool:
    return all(
        torch.allclose(a, b, rtol=0, atol=1e-6)
        for a, b in zip(_logprobs(left), _logprobs(right), strict=True)
    )


def _weights(d: Datum) -> Any:
    return d.loss_fn_inputs["weights"].to_torch()


def cross_entropy(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    """The server's cross_entropy, written as a custom loss."""
    loss = sum(-(lp * _weights(d)).sum() for d, lp in zip(data, logprobs, strict=True))
    return loss, {}


def scaled_cross_entropy(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    """cross_entropy with a gradient 1.5 times too large: what the comparison must catch."""
    loss, metrics = cross_entropy(data, logprobs)
    return 1.5 * loss, metrics


def test_cross_entropy_as_a_custom_loss_trains_exactly_like_the_servers(
    service: tinkex.ServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One datum per request, so each pass is three requests (six seq_ids in all); the
    # server-loss reference is chunked alike, so both sum their gradients in the same order.
    one_per_request = functools.partial(chunk_data, max_datums=1)
    monkeypatch.setattr(custom_loss, "chunk_data", one_per_request)
    monkeypatch.setattr(training_actor, "chunk_data", one_per_request)
    custom, server, scaled = _primed(service), _primed(service), _primed(service)

    # Everything is submitted before anything is awaited: order is the client's job.
    probe_before = custom.forward(PROBE, "cross_entropy")
    fwdbwd = custom.forward_backward_custom(BATCH, cross_entropy)
    step = custom.optim_step(ADAM)
    probe_after = custom.forward(PROBE, "cross_entropy")

    reference_before = server.forward(PROBE, "cross_entropy")
    reference = server.forward_backward(BATCH, "cross_entropy")
    server.optim_step(ADAM).result(TIMEOUT)
    reference_after = server.forward(PROBE, "cross_entropy")

    output = fwdbwd.result(TIMEOUT)
    step.result(TIMEOUT)
    assert _same(probe_before.result(TIMEOUT), reference_before.result(TIMEOUT))
    assert _same(probe_after.result(TIMEOUT), reference_after.result(TIMEOUT))
    assert not _same(probe_after.result(TIMEOUT), probe_before.result(TIMEOUT)), "no step?"

    server_loss = reference.result(TIMEOUT).metrics["loss:sum"]
    assert output.metrics["loss:sum"] == pytest.approx(server_loss, rel=1e-5)
    assert output.metrics["surrogate_loss:sum"] == pytest.approx(server_loss, rel=1e-5)
    assert len(output.loss_fn_outputs) == len(BATCH)
    assert _same(output, reference.result(TIMEOUT))

    # The comparison sees the size of the gradient: 1.5 times it trains another model.
    scaled.forward_backward_custom(BATCH, scaled_cross_entropy).result(TIMEOUT)
    scaled.optim_step(ADAM).result(TIMEOUT)
    scaled_after = scaled.forward(PROBE, "cross_entropy").result(TIMEOUT)
    assert not _same(scaled_after, reference_after.result(TIMEOUT))


def test_a_nonlinear_loss_gets_its_own_gradient_and_metrics(
    service: tinkex.ServiceClient,
) -> None:
    """L = sum_i mean_t(-logprob)^2 has dL/dlogprob[i, t] = -2 m_i / n_i, so its step must
    equal cross_entropy's with weights 2 m_i / n_i, and the surrogate loss is 2 L."""
    custom, server = _model(service), _model(service)
    start = custom.forward(BATCH, "cross_entropy").result(TIMEOUT)
    means = [(-lp).mean() for lp in _logprobs(start)]
    seen: list[list[Any]] = []

    def mean_nll_squared(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        seen.append([lp.detach().clone() for lp in logprobs])
        per_datum = torch.stack([(-lp).mean() for lp in logprobs])
        return (per_datum**2).sum(), {"mean_nll:mean": per_datum.mean(), "datums": len(data)}

    output = custom.forward_backward_custom(BATCH, mean_nll_squared).result(TIMEOUT)
    custom.optim_step(ADAM).result(TIMEOUT)

    expected_loss = float(sum(m**2 for m in means))
    assert output.metrics["loss:sum"] == pytest.approx(expected_loss, rel=1e-5)
    assert output.metrics["surrogate_loss:sum"] == pytest.approx(2 * expected_loss, rel=1e-4)
    assert output.metrics["mean_nll:mean"] == pytest.approx(float(sum(means)) / 3, rel=1e-5)
    assert output.metrics["datums"] == 3
    # The loss saw the model's logprobs, shaped like each datum's target_tokens.
    assert all(torch.equal(a, b) for a, b in zip(seen[0], _logprobs(start), strict=True))

    weighted = [
        Datum(
            model_input=d.model_input,
            loss_fn_inputs={
                "target_tokens": d.loss_fn_inputs["target_tokens"],
                "weights": TensorData.from_numpy(
                    torch.full((len(lp),), float(2 * m / len(lp))).numpy()
                ),
            },
        )
        for d, lp, m in zip(BATCH, _logprobs(start), means, strict=True)
    ]
    server.forward_backward(weighted, "cross_entropy").result(TIMEOUT)
    server.optim_step(ADAM).result(TIMEOUT)
    assert _same(
        custom.forward(PROBE, "cross_entropy").result(TIMEOUT),
        server.forward(PROBE, "cross_entropy").result(TIMEOUT),
    )


def test_the_official_sdk_gets_the_same_numbers(
    service: tinkex.ServiceClient, base_url: str
) -> None:
    """The reference implementation of the same protocol, on the same start, agrees."""
    tinker = pytest.importorskip("tinker")
    tokens = list(b"official and tinkex agree")

    def focal(data: list[Any], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        flat = torch.cat(logprobs)
        return (-((1 - flat.exp()) ** 2) * flat).sum(), {"p:mean": flat.exp().mean().detach()}

    official = tinker.ServiceClient(base_url=base_url, api_key=API_KEY)
    try:
        theirs = official.create_lora_training_client(base_model=BASE_MODEL, rank=4, seed=11)
        their_datum = tinker.types.Datum(
            model_input=tinker.types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:]},
        )
        expected = theirs.result().forward_backward_custom([their_datum], focal).result(TIMEOUT)
    finally:
        official.close("success").result(TIMEOUT)
    ours = _model(service).forward_backward_custom(
        [
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:]},
            )
        ],
        focal,
    )
    # The official SDK passes the user's metric through as the tensor it got; tinkex makes
    # every metric a float, as the server's are.
    theirs_as_floats = {name: float(value) for name, value in expected.metrics.items()}
    assert ours.result(TIMEOUT).metrics == pytest.approx(theirs_as_floats, rel=1e-6)
    assert set(expected.metrics) == {"loss:sum", "surrogate_loss:sum", "p:mean"}


@pytest.fixture(scope="module")
def trainee(service: tinkex.ServiceClient) -> tinkex.TrainingClient:
    """A model for tests that train but compare with nothing."""
    return _model(service)


@pytest.fixture(scope="module")
def untrained(service: tinkex.ServiceClient) -> tinkex.TrainingClient:
    """A model no gradient must ever reach: an optimizer step leaves it as it is."""
    return _model(service, seed=5)


def test_loss_inputs_of_its_own_stay_on_the_client(trainee: tinkex.TrainingClient) -> None:
    """Extra loss_fn_inputs (here "advantages") would be refused by cross_entropy on the
    server; the loss reads them from data, and a datum without weights is fine."""
    tokens = list(b"reward shaping")
    data = [
        Datum(
            model_input=ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "advantages": [0.5] * (len(tokens) - 1)},
        )
    ]

    def policy_gradient(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        advantages = data[0].loss_fn_inputs["advantages"].to_torch()
        return -(logprobs[0] * advantages).sum(), {}

    plain = Datum(model_input=data[0].model_input, loss_fn_inputs={"target_tokens": tokens[1:]})
    nll = trainee.forward([plain], "cross_entropy").result(TIMEOUT).metrics["loss:sum"]
    output = trainee.forward_backward_custom(data, policy_gradient).result(TIMEOUT)
    assert output.metrics["loss:sum"] == pytest.approx(0.5 * nll, rel=1e-5)
    assert output.metrics["surrogate_loss:sum"] == pytest.approx(0.5 * nll, rel=1e-5)


async def test_the_asyncio_twin(trainee: tinkex.TrainingClient) -> None:
    future = await trainee.forward_backward_custom_async(BATCH[:1], cross_entropy)
    output = await future
    assert output.metrics["loss:sum"] == pytest.approx(output.metrics["surrogate_loss:sum"])


# --- failures --------------------------------------------------------------------------------


def _raises(data: list[Datum], logprobs: list[Any]) -> Any:
    raise KeyError("advantages")


BAD_LOSSES = [
    pytest.param(
        lambda d, lp: (1.5, {}), CustomLossError, "returned a float as the loss", id="float"
    ),
    pytest.param(
        lambda d, lp: (-lp[0], {}),
        CustomLossError,
        "loss of shape (12,); it must be a scalar",
        id="vector",
    ),
    pytest.param(
        lambda d, lp: ((-lp[0]).sum().detach(), {}),
        CustomLossError,
        "does not require grad",
        id="detached",
    ),
    pytest.param(
        lambda d, lp: (-lp[0]).sum(),
        CustomLossError,
        "must return a (loss, metrics) tuple",
        id="no-metrics",
    ),
    pytest.param(
        lambda d, lp: ((-lp[0]).sum(), {"note": "text"}),
        CustomLossError,
        "metric 'note' is 'text'",
        id="bad-metric",
    ),
    pytest.param(
        lambda d, lp: ((-lp[0]).sum() * float("nan"), {}),
        CustomLossError,
        "non-finite loss (nan)",
        id="nan",
    ),
    pytest.param(_raises, KeyError, "advantages", id="raises"),
]


@pytest.mark.parametrize(("loss_fn", "error", "says"), BAD_LOSSES)
def test_a_bad_loss_fails_its_future_with_what_was_wrong(
    untrained: tinkex.TrainingClient, loss_fn: Any, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as info:
        untrained.forward_backward_custom(BATCH[:1], loss_fn).result(TIMEOUT)
    assert says in str(info.value), str(info.value)
    if error is KeyError:  # the user's own exception, with a note saying where it came from
        assert "forward_backward_custom" in " ".join(info.value.__notes__)


def test_a_failed_loss_leaves_the_model_and_the_order_alone(
    untrained: tinkex.TrainingClient,
) -> None:
    before = untrained.forward(PROBE, "cross_entropy")
    failed = untrained.forward_backward_custom(BATCH, _raises)
    step = untrained.optim_step(ADAM)
    after = untrained.forward(PROBE, "cross_entropy")
    with pytest.raises(KeyError):
        failed.result(TIMEOUT)
    # The calls after it ran in order, at once, with no gradient of the failed call.
    step.result(TIMEOUT)
    assert _same(after.result(TIMEOUT), before.result(TIMEOUT))


def test_a_failed_forward_pass_fails_the_call_and_nothing_else(
    untrained: tinkex.TrainingClient,
) -> None:
    image = ModelInput.from_ints([1]).append(ImageChunk.from_bytes(png()))
    bad = Datum(model_input=image, loss_fn_inputs={"target_tokens": [2, 3]})
    called: list[bool] = []

    def loss(data: list[Datum], logprobs: list[Any]) -> Any:
        called.append(True)
        return cross_entropy(data, logprobs)

    before = untrained.forward(PROBE, "cross_entropy")
    failed = untrained.forward_backward_custom([BATCH[0], bad], loss)
    after = untrained.forward(PROBE, "cross_entropy")
    with pytest.raises(RequestFailedError, match="does not accept image input") as info:
        failed.result(TIMEOUT)
    assert info.value.category == "user"
    assert not called
    assert _same(after.result(TIMEOUT), before.result(TIMEOUT))


def test_a_call_cancelled_before_its_loss_runs_changes_nothing(
    untrained: tinkex.TrainingClient,
) -> None:
    client = untrained
    before = client.forward(PROBE, "cross_entropy").result(TIMEOUT)
    called: list[bool] = []
    futures: list[tinkex.APIFuture[ForwardBackwardOutput]] = []
    returned, polled = threading.Event(), threading.Event()

    def loss(data: list[Datum], logprobs: list[Any]) -> Any:
        called.append(True)
        return cross_entropy(data, logprobs)

    def cancel_while_polling(event: str, measurements: Any, metadata: dict[str, Any]) -> None:
        # Runs on the I/O loop as the first pass is polled: the loss has not run yet.
        if metadata["path"].endswith("/retrieve_future") and not polled.is_set():
            polled.set()
            returned.wait(TIMEOUT)
            futures[0].cancel()

    telemetry.attach("test-custom-loss-cancel", "tinkex.http.request.start", cancel_while_polling)
    try:
        futures.append(client.forward_backward_custom(BATCH, loss))
        returned.set()
        step = client.optim_step(ADAM)
        after = client.forward(PROBE, "cross_entropy")
        step.result(TIMEOUT)
        after_output = after.result(TIMEOUT)
    finally:
        telemetry.detach("test-custom-loss-cancel")
    assert polled.is_set() and futures[0].cancelled()
    assert not called, "the loss ran although the call was cancelled first"
    assert _same(after_output, before)


# --- refused before anything is sent ---------------------------------------------------------


def _no_requests(client: tinkex.TrainingClient, call: Any) -> Any:
    """Run ``call``; assert it sent nothing and left the model's numbering alone."""
    with telemetry.capture("tinkex.http.request.start") as sent:
        try:
            return call()
        finally:
            assert sent == []
            # Nothing reserved: the next call runs at once, not after a seq_id gap.
            client.forward(PROBE, "cross_entropy").result(TIMEOUT)


def test_without_torch_the_call_says_how_to_install_it(
    untrained: tinkex.TrainingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees without torch
    with pytest.raises(ImportError) as info:
        _no_requests(untrained, lambda: untrained.forward_backward_custom(BATCH, cross_entropy))
    assert "pip install 'tinkex[torch]'" in str(info.value)


WITHOUT_TORCH = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None


    sys.meta_path.insert(0, NoTorch())

    import tinkex
    from tinkex import telemetry
    from tinkex.actors.runtime import Runtime
    from tinkex.actors.training import ModelState
    from tinkex.types import GetInfoResponse, ModelData

    # No server: nothing may be sent. The client is built offline, as create_* would.
    service = tinkex.ServiceClient(base_url="http://127.0.0.1:9", api_key="tml-no-torch-test")
    state = ModelState("s:train:0", "s", service.config, Runtime.get().windows())
    info = GetInfoResponse(model_id="s:train:0", model_data=ModelData(model_name="tiny"))
    client = tinkex.TrainingClient(service, state, info)
    data = [tinkex.Datum(model_input=tinkex.ModelInput.from_ints([1, 2]),
                         loss_fn_inputs={"target_tokens": [2, 3]})]
    with telemetry.capture("tinkex.http.request.start") as sent:
        try:
            client.forward_backward_custom(data, lambda data, logprobs: (None, {}))
        except ImportError as error:
            print("ImportError:", error)
    print("requests:", len(sent))
    """
)


def test_without_torch_installed_tinkex_imports_and_the_call_says_how_to_install_it() -> None:
    # Runs whether or not torch is installed here: the child cannot import it either way.
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    error, requests = done.stdout.strip().splitlines()
    assert error.startswith("ImportError:") and "pip install 'tinkex[torch]'" in error
    assert requests == "requests: 0"


@pytest.mark.parametrize(
    ("data", "loss_fn", "error", "says"),
    [
        ([], cross_entropy, ValueError, "needs at least one Datum"),
        (BATCH, "cross_entropy", TypeError, "loss_fn must be a callable"),
        (
            [Datum(model_input=ModelInput.from_ints([1, 2]), loss_fn_inputs={"weights": [1, 1]})],
            cross_entropy,
            ValueError,
            "data[0] has no loss_fn_inputs['target_tokens']",
        ),
        ([BATCH[0], "not a datum"], cross_entropy, TypeError, "data[1] is a str"),
        (
            [
                Datum(
                    model_input=ModelInput.from_ints([2**40]), loss_fn_inputs={"target_tokens": [1]}
                )
            ],
            cross_entropy,
            ValueError,
            "token ids must fit in int32",
        ),
        (
            [
                Datum(
                    model_input=ModelInput.from_ints([1]).append(
                        ImageAssetPointerChunk(format="png", location="cat.png")
                    ),
                    loss_fn_inputs={"target_tokens": [1, 2]},
                )
            ],
            cross_entropy,
            ValueError,
            "image_asset_pointer chunks cannot go into training requests",
        ),
    ],
    ids=["no-data", "not-callable", "no-targets", "not-a-datum", "beyond-int32", "asset-pointer"],
)
def test_bad_arguments_are_refused_at_once(
    untrained: tinkex.TrainingClient,
    data: Sequence[Any],
    loss_fn: Any,
    error: type[Exception],
    says: str,
) -> None:
    with pytest.raises(error) as info:
        _no_requests(untrained, lambda: untrained.forward_backward_custom(data, loss_fn))
    assert says in str(info.value), str(info.value)

"""REST management, extra endpoints, compressed bodies and models served from a directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tinker
from tinker import types as ttypes

from tests.conftest import API_KEY
from tests.local.model.helpers import save_builtin_as_hf
from tests.local.raw import RawTinker
from tinkex import types
from tinkex.local import LocalServer, ModelSource, ServerConfig
from tinkex.local.model import (
    BUILTIN_MODEL,
    DatumArrays,
    LoraSpec,
    TrainableModel,
    load_base_model,
)
from tinkex.protocol import compress_zstd, encode_forward_backward_request

TOKENS = list(b"rest and models")


def _datum() -> ttypes.Datum:
    return ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(TOKENS[:-1]),
        loss_fn_inputs={"target_tokens": TOKENS[1:], "weights": [1.0] * (len(TOKENS) - 1)},
    )


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[tinker.TrainingClient]:
    service = tinker.ServiceClient(base_url=base_url, api_key=API_KEY, user_metadata={"k": "v"})
    client = service.create_lora_training_client(base_model=BUILTIN_MODEL, rank=4).result()
    yield client
    service.close("success").result(timeout=30)


def test_rest_reads_runs_weights_samplers_and_sessions(
    base_url: str, client: tinker.TrainingClient
) -> None:
    rest = tinker.RestClient(base_url=base_url, api_key=API_KEY)
    capabilities = rest.get_server_capabilities().result(timeout=30)
    assert BUILTIN_MODEL in [m.model_name for m in capabilities.supported_models]

    run = rest.get_training_run(client.model_id).result(timeout=30)
    assert (run.base_model, run.is_lora, run.lora_rank) == (BUILTIN_MODEL, True, 4)

    path = client.save_state("rest-info").result(timeout=60).path
    info = rest.get_weights_info_by_tinker_path(path).result(timeout=30)
    assert (info.base_model, info.lora_rank, info.train_mlp) == (BUILTIN_MODEL, 4, True)
    run = rest.get_training_run_by_tinker_path(path).result(timeout=30)
    assert run.last_checkpoint is not None and run.last_checkpoint.tinker_path == path

    client.save_state("rest-info-2").result(timeout=60)
    first = rest.list_user_checkpoints(limit=1, offset=0).result(timeout=30)
    second = rest.list_user_checkpoints(limit=1, offset=1).result(timeout=30)
    assert len(first.checkpoints) == len(second.checkpoints) == 1
    assert first.checkpoints[0].tinker_path != second.checkpoints[0].tinker_path
    assert first.cursor is not None and first.cursor.total_count >= 2

    sampler = client.save_weights_and_get_sampling_client().result()
    session_id = client.model_id.split(":train:")[0]
    sessions = rest.list_sessions().result(timeout=30).sessions
    assert session_id in sessions
    session = rest.get_session(session_id).result(timeout=30)
    assert client.model_id in session.training_run_ids
    assert session.user_metadata == {"k": "v"}
    sampler_id = session.sampler_ids[-1]
    got = rest.get_sampler(sampler_id).result(timeout=30)
    assert got.base_model == BUILTIN_MODEL
    assert sampler.get_base_model() == BUILTIN_MODEL


def test_zstd_protobuf_forward_backward_body(base_url: str, client: tinker.TrainingClient) -> None:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(TOKENS[:-1]),
        loss_fn_inputs={"target_tokens": TOKENS[1:]},
    )
    body = encode_forward_backward_request(
        model_id=client.model_id,
        seq_id=None,
        data=[datum],
        loss_fn="cross_entropy",
        forward_only=True,
    )
    raw = RawTinker(base_url)
    try:
        response = raw.post(
            "forward_backward",
            content=compress_zstd(body),
            headers={"content-type": "application/x-protobuf", "content-encoding": "zstd"},
        )
        assert response.status_code == 200, response.text
        result = raw.result(response.json()["request_id"])
    finally:
        raw.close()
    assert result["metrics"]["loss:sum"] > 0
    assert len(result["loss_fn_outputs"][0]["logprobs"]["data"]) == len(TOKENS) - 1


def test_unload_model_frees_it(base_url: str) -> None:
    raw = RawTinker(base_url)
    try:
        model_id = raw.model(raw.session())
        result = raw.result(raw.ok("unload_model", {"model_id": model_id})["request_id"])
        assert result == {"model_id": model_id, "type": "unload_model"}
        response = raw.post("get_info", {"model_id": model_id})
        assert response.status_code == 404
        assert "not loaded" in response.json()["detail"]
    finally:
        raw.close()


def test_a_model_directory_is_served_under_its_name(tmp_path: Path) -> None:
    builtin = load_base_model(BUILTIN_MODEL)
    directory = save_builtin_as_hf(builtin, tmp_path / "weights")
    config = ServerConfig(
        port=0,
        data_dir=tmp_path / "data",
        models=(ModelSource.parse(f"acme/tiny-hf={directory}"),),
    )
    with (
        LocalServer(config) as server,
        tinker.ServiceClient(base_url=server.url, api_key=API_KEY) as service,
    ):
        client = service.create_lora_training_client(base_model="acme/tiny-hf", rank=4).result()
        assert client.get_info().model_data.model_name == "acme/tiny-hf"
        out = client.forward([_datum()], "cross_entropy").result(timeout=60)
        served = out.loss_fn_outputs[0]["logprobs"].to_numpy()
        sampler = service.create_sampling_client(base_model="acme/tiny-hf").result()
        params = ttypes.SamplingParams(max_tokens=3, seed=0)
        prompt = ttypes.ModelInput.from_ints(TOKENS)
        assert len(sampler.sample(prompt, 1, params).result(timeout=60).sequences) == 1
        with pytest.raises(tinker.BadRequestError, match="unknown base_model"):
            service.create_lora_training_client(base_model=BUILTIN_MODEL, rank=4).result()
    tokens = np.array(TOKENS)
    direct = TrainableModel(builtin, LoraSpec(rank=4)).forward_backward(
        [DatumArrays(tokens=tokens[:-1], inputs={"target_tokens": tokens[1:]})],
        "cross_entropy",
        None,
        forward_only=True,
    )
    np.testing.assert_allclose(served, direct.outputs[0]["logprobs"], atol=1e-5)


def test_large_results_are_announced_metadata_only_first(tmp_path: Path) -> None:
    config = ServerConfig(port=0, data_dir=tmp_path, metadata_only_threshold_bytes=1)
    with LocalServer(config) as server:
        raw = RawTinker(server.url)
        try:
            request_id = raw.ok(
                "create_model",
                {"session_id": raw.session(), "model_seq_id": 0, "base_model": BUILTIN_MODEL},
            )["request_id"]
            announced = raw.result(request_id)  # polls without allow_metadata_only
            assert "model_id" in announced
            body = {"request_id": request_id, "allow_metadata_only": True}
            metadata = raw.post("retrieve_future", body).json()
        finally:
            raw.close()
    assert metadata["status"] == "complete_metadata"
    assert metadata["response_payload_size"] == len(
        json.dumps(announced, separators=(",", ":")).encode()
    )


def test_legacy_load_weights_onto_an_existing_model(base_url: str) -> None:
    raw = RawTinker(base_url)
    try:
        session = raw.session()
        source = raw.model(session, seq=0, seed=1)
        target = raw.model(session, seq=1, seed=2)
        datum = {"data": [_wire_datum()], "loss_fn": "cross_entropy"}
        step = {"forward_backward_input": datum, "model_id": source, "seq_id": 1}
        raw.result(raw.ok("forward_backward", step)["request_id"])
        adam = {"model_id": source, "seq_id": 2, "adam_params": {"learning_rate": 0.01}}
        raw.result(raw.ok("optim_step", adam)["request_id"])
        saved = raw.ok("save_weights", {"model_id": source, "seq_id": 3, "path": "legacy"})
        path = raw.result(saved["request_id"])["path"]
        load = {"model_id": target, "seq_id": 1, "path": path, "optimizer": True}
        loaded = raw.result(raw.ok("load_weights", load)["request_id"])
        assert loaded == {"path": path, "model_id": target, "type": "load_weights"}

        def logprobs(model_id: str, seq_id: int) -> list[float]:
            body = {"forward_input": datum, "model_id": model_id, "seq_id": seq_id}
            result = raw.result(raw.ok("forward", body)["request_id"])
            data: list[float] = result["loss_fn_outputs"][0]["logprobs"]["data"]
            return data

        assert logprobs(target, 2) == logprobs(source, 4)
    finally:
        raw.close()


def _wire_datum() -> dict[str, object]:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(TOKENS[:-1]),
        loss_fn_inputs={"target_tokens": TOKENS[1:]},
    )
    return datum.to_wire()


def test_official_sdk_projects_session_search_and_published_runs(tmp_path: Path) -> None:
    """The official SDK's assign_session_project, search_sessions, access_scope and
    project_id against the local server (open mode: two tenants)."""
    with LocalServer(ServerConfig(port=0, data_dir=tmp_path / "data")) as server:
        alice = tinker.ServiceClient(
            base_url=server.url,
            api_key="tml-conformance-alice",
            user_metadata={"team": "core"},
            display_name="Alice nightly",
        )
        bob = tinker.RestClient(base_url=server.url, api_key="tml-conformance-bob")
        try:
            training = alice.create_lora_training_client(base_model=BUILTIN_MODEL, rank=4).result()
            session_id = training.model_id.split(":train:")[0]
            path = training.save_state("shared").result(timeout=60).path
            rest = tinker.RestClient(base_url=server.url, api_key="tml-conformance-alice")

            def in_project(project_id: str) -> list[str]:
                page = rest.list_training_runs(project_id=project_id).result(timeout=30)
                return [run.training_run_id for run in page.training_runs]

            assert in_project("proj-c") == []
            rest.assign_session_project(session_id, "proj-c").result(timeout=30)
            assert in_project("proj-c") == [training.model_id]

            request = ttypes.SessionSearchRequest(
                display_name="NIGHTLY",
                project_ids=["proj-c"],
                user_metadata={"team": "core"},
                statuses=[ttypes.ActiveSessionStatusQuery()],
            )
            with pytest.warns(tinker.ExperimentalWarning):
                page = rest.search_sessions(request).result(timeout=30)
            (found,) = page.sessions
            assert (found.session_id, found.project_id, found.checkpoints_count) == (
                session_id,
                "proj-c",
                1,
            )
            assert isinstance(found.status, ttypes.SessionActive) and page.next_cursor is None
            assert found.user_metadata == {"team": "core"}

            def bob_sees() -> list[str]:
                page = bob.list_training_runs(access_scope="accessible").result(timeout=30)
                return [run.training_run_id for run in page.training_runs]

            assert bob_sees() == []
            rest.publish_checkpoint_from_tinker_path(path).result(timeout=30)
            assert bob_sees() == [training.model_id]
            run = bob.get_training_run(training.model_id, access_scope="accessible").result(30)
            assert run.last_checkpoint is not None and run.last_checkpoint.tinker_path == path
        finally:
            alice.close("success").result(timeout=30)

"""What a restarted server still knows, and saves that cannot leave half a checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import tinker
import torch
from tinker import types as ttypes

import tinkex.local.store as store_module
from tests.conftest import API_KEY
from tinkex.local import LocalServer, ServerConfig
from tinkex.local.errors import Conflict
from tinkex.local.store import Store

BASE_MODEL = "tinkex/tiny-llama"
TOKENS = list(b"persist me, please")
BATCH = [
    ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(TOKENS[:-1]),
        loss_fn_inputs={"target_tokens": TOKENS[1:], "weights": [1.0] * (len(TOKENS) - 1)},
    )
]


def _logprobs(client: tinker.TrainingClient) -> np.ndarray:
    out = client.forward(BATCH, "cross_entropy").result(timeout=60)
    return out.loss_fn_outputs[0]["logprobs"].to_numpy()


def test_a_restarted_server_lists_and_loads_what_it_saved(tmp_path: Path) -> None:
    config = ServerConfig(port=0, data_dir=tmp_path)
    with (
        LocalServer(config) as server,
        tinker.ServiceClient(base_url=server.url, api_key=API_KEY) as service,
    ):
        client = service.create_lora_training_client(base_model=BASE_MODEL, rank=4).result()
        client.forward_backward(BATCH, "cross_entropy")
        client.optim_step(ttypes.AdamParams(learning_rate=1e-2)).result(timeout=60)
        state = client.save_state("before-restart").result(timeout=60).path
        sampler_path = client.save_weights_for_sampler("sampler").result(timeout=60).path
        expected = _logprobs(client)
        run_id = client.model_id

    with (
        LocalServer(config) as server,
        tinker.ServiceClient(base_url=server.url, api_key=API_KEY) as service,
    ):
        rest = tinker.RestClient(base_url=server.url, api_key=API_KEY)
        runs = rest.list_training_runs().result(timeout=30).training_runs
        assert run_id in [run.training_run_id for run in runs]
        listed = rest.list_checkpoints(run_id).result(timeout=30).checkpoints
        assert {c.checkpoint_id for c in listed} == {
            "weights/before-restart",
            "sampler_weights/sampler",
        }
        restored = service.create_training_client_from_state_with_optimizer(state).result()
        np.testing.assert_array_equal(_logprobs(restored), expected)
        sampler = service.create_sampling_client(model_path=sampler_path).result()
        prompt = ttypes.ModelInput.from_ints(TOKENS)
        logprobs = sampler.compute_logprobs(prompt).result(timeout=60)
        np.testing.assert_allclose(np.array(logprobs[1:]), expected, atol=1e-5)


def _files() -> dict[str, dict[str, torch.Tensor]]:
    return {"adapter.safetensors": {"w": torch.ones(2, 2)}}


def _save(store: Store, name: str, **kwargs: object) -> object:
    options: dict[str, object] = {"ttl_seconds": None, "user_metadata": None, "overwrite": False}
    options.update(kwargs)
    return store.save_checkpoint(
        run_id="s:train:0",
        owner="user-1",
        checkpoint_type="training",
        name=name,
        files=_files(),
        meta={"base_model": BASE_MODEL},
        **options,  # type: ignore[arg-type]
    )


def test_a_crash_mid_save_leaves_no_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)

    def crash(tensors: object, filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        _save(store, "doomed")
    assert store.list_checkpoints("s:train:0") == []
    assert not (tmp_path / "checkpoints" / "s:train:0").exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    store.close()


def test_an_existing_checkpoint_needs_overwrite(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _save(store, "same")
    with pytest.raises(Conflict, match="already exists"):
        _save(store, "same")
    _save(store, "same", overwrite=True)
    assert [c.checkpoint_id for c in store.list_checkpoints("s:train:0")] == ["weights/same"]
    store.close()


def test_checkpoints_expire_after_their_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    _save(store, "short", ttl_seconds=3600)
    _save(store, "forever")
    later = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(store_module, "_now", lambda: later)
    assert [c.checkpoint_id for c in store.list_checkpoints("s:train:0")] == ["weights/forever"]
    assert store.expire_checkpoints() == 1
    assert list((tmp_path / "checkpoints" / "s:train:0" / "weights").glob("short@*")) == []
    store.close()


def test_records_without_files_are_dropped_on_startup(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _save(store, "lost")
    store.close()
    (directory,) = (tmp_path / "checkpoints" / "s:train:0" / "weights").glob("lost@*")
    for path in directory.iterdir():
        path.unlink()
    reopened = Store(tmp_path)
    assert reopened.list_checkpoints("s:train:0") == []
    reopened.close()


def test_a_crash_mid_overwrite_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    _save(store, "precious")
    weights = tmp_path / "checkpoints" / "s:train:0" / "weights"
    (old,) = weights.glob("precious@*")

    def crash_in_the_transaction() -> object:
        raise OSError("power cut")

    monkeypatch.setattr(store, "_tx", crash_in_the_transaction)
    with pytest.raises(OSError, match="power cut"):
        _save(store, "precious", overwrite=True)
    monkeypatch.undo()
    assert list(weights.glob("precious@*")) == [old], "the new files went, the old stayed"
    found = store.find_checkpoint("s:train:0", "weights/precious")
    assert found is not None and found.directory == old
    assert torch.equal(found.tensors("adapter.safetensors")["w"], torch.ones(2, 2))
    store.close()


def test_directories_no_record_points_at_are_removed_on_startup(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _save(store, "kept")
    store.close()
    stray = tmp_path / "checkpoints" / "s:train:0" / "weights" / "kept@interrupted"
    stray.mkdir()
    (stray / "adapter.safetensors").write_bytes(b"half")
    reopened = Store(tmp_path)
    assert not stray.exists()
    assert [c.checkpoint_id for c in reopened.list_checkpoints("s:train:0")] == ["weights/kept"]
    reopened.close()

"""RestClient.download_checkpoint: real archives from ``tinkex serve``, hostile ones from a stub.

The local server only produces honest archives, so the hostile ones (path traversal, links
out of the target, devices, truncation, refusals) are served by an ``httpx.MockTransport``
playing a storage host behind the archive redirect.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL
from tests.conftest import API_KEY
from tinkex import telemetry
from tinkex.clients import checkpoint_download
from tinkex.clients.checkpoint_download import DOWNLOAD_EVENT, UnsafeArchiveError, extract_safely
from tinkex.config import Config

STUB_PATH = "tinker://run-1/weights/final"
STUB_TARGET = "run-1_weights_final"


@pytest.fixture(scope="module")
def saved(base_url: str, local_server: Any) -> Iterator[tuple[tinkex.RestClient, str, Path]]:
    """A rest client, a checkpoint's tinker path, and the server's directory of its files."""
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as service:
        training = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
        path = training.save_state("download-me").result(timeout=60).path
        stored = local_server.service.store.find_checkpoint(
            training.model_id, "weights/download-me"
        )
        yield service.create_rest_client(), path, stored.directory


def _target(path: str) -> str:
    return path.removeprefix("tinker://").replace("/", "_")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# the honest server ------------------------------------------------------------------------


def test_download_fetches_exactly_the_checkpoint_files(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, stored = saved
    calls: list[tuple[int, int | None]] = []
    target = rest.download_checkpoint(
        path, tmp_path / "out", progress=lambda done, total: calls.append((done, total))
    ).result(timeout=60)

    assert target == tmp_path / "out" / _target(path)
    assert _leftovers(tmp_path / "out") == [target.name]  # no staging directory left
    expected = {p.name: p.read_bytes() for p in stored.iterdir()}
    assert {p.name: p.read_bytes() for p in target.iterdir()} == expected

    dones = [done for done, _ in calls]
    totals = {total for _, total in calls}
    assert dones == sorted(dones) and len(totals) == 1
    (total,) = totals
    assert total is not None and dones[-1] == total > sum(len(b) for b in expected.values())


def test_existing_target_needs_force(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, stored = saved
    target = tmp_path / _target(path)
    target.mkdir()
    rest.download_checkpoint(path, tmp_path).result(timeout=60)  # empty: fine
    (target / "mine.txt").write_text("keep me")

    with pytest.raises(FileExistsError) as refused:
        rest.download_checkpoint(path, tmp_path)
    assert str(target) in str(refused.value) and "force=True" in str(refused.value)
    assert (target / "mine.txt").read_text() == "keep me"

    rest.download_checkpoint(path, tmp_path, force=True).result(timeout=60)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in stored.iterdir())
    assert _leftovers(tmp_path) == [target.name]


def test_target_filled_during_the_download_is_not_overwritten(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, _ = saved
    target = tmp_path / _target(path)

    def somebody_else_writes(done: int, total: int | None) -> None:
        target.mkdir(exist_ok=True)
        (target / "theirs.txt").write_text("theirs")

    download = rest.download_checkpoint(path, tmp_path, progress=somebody_else_writes)
    with pytest.raises(FileExistsError, match="force=True"):
        download.result(timeout=60)
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert _leftovers(tmp_path) == [target.name]


def test_a_failing_progress_callback_aborts_and_leaves_nothing(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, path, _ = saved

    def interrupt(done: int, total: int | None) -> None:
        raise KeyError("user pressed stop")

    with pytest.raises(KeyError, match="user pressed stop"):
        rest.download_checkpoint(path, tmp_path / "out", progress=interrupt).result(timeout=60)
    assert _leftovers(tmp_path / "out") == []


async def test_async_twin(saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path) -> None:
    rest, path, stored = saved
    target = await rest.download_checkpoint_async(path, tmp_path)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in stored.iterdir())


def test_bad_path_fails_before_anything_happens(
    saved: tuple[tinkex.RestClient, str, Path], tmp_path: Path
) -> None:
    rest, _, _ = saved
    with pytest.raises(ValueError, match="must start with 'tinker://'"):
        rest.download_checkpoint("weights/download-me", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# a stub storage host ----------------------------------------------------------------------


def _stub_client(serve_archive: Callable[[], httpx.Response]) -> tinkex.RestClient:
    """A RestClient whose API redirects the archive to a stub storage host."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            assert (
                request.url.path == "/api/v1/training_runs/run-1/checkpoints/weights/final/archive"
            )
            return httpx.Response(302, headers={"Location": "http://files.test/a.tar?sig=s3cr3t"})
        assert "x-api-key" not in request.headers  # a signed URL never gets the API key
        return serve_archive()

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    config = Config(api_key="tml-stub-key", base_url="http://api.test", http_client=client)
    return tinkex.RestClient(config=config)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


HOSTILE = {
    "absolute": ((_member("/tmp/tinkex-escape.txt"), b"x"), "absolute or drive path"),
    "dotdot": ((_member("../escape.txt"), b"x"), "contains '..'"),
    "nested dotdot": ((_member("ok/../../escape.txt"), b"x"), "contains '..'"),
    "symlink absolute": ((_member("etc", tarfile.SYMTYPE, "/etc"), b""), "could lead outside"),
    "symlink up": ((_member("up", tarfile.SYMTYPE, "../.."), b""), "could lead outside"),
    "hardlink up": ((_member("h", tarfile.LNKTYPE, "../escape.txt"), b""), "contains '..'"),
    "hardlink absolute": ((_member("h", tarfile.LNKTYPE, "/etc/passwd"), b""), "absolute"),
    "fifo": ((_member("pipe", tarfile.FIFOTYPE), b""), "device or FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(case: str, tmp_path: Path) -> None:
    member, message = HOSTILE[case]
    body = _tar((_member("adapter.safetensors"), b"fine"), member)
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    out = tmp_path / "sandbox" / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        rest.download_checkpoint(STUB_PATH, out).result(timeout=30)
    assert _leftovers(out) == []
    assert _leftovers(tmp_path / "sandbox") == ["out"]
    assert not Path("/tmp/tinkex-escape.txt").exists()


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(
        _tar(
            (_member("sub/data.bin"), b"payload"),
            (_member("latest", tarfile.SYMTYPE, "sub/data.bin"), b""),
            (_member("copy.bin", tarfile.LNKTYPE, "sub/data.bin"), b""),
        )
    )
    extract_safely(archive, tmp_path / "x")
    assert (tmp_path / "x" / "latest").is_symlink()
    assert (tmp_path / "x" / "latest").read_bytes() == b"payload"
    assert (tmp_path / "x" / "copy.bin").read_bytes() == b"payload"
    assert not (tmp_path / "x" / "copy.bin").is_symlink()


def test_truncated_archive_leaves_nothing(tmp_path: Path) -> None:
    body = _tar((_member("adapter.safetensors"), b"y" * 5000))

    async def short() -> AsyncIterator[bytes]:
        yield body[:1000]

    rest = _stub_client(
        lambda: httpx.Response(200, headers={"content-length": str(len(body))}, content=short())
    )
    with pytest.raises(tinkex.APIConnectionError, match=f"ended after 1000 of {len(body)} bytes"):
        rest.download_checkpoint(STUB_PATH, tmp_path).result(timeout=30)
    assert _leftovers(tmp_path) == []


def test_refused_archive_url_is_a_status_error_without_secrets(tmp_path: Path) -> None:
    rest = _stub_client(lambda: httpx.Response(403, json={"detail": "signature expired"}))
    with pytest.raises(tinkex.PermissionDeniedError, match="signature expired") as refused:
        rest.download_checkpoint(STUB_PATH, tmp_path).result(timeout=30)
    assert "s3cr3t" not in str(refused.value)
    assert _leftovers(tmp_path) == []


def test_download_streams_in_constant_memory(tmp_path: Path) -> None:
    size, chunk = 32 * 1024 * 1024, b"\0" * (1024 * 1024)
    header = tarfile.TarInfo("big.bin")
    header.size = size
    head = header.tobuf()
    tail = b"\0" * (-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(size // len(chunk)):
            yield chunk
        yield tail

    length = str(len(head) + size + len(tail))
    rest = _stub_client(
        lambda: httpx.Response(200, headers={"content-length": length}, content=body())
    )
    tracemalloc.start()
    try:
        target = rest.download_checkpoint(STUB_PATH, tmp_path).result(timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (target / "big.bin").stat().st_size == size
    assert peak < size / 4, f"peak {peak} bytes while downloading {size}"
    assert _leftovers(tmp_path) == [STUB_TARGET]


def test_cancelling_mid_download_leaves_nothing(tmp_path: Path) -> None:
    started, ended = threading.Event(), threading.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"\0" * tarfile.BLOCKSIZE
        await asyncio.Event().wait()  # the rest never comes
        yield b""  # pragma: no cover

    rest = _stub_client(lambda: httpx.Response(200, content=stalls()))
    download = rest.download_checkpoint(STUB_PATH, tmp_path, progress=lambda *_: started.set())
    telemetry.attach(
        f"test-cancel-{id(ended)}", f"{DOWNLOAD_EVENT}.exception", lambda *_: ended.set()
    )
    try:
        assert started.wait(timeout=30)
        assert download.cancel()
        assert ended.wait(timeout=30)  # emitted after the staging directory was removed
    finally:
        telemetry.detach(f"test-cancel-{id(ended)}")
    assert _leftovers(tmp_path) == []


def test_cancelling_while_unpacking_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive has arrived and the worker thread is unpacking it when the caller
    cancels: the thread finishes its work but must not rename anything into place."""
    unpacking, go, cancelled, finished = (threading.Event() for _ in range(4))
    real_extract, real_unpack = extract_safely, checkpoint_download._unpack_and_install

    def held_extract(archive: Path, destination: Path) -> None:
        unpacking.set()
        assert go.wait(timeout=30), "the test never let the unpacking go on"
        real_extract(archive, destination)

    def observed_unpack(*args: Any) -> None:
        try:
            real_unpack(*args)
        finally:
            finished.set()

    monkeypatch.setattr(checkpoint_download, "extract_safely", held_extract)
    monkeypatch.setattr(checkpoint_download, "_unpack_and_install", observed_unpack)
    body = _tar((_member("adapter.safetensors"), b"weights"))
    rest = _stub_client(lambda: httpx.Response(200, content=body))
    handler = f"test-cancel-unpack-{id(cancelled)}"
    telemetry.attach(handler, f"{DOWNLOAD_EVENT}.exception", lambda *_: cancelled.set())
    try:
        download = rest.download_checkpoint(STUB_PATH, tmp_path)
        assert unpacking.wait(timeout=30)
        assert download.cancel()
        assert cancelled.wait(timeout=30)  # the caller has given up (and said so)
    finally:
        go.set()
        telemetry.detach(handler)
    assert finished.wait(timeout=30)
    assert _leftovers(tmp_path) == []  # no target, no staging directory
